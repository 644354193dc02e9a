"""Per-feed poll state on Kafka: what the next owner of a feed needs to resume it.

One record per feed on the feed-state topic (:attr:`core.settings.Settings.feed_state_topic`),
key = the feed id, in the same partition as the feed's record on the feeds topic
(:func:`producers.feed_topic.feed_partition`). Value (:func:`encode_state`): the feed's
validators (ETag, Last-Modified), last fetch time and result, error streak, next poll time and
interval, and the entries already delivered with their content fingerprints, the most recent
first, at most :data:`MAX_SEEN_PER_FEED` (a feed document holds at most
``max_entries_per_feed`` entries, 500 by default, so the bound covers what a next poll can see;
an entry older than that which came back would be published once more: a duplicate, never a
loss).

When it is written: after a poll's local commit (:class:`StateJournal`), which itself happens
only after Kafka acknowledged that poll's entries, when the poll changed what a next owner needs
(a 304 that changed nothing writes no record); the record is acknowledged before a
producer hands its partitions over on a clean revocation. After a kill -9 the record of a poll
in flight may be missing: the next owner then resumes from the previous poll (it fetches
without the newest validators and publishes that poll's entries again; duplicates, no loss).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from core.errors import InvalidMessage
from core.settings import Settings
from producers.feed_topic import KeyedTopicWriter
from producers.state import FeedState, ProducerState

log = logging.getLogger(__name__)

#: Version of a state record's JSON; a reader ignores versions it does not know.
STATE_VERSION = 1
#: Seen entries carried per feed at most (the most recently delivered).
MAX_SEEN_PER_FEED = 1000


def encode_state(state: FeedState, seen: list[tuple[str, str]]) -> bytes:
    """The record value of ``state`` and its seen entries ``(article id, fingerprint)``, of
    which the first :data:`MAX_SEEN_PER_FEED` are kept (callers pass the newest first)."""
    body: dict[str, Any] = {"v": STATE_VERSION, **asdict(state)}
    body["seen"] = [[aid, digest] for aid, digest in seen[:MAX_SEEN_PER_FEED]]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_state(value: bytes) -> tuple[FeedState, list[tuple[str, str]]]:
    """The state and seen entries of a record value; :class:`InvalidMessage` when it is not one
    this version wrote."""
    try:
        body = json.loads(value)
        if body.pop("v", None) != STATE_VERSION:
            raise InvalidMessage("feed state record of an unknown version")
        seen = [(str(aid), str(digest)) for aid, digest in body.pop("seen", [])]
        fields = {name: body.get(name) for name in FeedState.__dataclass_fields__}
        state = FeedState(
            feed_id=str(fields["feed_id"]),
            url=str(fields["url"]),
            etag=fields["etag"],
            last_modified=fields["last_modified"],
            last_fetch_at=fields["last_fetch_at"],
            last_result=fields["last_result"],
            last_error=fields["last_error"],
            items=int(fields["items"] or 0),
            error_streak=int(fields["error_streak"] or 0),
            next_poll_at=float(fields["next_poll_at"] or 0.0),
            interval_s=fields["interval_s"],
        )
        return state, seen
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidMessage(f"not a feed state record: {exc}") from exc


class StateJournal:
    """Writes a feed's state record after each local commit (:meth:`record`), asynchronously;
    :meth:`flush` waits until every record written so far is acknowledged."""

    def __init__(self, settings: Settings, state: ProducerState) -> None:
        self._state = state
        # What the last record of each feed carried (validators, result, error streak).
        self._written: dict[str, tuple[str | None, str | None, str | None, int]] = {}
        self._writer = KeyedTopicWriter(
            settings, settings.feed_state_topic, "newsstream-feed-state"
        )

    def record(self, state: FeedState, delivered: bool) -> None:
        """Queue the record of ``state`` with the feed's newest seen entries, unless nothing a
        next owner needs changed since the last record of this feed: same validators, result
        and error streak, no entry delivered (a 304 then writes nothing; the next owner may poll
        the feed a little early, and gets a 304)."""
        essential = (state.etag, state.last_modified, state.last_result, state.error_streak)
        if not delivered and self._written.get(state.feed_id) == essential:
            return
        seen = self._state.seen_of(state.feed_id, MAX_SEEN_PER_FEED)
        self._writer.write(state.feed_id, encode_state(state, seen))
        self._written[state.feed_id] = essential

    def flush(self, timeout_s: float = 30.0) -> None:
        self._writer.flush(timeout_s)

    def close(self) -> None:
        left = self._writer.close()
        if left:
            log.warning("%d feed state records were not acknowledged before shutdown", left)


def load_states(
    settings: Settings, state: ProducerState, partitions: list[int], timeout_s: float = 30.0
) -> int:
    """Read ``partitions`` of the feed-state topic from start to end and adopt each feed's
    latest record into the local ``state`` (:meth:`ProducerState.adopt`: a newer local state
    is kept); returns the feeds adopted."""
    from producers.topic_reader import read_partitions

    latest: dict[str, bytes | None] = {}
    for key, value in read_partitions(settings, settings.feed_state_topic, partitions, timeout_s):
        latest[key] = value
    adopted = 0
    for feed_id, value in latest.items():
        if value is None:
            continue
        try:
            feed_state, seen = decode_state(value)
        except InvalidMessage as exc:
            log.warning("feed %s: state record ignored (%s)", feed_id, exc)
            continue
        adopted += state.adopt(feed_state, seen)
    return adopted
