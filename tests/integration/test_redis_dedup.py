"""The Redis dedup backend against a real Debian redis-server: sharing, restarts, the race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from core.errors import ConfigurationError, TransientError
from dedup.index import DedupIndex, IndexParams, VerdictKind
from dedup.redis_backend import RedisBackend
from dedup.signature import SignatureParams

pytestmark = pytest.mark.integration

HOUR = 3600.0
STORY = (
    "Oil prices jump as OPEC agrees output cut. Oil prices rose sharply on Monday after the "
    "producers' group agreed to cut output for the third time this year, traders said."
)
OTHER = (
    "Local team wins the cup final. Supporters celebrated in the streets after a late goal "
    "settled a tense match that had gone to extra time."
)


def _id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
def basename() -> Iterator[str]:
    yield f"test:{uuid.uuid4().hex[:8]}"


def _index(url: str, basename: str, params: IndexParams | None = None) -> DedupIndex:
    params = params or IndexParams()
    return DedupIndex(RedisBackend(params, url, basename=basename), params)


def test_workers_share_the_index_and_it_survives_a_restart(redis_url: str, basename: str) -> None:
    worker_1 = _index(redis_url, basename)
    kept = _id()
    verdict = worker_1.check(kept, STORY, 0.0)
    assert verdict.kind is VerdictKind.UNIQUE
    worker_1.record(kept, verdict, 0.0)
    del worker_1  # "restart": a new process would open the same basename
    worker_2 = _index(redis_url, basename)
    assert worker_2.size() == 1
    assert worker_2.check(_id(), STORY.lower(), 1.0).duplicate_of == kept
    near = worker_2.check(_id(), "Update 1: " + STORY.replace("Monday", "Tuesday"), 1.0)
    assert near.kind is VerdictKind.NEAR and near.duplicate_of == kept
    assert worker_2.check(_id(), OTHER, 1.0).kind is VerdictKind.UNIQUE
    assert worker_2.check(kept, STORY, 2.0).kind is VerdictKind.UNIQUE  # itself, redelivered


def test_other_parameters_refuse_to_start(redis_url: str, basename: str) -> None:
    _index(redis_url, basename)
    with pytest.raises(ConfigurationError, match="num_perm: index has 128, configured 64"):
        _index(redis_url, basename, IndexParams(signature=SignatureParams(num_perm=64)))
    with pytest.raises(ConfigurationError, match="seed"):
        _index(redis_url, basename, IndexParams(signature=SignatureParams(seed=2)))


def test_window_expiry_and_republish(redis_url: str, basename: str) -> None:
    index = _index(redis_url, basename, IndexParams(window_s=10 * HOUR))
    first, second = _id(), _id()
    index.record(first, STORY, 0.0)
    index.record(second, OTHER, 5 * HOUR)
    index.record(second, OTHER + " Police said nobody was hurt.", 6 * HOUR)  # re-published
    assert index.size() == 2
    assert index.expire(10 * HOUR - 1) == 0
    assert index.expire(10 * HOUR + 1) == 1
    assert index.size() == 1
    assert index.check(_id(), STORY, 11 * HOUR).kind is VerdictKind.UNIQUE
    assert (
        index.check(_id(), OTHER + " Police said nobody was hurt.", 11 * HOUR).duplicate_of
        == second
    )


def test_unstored_claims_are_released(redis_url: str, basename: str) -> None:
    index = _index(redis_url, basename)
    dropped = _id()
    assert index.check(dropped, STORY, 0.0).kind is VerdictKind.UNIQUE
    blocked = index.check(_id(), STORY, 0.0)
    assert blocked.duplicate_of == dropped
    index.release(dropped)  # e.g. the article went to the DLQ
    assert index.check(_id(), STORY, 1.0).kind is VerdictKind.UNIQUE


@pytest.mark.parametrize("round_", range(5))
def test_two_workers_racing_on_near_duplicates_keep_at_most_one(
    redis_url: str, basename: str, round_: int
) -> None:
    """Eight workers (threads with their own connections) check near copies of one story at
    the same moment, then store what came out unique: exactly one copy survives."""
    variants = [
        STORY,
        f"Update 1: {STORY}",
        f"{STORY} (AFP)",
        STORY.replace("Monday", "Tuesday"),
        STORY.replace("traders said", "analysts said"),
        STORY.upper(),
        f"BREAKING: {STORY}",
        STORY.replace("sharply", "steeply"),
    ]
    barrier = threading.Barrier(len(variants))
    verdicts: dict[str, VerdictKind] = {}
    errors: list[BaseException] = []

    def worker(text: str) -> None:
        try:
            index = _index(redis_url, basename)
            article_id = _id()
            barrier.wait()
            verdict = index.check(article_id, text, 0.0)
            if verdict.kind is VerdictKind.UNIQUE:
                index.record(article_id, verdict, 0.0)  # "after Milvus acknowledged"
            verdicts[article_id] = verdict.kind
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(text,)) for text in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(verdicts) == len(variants)
    assert list(verdicts.values()).count(VerdictKind.UNIQUE) == 1
    assert _index(redis_url, basename).size() == 1


def test_redis_down_is_a_transient_error(basename: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(TransientError, match="redis unavailable"):
        RedisBackend(IndexParams(), client, basename=basename)


def test_a_removed_article_leaves_the_shared_index_for_every_worker(
    redis_url: str, basename: str
) -> None:
    worker_1, worker_2 = _index(redis_url, basename), _index(redis_url, basename)
    gone, kept, claimed = _id(), _id(), _id()
    worker_1.record(gone, STORY, 0.0)
    worker_1.record(kept, OTHER, 0.0)
    assert worker_2.check(claimed, "Breaking: " + OTHER.replace("late", "very late"), 0.0)
    assert worker_2.remove([gone, _id()]) == 1  # an id never recorded is a no-op
    assert worker_1.size() == 1
    # Neither an exact nor a near copy of the deleted text is a duplicate, in either worker.
    exact = _id()
    assert worker_1.check(exact, STORY, 1.0).kind is VerdictKind.UNIQUE
    worker_1.release(exact)  # claimed as unique: not stored after all
    near = worker_2.check(_id(), STORY.replace("Monday", "Tuesday"), 1.0)
    assert near.kind is VerdictKind.UNIQUE
    worker_2.release(near.article_id)
    assert worker_1.check(_id(), OTHER.upper(), 1.0).duplicate_of == kept
    assert worker_1.remove([gone]) == 0
    # A removed claim frees its text at once (not after the claim's TTL).
    worker_2.remove([claimed])
    unclaimed = worker_1.check(_id(), "Breaking: " + OTHER.replace("late", "very late"), 3.0)
    assert unclaimed.duplicate_of == kept  # the recorded original, not the removed claim
    assert worker_1.expire(4 * 24 * HOUR) == 1  # expiry still walks what is left
    assert worker_1.size() == 0
