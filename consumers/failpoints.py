"""Failpoints: named places in the worker where a test can make it die as if by kill -9.

Set ``NEWSSTREAM_FAILPOINTS`` to a comma-separated list of names (for example
``after_upsert``) and the process sends itself SIGKILL the first time it reaches one of them.
Unset (production), :func:`failpoint` is one dictionary look-up. This is how the fault tests
kill a worker at an exact moment (after the upsert or the delete returned, before the commit)
instead of hoping a timed kill lands there.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(
    name.strip() for name in os.environ.get("NEWSSTREAM_FAILPOINTS", "").split(",") if name.strip()
)

#: The failpoints the code defines (the fault tests use these names).
KNOWN = frozenset({"after_upsert", "after_delete", "during_embed"})


def failpoint(name: str) -> None:
    """Die with SIGKILL here when ``name`` is active."""
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
