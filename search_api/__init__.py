"""The HTTP API: search, articles, stats, trends, /metrics and the dashboard page."""
