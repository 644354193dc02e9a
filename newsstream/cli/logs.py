"""Logging set-up for newsstream processes (one call, at the edge)."""

from __future__ import annotations

import logging
import sys

from core.settings import Settings

_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure_logging(settings: Settings, process: str) -> None:
    """Log at ``settings.log_level``; with ``log_file``, full logs there, warnings to stderr."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(settings.log_level)
    formatter = logging.Formatter(_FORMAT.replace("%(processName)s", process))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(settings.log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
        stderr.setLevel(logging.WARNING)
    root.addHandler(stderr)
    # Chatty libraries: their INFO lines are not ours to show.
    for name in (
        "httpx",
        "httpcore",
        "arroyo",
        "urllib3",
        "sentence_transformers",
        "faust",
        "aiokafka",
        "mode",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
