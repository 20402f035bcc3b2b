"""Local HTTP emulators of the provider APIs, for tests, benchmarks and ``ela demo``.

Each is a real HTTP server on loopback that the real client library talks to, modelling the
endpoints the jobs use, their pagination, auth and rate-limit behaviour, and faults on demand.
"""
