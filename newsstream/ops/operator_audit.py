"""The audit of admin actions run from the host's command line.

What goes in: the command's settings. What comes out: :func:`cli_identity` (``cli:<user>``,
the operating-system user who ran the command: the command line has no API key to name) and
:func:`cli_audit`, an :class:`search_api.audit.AuditLog` writing to the broker of the settings,
else to the broker of the `newsstream up` running with the same data dir.

Guarantees: with a broker known, a command records its action before it changes anything, and
a record the broker does not acknowledge stops the command (:class:`core.errors.TransientError`)
with nothing changed. With no broker known at all (no ``NEWSSTREAM_KAFKA_BOOTSTRAP`` and no
`up` running) there is no audit topic to write to: :func:`cli_audit` yields ``None`` and the
command says on stderr that the change is not recorded (the feed registry can be prepared
before the first `up`).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from core.settings import Settings
from newsstream.stack.up_marker import running_up
from search_api.acked_producer import AckedProducer
from search_api.audit import AuditLog

#: What the command line prints when it cannot record an action.
UNRECORDED_NOTE = (
    "not recorded in the audit: no broker is known (NEWSSTREAM_KAFKA_BOOTSTRAP is not set and "
    "no `newsstream up` runs with this data dir)"
)


def cli_identity() -> str:
    """Who runs this command, for the audit: ``cli:<user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (some containers)
        user = "unknown"
    return f"cli:{user}"


def audit_settings(settings: Settings) -> Settings | None:
    """``settings`` with the broker address of a running `up` when they leave it unset; None
    when no broker is known."""
    if settings.kafka_bootstrap:
        return settings
    running = running_up(settings.data_dir)
    if running is None or not running.kafka_bootstrap:
        return None
    return settings.model_copy(update={"kafka_bootstrap": running.kafka_bootstrap})


@contextmanager
def cli_audit(settings: Settings) -> Iterator[AuditLog | None]:
    """An audit writer for one command (its producer closed on exit), or None with no broker."""
    resolved = audit_settings(settings)
    if resolved is None:
        yield None
        return
    producer = AckedProducer(resolved)
    try:
        yield AuditLog(resolved, producer)
    finally:
        producer.close()
