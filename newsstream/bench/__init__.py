"""Benchmark scenarios of ``newsstream bench``: embed, dedup, producer, search, stores, stack and
ingest. Each measures on this machine and returns figures for the CLI to print and write as
JSON; speed targets are checked here, never in tests.
"""
