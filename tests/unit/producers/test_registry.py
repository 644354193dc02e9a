"""The feed registry: add, remove, list, OPML round trip, and the merge with the feeds file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import InvalidInput
from producers.feeds import FeedSpec, feeds_to_toml
from producers.registry import (
    OPML_NAMESPACE,
    FeedOrigin,
    FeedRegistry,
    feed_statuses,
    parse_opml,
    resolve_feeds,
    to_opml,
)
from producers.state import ProducerState


@pytest.fixture
def registry(tmp_path: Path) -> FeedRegistry:
    return FeedRegistry(tmp_path / "producer.sqlite3")


def test_add_update_remove(registry: FeedRegistry) -> None:
    spec, new = registry.add("https://example.com/rss", "Ex", ("a,b", "c"))
    assert new and spec.tags == ("a", "b", "c")
    again, new = registry.add("https://EXAMPLE.com/rss#x", "Renamed")
    assert not new and again.id == spec.id
    assert [s.name for s in registry.all()] == ["Renamed"]
    assert registry.remove(spec.id) is not None
    assert registry.remove("https://example.com/rss") is None
    assert registry.all() == []


@pytest.mark.parametrize("url", ["ftp://x/y", "file:///etc/passwd", "example.com/rss", "http://"])
def test_bad_urls_are_refused(registry: FeedRegistry, url: str) -> None:
    with pytest.raises(InvalidInput):
        registry.add(url)


def test_merge_rules(registry: FeedRegistry, tmp_path: Path) -> None:
    defaults = resolve_feeds(None, registry)
    assert defaults and {r.origin for r in defaults} == {FeedOrigin.DEFAULT}
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(
        feeds_to_toml([FeedSpec("https://a.example/rss", "A"), FeedSpec("https://b.example/rss")])
    )
    registry.add("https://b.example/rss", "B from registry", ("x",))
    merged = {r.spec.url: r for r in resolve_feeds(feeds_file, registry)}
    assert merged["https://a.example/rss"].origin == FeedOrigin.FILE
    assert merged["https://b.example/rss"].origin == FeedOrigin.REGISTRY
    assert merged["https://b.example/rss"].spec.name == "B from registry"
    assert len(merged) == 2
    # Without a file, a non-empty registry replaces the packaged defaults.
    assert [r.origin for r in resolve_feeds(None, registry)] == [FeedOrigin.REGISTRY]


def test_list_shows_poll_status(registry: FeedRegistry, tmp_path: Path) -> None:
    spec, _ = registry.add("https://a.example/rss")
    state = ProducerState(tmp_path / "producer.sqlite3")
    fresh = feed_statuses(None, registry, state)[0]
    assert fresh.state.last_fetch_at is None and fresh.state.error_streak == 0
    polled = fresh.state.__class__(
        spec.id,
        spec.url,
        last_fetch_at=5.0,
        last_result="timeout",
        error_streak=3,
        next_poll_at=99.0,
        items=0,
    )
    state.commit_poll(polled, [])
    row = feed_statuses(None, registry, state)[0]
    assert (row.state.last_result, row.state.error_streak, row.state.next_poll_at) == (
        "timeout",
        3,
        99.0,
    )


def test_opml_round_trip_and_import(registry: FeedRegistry, tmp_path: Path) -> None:
    feeds = [
        FeedSpec("https://a.example/rss", "A & co", ("world", "tech")),
        FeedSpec("https://b.example/atom"),
    ]
    path = tmp_path / "out.opml"
    path.write_text(to_opml(feeds))
    parsed, problems = parse_opml(path)
    assert parsed == feeds and problems == []
    nested = tmp_path / "nested.opml"
    nested.write_text(
        '<opml version="1.0"><head/><body><outline text="News">'
        '<outline text="C" xmlUrl="https://c.example/rss"/>'
        '<outline text="bad" xmlUrl="javascript:alert(1)"/></outline></body></opml>'
    )
    assert registry.import_opml(nested) == (1, 0)
    assert registry.all()[0].tags == ("News",)
    assert registry.import_opml(nested) == (0, 1)


def test_hostile_or_broken_opml_is_refused(tmp_path: Path) -> None:
    laughs = tmp_path / "laughs.opml"
    laughs.write_text('<!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body>&a;</body></opml>')
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body><outline")
    html = tmp_path / "page.opml"
    html.write_text("<html><body/></html>")
    for path in (laughs, broken, html):
        with pytest.raises(InvalidInput):
            parse_opml(path)


#: The registry table as releases before feed retention windows made it.
OLD_SCHEMA = """
CREATE TABLE feed_registry (
    feed_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    added_at REAL NOT NULL
);
"""


def test_a_registry_file_from_before_retention_windows_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "producer.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    spec = FeedSpec("https://old.example/rss", "Old", ("x",))
    old.execute(
        "INSERT INTO feed_registry VALUES (?, ?, ?, ?, ?)",
        (spec.id, spec.url, spec.name, '["x"]', 1.0),
    )
    old.commit()
    old.close()
    registry = FeedRegistry(path)
    assert registry.all() == [spec]  # kept, following the global window
    assert registry.set_retention(spec.url, 9) == FeedSpec(spec.url, "Old", ("x",), 9)
    registry.close()
    reopened = FeedRegistry(path)  # a second open finds the column there
    assert reopened.get(spec.id) == FeedSpec(spec.url, "Old", ("x",), 9)
    reopened.close()


def test_a_feed_window_is_set_kept_and_cleared(registry: FeedRegistry) -> None:
    spec, _ = registry.add("https://a.example/rss", "A", retention_days=5)
    assert spec.retention_days == 5
    renamed, _ = registry.add("https://a.example/rss", "A2")  # no window given: kept
    assert (renamed.name, renamed.retention_days) == ("A2", 5)
    assert registry.set_retention(spec.id, 0) == FeedSpec(spec.url, "A2", (), 0)
    cleared = registry.set_retention(spec.url, None)
    assert cleared is not None and cleared.retention_days is None
    assert registry.set_retention("https://unknown.example/rss", 3) is None
    for bad in (-1, 40_000):
        with pytest.raises(InvalidInput):
            registry.set_retention(spec.id, bad)


def test_opml_round_trips_feed_windows_in_the_project_namespace(
    registry: FeedRegistry, tmp_path: Path
) -> None:
    registry.add("https://a.example/rss", "A", ("world",), retention_days=7)
    registry.add("https://b.example/rss", retention_days=0)
    registry.add("https://c.example/rss")
    exported = tmp_path / "export.opml"
    exported.write_text(to_opml(registry.all()))
    assert f'xmlns:newsstream="{OPML_NAMESPACE}"' in exported.read_text()
    again = FeedRegistry(tmp_path / "other.sqlite3")
    assert again.import_opml(exported) == (3, 0)
    assert again.all() == registry.all()
    # Another tool's OPML with a bad window: that outline is skipped and named.
    foreign = tmp_path / "foreign.opml"
    foreign.write_text(
        f'<opml version="2.0" xmlns:ns="{OPML_NAMESPACE}"><head/><body>'
        '<outline text="D" xmlUrl="https://d.example/rss" ns:retentionDays="soon"/>'
        '<outline text="E" xmlUrl="https://e.example/rss" ns:retentionDays="30"/></body></opml>'
    )
    feeds, problems = parse_opml(foreign)
    assert [(f.url, f.retention_days) for f in feeds] == [("https://e.example/rss", 30)]
    assert len(problems) == 1 and "https://d.example/rss" in problems[0]
    again.close()
