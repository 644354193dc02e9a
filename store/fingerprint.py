"""The model fingerprint beside a collection: recorded once, checked by every writer and reader.

What goes in: a Milvus client, a collection name and the fingerprint of the model this process
embeds with, as any object with the :class:`ModelStamp` shape (the embedding package's
``ModelFingerprint`` has it; this package does not import that one). What comes out: nothing,
or a :class:`core.errors.ConfigurationError` that names both fingerprints, what differs, and
how to fix it.

Where it lives: the collection property :data:`PROPERTY` (the fingerprint's JSON form), set with
``alter_collection_properties``. Milvus Lite 3, the PyPI ``milvus`` 2.3.5 server and current
servers keep collection properties across restarts and show them to every client in
``describe_collection`` (a collection description would not do: Milvus Lite drops it, and no
server lets it change after creation).

Guarantees:

- a collection without a fingerprint (new, or made by a version before fingerprints) takes this
  process's fingerprint when it is empty or when a sample of its rows (:data:`SAMPLE_ROWS`) all
  carry this model's name in their ``model`` field; otherwise it is refused;
- a collection with a fingerprint is used only when the stamp accepts it (the rule belongs to
  the embedding package: the model's identity must match, a backend may differ when both pass
  the quality bar);
- two processes that record at once: each reads the property back after writing and checks it,
  so the one whose fingerprint was overwritten by an incompatible one refuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from pymilvus import MilvusClient

from core.errors import ConfigurationError

log = logging.getLogger(__name__)

#: The collection property holding the fingerprint's JSON form.
PROPERTY = "newsstream.model_fingerprint"
#: Rows sampled to decide whether a collection without a fingerprint was made by this model.
SAMPLE_ROWS = 20


class ModelStamp(Protocol):
    """What the store needs of a model fingerprint."""

    @property
    def model(self) -> str:
        """The model name rows carry in their ``model`` field."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The fingerprint's JSON form, recorded as is."""
        ...

    def short(self) -> str:
        """One line for messages."""
        ...

    def refusal(self, recorded: Mapping[str, Any]) -> str | None:
        """Why this model's vectors may not join a collection recorded as ``recorded``, or
        None when they may."""
        ...


def recorded_fingerprint(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The fingerprint recorded beside ``collection`` (its JSON form), or None when there is
    none. Text that is not a JSON object comes back as ``{"unreadable": text}`` (which no
    stamp accepts)."""
    properties = client.describe_collection(collection).get("properties") or {}
    text = properties.get(PROPERTY)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"unreadable": text}


def record_fingerprint(client: MilvusClient, collection: str, stamp: ModelStamp) -> None:
    """Write ``stamp`` beside ``collection`` (replacing what was there)."""
    text = json.dumps(stamp.to_json(), sort_keys=True, separators=(",", ":"))
    client.alter_collection_properties(collection, {PROPERTY: text})


def check_fingerprint(client: MilvusClient, collection: str, stamp: ModelStamp) -> None:
    """Record ``stamp`` beside a collection that has no fingerprint, or check it against the
    one recorded (see the module docstring). The collection must be loaded (rows are sampled).

    Raises :class:`ConfigurationError` when the model may not use the collection.
    """
    recorded = recorded_fingerprint(client, collection)
    if recorded is None:
        models = _sampled_models(client, collection)
        if models - {stamp.model}:
            raise ConfigurationError(
                f"collection {collection!r} has no model fingerprint and its rows were embedded "
                f"by {', '.join(sorted(models))}, not by {stamp.short()}. {fix(collection)}"
            )
        record_fingerprint(client, collection, stamp)
        log.info(
            "collection %r %s the fingerprint of %s",
            collection,
            "adopted" if models else "recorded",
            stamp.short(),
        )
        recorded = recorded_fingerprint(client, collection)
        if recorded is None:  # pragma: no cover - a server that drops properties
            raise ConfigurationError(
                f"Milvus did not keep the property {PROPERTY!r} on {collection!r}: expected a "
                "server that stores collection properties (Milvus Lite 3, Milvus >= 2.3)"
            )
    reason = stamp.refusal(recorded)
    if reason is not None:
        raise ConfigurationError(
            f"collection {collection!r} refuses this embedding model: {reason}. {fix(collection)}"
        )


def fix(collection: str) -> str:
    """What an operator can do about a refused model."""
    return (
        f"To use this model, point NEWSSTREAM_MILVUS_COLLECTION at a new collection (it records "
        f"this model and fills as articles arrive; {collection!r} stays as it is), or configure "
        "the model the collection was built with; `newsstream model` shows its fingerprint"
    )


def _sampled_models(client: MilvusClient, collection: str) -> set[str]:
    rows = client.query(
        collection,
        filter='id != ""',
        output_fields=["model"],
        limit=SAMPLE_ROWS,
        consistency_level="Strong",
    )
    return {str(row.get("model") or "") for row in rows}
