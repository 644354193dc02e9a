"""newsstream: the composition root (CLI, the `up` supervisor, bench and eval commands)."""

__version__ = "0.1.0"
