"""Feed specifications and the feeds config file.

A feeds file is TOML with one ``[[feed]]`` table per feed::

    [[feed]]
    url = "https://feeds.npr.org/1004/rss.xml"
    name = "NPR World"
    tags = ["world"]
    retention_days = 30   # optional: this feed's retention window (0 = keep forever)

A feed's id is stable for its URL (``sha256(canonical url)[:16]``), so renaming a feed keeps its
state. Loading fails with a message naming the file and the entry when the file is malformed.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from core.errors import ConfigurationError
from core.ids import canonical_url

DEFAULT_FEEDS_RESOURCE = "default_feeds.toml"


@dataclass(frozen=True)
class FeedSpec:
    """One feed to poll.

    ``retention_days`` is the feed's own retention window in days (0 = keep its articles
    forever); None means the global ``NEWSSTREAM_RETENTION_DAYS`` applies.
    """

    url: str
    name: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    retention_days: int | None = None

    @cached_property
    def id(self) -> str:
        """Stable id of the feed (from its canonical URL; computed once, the scheduler asks
        for it on every round)."""
        return feed_id(self.url)


def feed_id(url: str) -> str:
    """The stable id of a feed URL."""
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()[:16]


def parse_feeds_toml(text: str, origin: str) -> list[FeedSpec]:
    """Parse a feeds TOML document; ``origin`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{origin}: not valid TOML ({exc})") from exc
    entries = data.get("feed", [])
    if not isinstance(entries, list):
        raise ConfigurationError(f"{origin}: expected [[feed]] tables, found {type(entries)}")
    feeds: list[FeedSpec] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"{origin}: feed #{number} needs an http(s) url, found {url!r}"
            )
        spec = FeedSpec(
            url=url,
            name=str(entry.get("name", "")),
            tags=tuple(str(t) for t in entry.get("tags", [])),
            retention_days=_retention(entry.get("retention_days"), f"{origin}: feed #{number}"),
        )
        if spec.id not in seen:
            seen.add(spec.id)
            feeds.append(spec)
    return feeds


def load_feeds(path: Path | None) -> list[FeedSpec]:
    """Feeds from ``path``, or the packaged curated list when ``path`` is None."""
    if path is None:
        text = resources.files("producers").joinpath(DEFAULT_FEEDS_RESOURCE).read_text("utf-8")
        return parse_feeds_toml(text, f"packaged {DEFAULT_FEEDS_RESOURCE}")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"feeds file {path} cannot be read: {exc}") from exc
    return parse_feeds_toml(text, str(path))


def feeds_to_toml(feeds: list[FeedSpec]) -> str:
    """Serialise feeds to the TOML format :func:`parse_feeds_toml` reads."""
    lines: list[str] = []
    for spec in feeds:
        lines.append("[[feed]]")
        lines.append(f"url = {_toml_str(spec.url)}")
        if spec.name:
            lines.append(f"name = {_toml_str(spec.name)}")
        if spec.tags:
            lines.append("tags = [" + ", ".join(_toml_str(t) for t in spec.tags) + "]")
        if spec.retention_days is not None:
            lines.append(f"retention_days = {spec.retention_days}")
        lines.append("")
    return "\n".join(lines)


#: The longest retention window a feed may have (the settings' own bound, 100 years).
MAX_RETENTION_DAYS = 36_500


def _retention(value: object, where: str) -> int | None:
    """A feed's ``retention_days`` (None when absent); ConfigurationError when not 0..max."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_RETENTION_DAYS
    ):
        raise ConfigurationError(
            f"{where}: retention_days must be a whole number of days from 0 (keep forever) to "
            f"{MAX_RETENTION_DAYS}, found {value!r}"
        )
    return value


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
