"""The HTTP API: search, articles, stats, feeds and trends, stories, health and metrics, and the
dashboard page; one router module per concern, composed in :mod:`search_api.app`."""
