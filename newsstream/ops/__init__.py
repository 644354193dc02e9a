"""Operator tools against a running deployment: stats, the DLQ (list, replay), reconcile and
re-queueing, topic scans, the search API client, and the settings reference.

Each takes a settings object (or an API URL) and returns plain results; printing is the CLI's.
"""
