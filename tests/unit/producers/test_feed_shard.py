"""Feeds sharded over producers, the pure parts: which feeds an assignment gives a producer,
the feed and feed-state records, and where a feed's records live."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidMessage
from producers.feed_state_topic import MAX_SEEN_PER_FEED, decode_state, encode_state
from producers.feed_topic import decode_spec, encode_spec, feed_partition
from producers.feeds import FeedSpec
from producers.shard import ShardView
from producers.state import FeedState, ProducerState

PARTITIONS = 3


def feeds_by_partition(count: int) -> dict[int, list[FeedSpec]]:
    found: dict[int, list[FeedSpec]] = {p: [] for p in range(PARTITIONS)}
    for n in range(count):
        spec = FeedSpec(url=f"https://news{n}.example/rss.xml", name=f"feed {n}")
        found[feed_partition(spec.id, PARTITIONS)].append(spec)
    return found


def load(view: ShardView, partition: int, specs: list[FeedSpec]) -> None:
    for spec in specs:
        view.apply(partition, spec.id, encode_spec(spec))
    view.mark_loaded(partition)


def test_a_producer_polls_exactly_the_feeds_of_its_partitions() -> None:
    by_partition = feeds_by_partition(30)
    view = ShardView()
    view.assign([0, 2])
    load(view, 0, by_partition[0])
    load(view, 2, by_partition[2])
    assert {s.id for s in view.feeds()} == {s.id for s in by_partition[0] + by_partition[2]}
    gone = view.revoke([2])
    assert gone == {s.id for s in by_partition[2]}
    assert {s.id for s in view.feeds()} == {s.id for s in by_partition[0]}


def test_feeds_count_only_once_their_partition_was_read_to_the_end() -> None:
    spec, removed = FeedSpec(url="https://a.example/rss"), FeedSpec(url="https://b.example/rss")
    view = ShardView()
    view.assign([1])
    assert not view.apply(1, spec.id, encode_spec(spec))
    # A feed added then removed earlier in the log is never polled.
    view.apply(1, removed.id, encode_spec(removed))
    view.apply(1, removed.id, None)
    assert view.feeds() == []
    assert view.mark_loaded(1)
    assert view.feeds() == [spec]


def test_records_after_the_end_apply_at_once_and_strangers_are_ignored() -> None:
    first, second = FeedSpec(url="https://a.example/rss"), FeedSpec(url="https://b.example/rss")
    view = ShardView()
    view.assign([0])
    view.mark_loaded(0)
    assert view.apply(0, first.id, encode_spec(first))
    renamed = FeedSpec(url=first.url, name="renamed", retention_days=7)
    assert view.apply(0, first.id, encode_spec(renamed))
    assert not view.apply(0, first.id, encode_spec(renamed)), "same value: nothing changed"
    assert not view.apply(2, second.id, encode_spec(second)), "not our partition"
    assert not view.apply(0, "0123456789abcdef", encode_spec(second)), "key is not the URL's id"
    assert not view.apply(0, second.id, b"{not json")
    assert view.feeds() == [renamed]
    assert view.apply(0, first.id, None)
    assert view.feeds() == []


def test_a_feed_record_round_trips_and_encodes_the_same_feed_to_the_same_bytes() -> None:
    spec = FeedSpec(url="https://a.example/rss", name="A", tags=("world", "x"), retention_days=0)
    assert decode_spec(encode_spec(spec)) == spec
    assert encode_spec(spec) == encode_spec(FeedSpec(spec.url, "A", ("world", "x"), 0))
    with pytest.raises(InvalidMessage):
        decode_spec(b'{"v": 99, "url": "https://a.example/rss"}')


def test_a_state_record_carries_validators_and_a_bounded_number_of_seen_entries() -> None:
    state = FeedState(
        feed_id="f1",
        url="https://a.example/rss",
        etag='W/"caf\xe9"',
        last_modified="Tue, 17 Feb 2026 10:00:00 GMT",
        last_fetch_at=1_700_000_000.5,
        last_result="ok",
        items=3,
        error_streak=0,
        next_poll_at=1_700_000_300.0,
        interval_s=300.0,
    )
    seen = [(f"{n:032x}", f"hash{n}") for n in range(MAX_SEEN_PER_FEED + 50)]
    decoded, kept = decode_state(encode_state(state, seen))
    assert decoded == state
    assert kept == seen[:MAX_SEEN_PER_FEED]
    with pytest.raises(InvalidMessage):
        decode_state(b'{"v": 2}')


def test_a_feed_and_its_state_share_the_partition_number() -> None:
    # The ledger's CRC-32 rule: fixed, whatever client wrote the record.
    assert feed_partition("0123456789abcdef", 6) == 3  # zlib.crc32(b"0123...") % 6
    ids = [FeedSpec(url=f"https://n{n}.example/").id for n in range(200)]
    spread = {feed_partition(i, 6) for i in ids}
    assert spread == set(range(6))


def test_a_taken_over_state_replaces_an_older_local_one_and_keeps_a_newer_one(
    tmp_path: Path,
) -> None:
    state = ProducerState(tmp_path / "producer.sqlite3")
    try:
        old = FeedState(feed_id="f1", url="https://a.example/rss", etag='"v1"', last_fetch_at=100.0)
        state.commit_poll(old, [("a1", "h1")], notify=False)
        theirs = FeedState(feed_id="f1", url=old.url, etag='"v2"', last_fetch_at=200.0)
        assert state.adopt(theirs, [("a2", "h2")])
        assert state.feed("f1", old.url).etag == '"v2"'
        assert state.unseen([("a1", "h1"), ("a2", "h2"), ("a3", "h3")]) == {"a3"}
        stale = FeedState(feed_id="f1", url=old.url, etag='"v0"', last_fetch_at=50.0)
        assert not state.adopt(stale, [("a4", "h4")])
        assert state.feed("f1", old.url).etag == '"v2"', "a newer local state is kept"
        assert state.unseen([("a4", "h4")]) == set(), "seen entries are added either way"
    finally:
        state.close()


def test_each_committed_poll_reaches_the_listener_but_a_takeover_does_not(
    tmp_path: Path,
) -> None:
    state = ProducerState(tmp_path / "producer.sqlite3")
    heard: list[tuple[FeedState, bool]] = []
    state.on_commit(lambda polled, delivered: heard.append((polled, delivered)))
    try:
        polled = FeedState(feed_id="f1", url="https://a.example/rss", last_fetch_at=1.0)
        state.commit_poll(polled, [])
        state.commit_poll(polled, [("a1", "h1")])
        state.adopt(FeedState(feed_id="f2", url="https://b.example/rss", last_fetch_at=2.0), [])
        assert heard == [(polled, False), (polled, True)]
    finally:
        state.close()
