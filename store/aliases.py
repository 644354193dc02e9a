"""The serving alias: which real collection the configured name reads and writes, and its mirror.

The configured ``milvus_collection`` is, after a first reindex, a Milvus ALIAS of a real
collection named ``<name>_v<N>`` (Milvus Lite 3 and the PyPI ``milvus`` 2.3.5 server both
create, alter, describe and drop aliases, and resolve them for search, query, upsert, delete,
load and ``describe_collection``). Before that it is the real collection itself (an install
that never reindexed); nothing changes for it until the first swap.

What goes in: a Milvus client and the configured name. What comes out: :class:`Serving`, read
from ONE ``describe_collection`` of that name: the real collection behind it, its properties,
the collection it mirrors writes into (:data:`MIRROR`: set while a reindex builds a new
collection, and after a swap to keep the previous one current for a rollback) and its keyword
index file. Guaranteed:

- :func:`swap` points the alias at ``target`` in one Milvus call when the alias exists;
  on an install where the name is still a real collection (Milvus refuses an alias beside a
  collection of the same name) it renames that collection to ``<name>_v1`` first, keeping its
  keyword index file through the :data:`KEYWORD_FILE` property, then creates the alias: two
  calls, between which the name resolves to nothing for a few milliseconds (readers retry a
  missing collection briefly: :func:`is_missing_collection`). Milvus Lite releases a renamed
  collection, so it is loaded again after the alias exists.
- properties are only ever set, never dropped ("" means unset), which every server supports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymilvus import MilvusClient, MilvusException

#: The real collection that also receives every write while set (a reindex target, or the
#: previous collection kept current for a rollback).
MIRROR = "newsstream.mirror"
#: The role of a real collection: ``building`` (a reindex fills it), ``serving``, ``previous``.
ROLE = "newsstream.role"
#: The keyword index file of a real collection when it is not ``<collection>.sqlite`` (a
#: collection renamed by the first swap keeps the file it had).
KEYWORD_FILE = "newsstream.keyword_file"


@dataclass(frozen=True)
class Serving:
    """What the configured name resolves to now (see the module docstring)."""

    name: str
    """The configured name (an alias, or a real collection on an install never reindexed)."""
    collection: str
    """The real collection behind ``name`` (``name`` itself when it is not an alias, or when
    nothing exists yet)."""
    properties: dict[str, str] = field(default_factory=dict)
    """The real collection's properties."""

    @property
    def is_alias(self) -> bool:
        return self.collection != self.name

    @property
    def mirror(self) -> str:
        """The collection every write also goes to, or "" when none."""
        return self.properties.get(MIRROR, "")


def is_missing_collection(exc: BaseException) -> bool:
    """Whether a Milvus error says the collection (or alias) does not exist."""
    text = str(exc).lower()
    return isinstance(exc, MilvusException) and (
        "not exist" in text or "not found" in text or "can't find" in text
    )


def properties_of(description: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (description.get("properties") or {}).items()}


def resolve(client: MilvusClient, name: str) -> Serving:
    """The real collection behind ``name`` and its properties (one describe call); a name that
    does not exist yet resolves to itself with no properties. Raises what pymilvus raises when
    Milvus is away."""
    try:
        description = client.describe_collection(name)
    except MilvusException as exc:
        if is_missing_collection(exc):
            return Serving(name=name, collection=name)
        raise
    return Serving(
        name=name,
        collection=str(description.get("collection_name") or name),
        properties=properties_of(description),
    )


def collection_properties(client: MilvusClient, collection: str) -> dict[str, str]:
    """The properties of the real ``collection``."""
    return properties_of(client.describe_collection(collection))


def set_properties(client: MilvusClient, collection: str, values: dict[str, str]) -> None:
    """Set properties of ``collection`` ("" unsets one: see the module docstring)."""
    client.alter_collection_properties(collection, values)


def keyword_file(collection: str, properties: dict[str, str]) -> str:
    """The keyword index file name of the real ``collection``."""
    return properties.get(KEYWORD_FILE) or f"{collection}.sqlite"


def keyword_path(data_dir: Path, collection: str, properties: dict[str, str]) -> Path:
    """Where the keyword index of the real ``collection`` lives under ``data_dir``."""
    return data_dir / "keywords" / keyword_file(collection, properties)


_GENERATION = r"_v(\d+)"


def generation_of(name: str, collection: str) -> int:
    """The generation number of ``collection`` among ``name``'s (``<name>_v<N>``); 0 for
    anything else (the real collection of an install never reindexed included)."""
    match = re.fullmatch(re.escape(name) + _GENERATION, collection)
    return int(match.group(1)) if match else 0


def next_generation(name: str, existing: list[str]) -> str:
    """The name of the next real collection for alias ``name``: ``<name>_v<N+1>`` past every
    generation in ``existing``, at least ``_v2`` (``_v1`` is what the first swap renames an
    existing real collection ``name`` to)."""
    highest = max((generation_of(name, c) for c in existing), default=0)
    return f"{name}_v{max(highest, 1) + 1}"


def swap(client: MilvusClient, name: str, target: str) -> str | None:
    """Point the alias ``name`` at the real collection ``target``; returns the collection the
    first swap renamed (``<name>_v1``), or None. See the module docstring for the one case of
    two calls."""
    aliases = client.list_aliases(target).get("aliases") or []
    if name in aliases:
        return None
    serving = resolve(client, name)
    if serving.is_alias:
        client.alter_alias(target, name)
        return None
    if client.has_collection(name):
        renamed = f"{name}_v1"  # store.reindex.legacy_name
        properties = collection_properties(client, name)
        set_properties(client, name, {KEYWORD_FILE: keyword_file(name, properties)})
        client.rename_collection(name, renamed)
        client.create_alias(target, name)
        client.load_collection(renamed)  # Milvus Lite releases a renamed collection
        return renamed
    client.create_alias(target, name)
    return None
