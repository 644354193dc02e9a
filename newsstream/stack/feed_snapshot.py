"""Snapshots of feeds: save each feed's current document into a directory for a later replay.

``newsstream feeds snapshot DIR`` fetches every polled feed once, through the producer's safe
fetcher (the same SSRF guard, deadline and byte caps), and writes each answer to
``DIR/<name>-<feed id>.xml``: a directory that ``newsstream up --replay DIR`` serves back, so a
machine that is offline later (a demo, a test, a laptop on a train) replays what the feeds said.

What goes in: the feeds and a fetcher. What comes out: one :class:`SnapshotResult` per feed, in
the order given. Guaranteed: a feed that fails is reported with its reason and does not stop the
others; a file is written whole (to a temporary name, then renamed) or not at all; nothing
outside ``DIR`` is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import FeedError
from producers.feeds import FeedSpec
from producers.fetcher import Fetcher

#: Longest name part of a snapshot file (the feed id keeps names unique).
MAX_NAME_CHARS = 40


@dataclass(frozen=True)
class SnapshotResult:
    """The outcome for one feed: ``path`` of the saved file, or ``error`` saying why not."""

    feed: FeedSpec
    path: Path | None = None
    size: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.path is not None


def snapshot_file_name(feed: FeedSpec) -> str:
    """``<slug of the name or host>-<feed id>.xml``: readable, unique per feed, replayable
    (``.xml`` is one of the suffixes replay serves)."""
    label = feed.name or feed.url.split("//", 1)[-1].split("/", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:MAX_NAME_CHARS].strip("-")
    return f"{slug or 'feed'}-{feed.id}.xml"


def _write_whole(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def snapshot_feeds(
    feeds: Iterable[FeedSpec],
    fetcher: Fetcher,
    directory: Path,
    progress: Callable[[SnapshotResult], None] | None = None,
) -> list[SnapshotResult]:
    """Fetch each feed once (unconditionally) and save its document under ``directory``
    (created if missing). ``progress`` is called after each feed."""
    directory.mkdir(parents=True, exist_ok=True)
    results: list[SnapshotResult] = []
    for feed in feeds:
        try:
            response = fetcher.fetch(feed.url)
            if not response.body:
                raise FeedError("empty", f"HTTP {response.status} with an empty body")
            path = directory / snapshot_file_name(feed)
            _write_whole(path, response.body)
            result = SnapshotResult(feed, path=path, size=len(response.body))
        except FeedError as exc:
            result = SnapshotResult(feed, error=str(exc))
        results.append(result)
        if progress is not None:
            progress(result)
    return results
