"""The benchmark: ``scripts/bench`` (``python -m bench``) prints one table of ratios.

Everything runs side by side in one invocation on one machine: our worker and pipeline against
bare Celery and against plain sequential scripts (``bench/baseline/``) that use the same client
libraries against the same emulators. Nothing here is imported by the product.
"""
