"""The worker: staged pipeline on sentry-arroyo, batching, commit, DLQ, backpressure."""
