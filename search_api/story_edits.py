"""The log of story edits: one compacted Kafka record per article an admin moved.

What goes in: a split's moved article ids, their new and previous story, who and why. What
comes out: :meth:`StoryEditLog.record` returns once the broker acknowledged every record
(``acks=all``), else raises :class:`core.errors.TransientError` (the caller changes nothing);
:meth:`StoryEditLog.moved_out_of` reads the log back (which articles a split moved out of a
story), so a repeated split gives the same answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from core.errors import TransientError
from core.kafka import reader_config
from core.settings import Settings
from search_api.acked_producer import DELIVERY_TIMEOUT_S, Record, RecordSink


class StoryEditLog:
    """Records story edits on ``kafka_story_edits_topic``: one message per moved article, key =
    article id, value = JSON ``{article_id, story_id, previous_story_id, at, by, reason}``.

    :meth:`record` returns only after the broker acknowledged every message (``acks=all``);
    otherwise it raises :class:`TransientError` and the caller changes nothing.
    """

    def __init__(self, settings: Settings, sink: RecordSink) -> None:
        self._settings = settings
        self._sink = sink

    def record(
        self,
        article_ids: Sequence[str],
        story_id: str,
        previous_story_id: str,
        by: str,
        reason: str | None,
    ) -> None:
        """Send one edit per article and wait for every delivery report."""
        now = int(time.time())
        self._sink.send(
            [
                Record(
                    self._settings.kafka_story_edits_topic,
                    key=article.encode(),
                    value=json.dumps(
                        {
                            "article_id": article,
                            "story_id": story_id,
                            "previous_story_id": previous_story_id,
                            "at": now,
                            "by": by,
                            "reason": reason,
                        }
                    ).encode(),
                )
                for article in article_ids
            ]
        )

    def moved_out_of(self, story_id: str, current: dict[str, str]) -> set[str]:
        """The ids of ``current`` ({article id: its story now}) whose latest recorded edit moved
        them from ``story_id`` to the story they are in now.

        Reads the whole topic (it holds admin edits only, compacted to one per article);
        raises :class:`TransientError` when the broker does not let it read to the end.
        """
        topic = self._settings.kafka_story_edits_topic
        consumer = Consumer(reader_config(self._settings, "story-edits-reader"))
        latest: dict[str, dict[str, Any]] = {}
        try:
            metadata = consumer.list_topics(topic, timeout=DELIVERY_TIMEOUT_S)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return set()  # no edit was ever recorded
            partitions = sorted(found.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            at_end: set[int] = set()
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S
            while len(at_end) < len(partitions):
                if time.monotonic() > deadline:
                    raise TransientError(f"{topic} could not be read to its end")
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                    continue
                at_end.discard(message.partition() or 0)
                key = (message.key() or b"").decode("utf-8", "replace")
                if key in current:
                    try:
                        latest[key] = json.loads(message.value() or b"null") or {}
                    except json.JSONDecodeError:
                        continue
        except KafkaException as exc:
            raise TransientError(f"{topic} unreadable: {exc}") from exc
        finally:
            consumer.close()
        return {
            ident
            for ident, edit in latest.items()
            if isinstance(edit, dict)
            and edit.get("previous_story_id") == story_id
            and edit.get("story_id") == current[ident]
        }
