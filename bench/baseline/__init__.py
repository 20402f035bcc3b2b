"""Plain sequential scripts, one per job, the way the origin ingested: the client library with
its default settings, every record in a list, one JSONL file written and uploaded at the end.

Each script reads the same environment variables as the product (``*_API_URL`` and the
credentials) and takes the bucket (``file:///folder`` or ``gs://name``) as its one argument. It
prints one JSON line: records, seconds (client creation → object stored, imports excluded),
the landed object's sha256, and the process' peak RSS.
"""
