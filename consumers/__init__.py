"""The worker: staged pipeline on sentry-arroyo, batching, deletes, commit, DLQ, backpressure."""
