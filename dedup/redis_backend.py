"""Redis index storage shared by all workers: LSH tables, a window and atomic claims.

What goes in: a Redis client (or URL), a fixed basename (default ``newsstream:dedup``; every
worker of one deployment must use the same) and the :class:`dedup.index.IndexParams`. What
comes out: the same lookups as the in-memory backend, shared by every worker and surviving
worker restarts.

Keys (all under the basename ``B``):

- ``B:params``: the stored parameters (JSON). Written once by the first worker (``SET NX``);
  a worker whose signature, banding or shard parameters differ refuses to start with a
  :class:`core.errors.ConfigurationError` naming each difference.
- ``B:band:<shard>``: the LSH tables. Field = a 64-bit band key (``dedup.lsh.band_keys``),
  value = the 16-byte ids of the articles with that band, concatenated. Band keys are spread
  over ``band_shards`` hashes (default 131,072) so that each stays small enough for Redis'
  compact listpack encoding (about 30 bytes per band entry instead of ~100 for a key per
  bucket).
- ``B:entry`` (hash id -> content hash + signature), ``B:exact`` (hash content hash -> id),
  ``B:times`` (sorted set id -> record time, drives the sliding window).
- ``B:claim:h:<content hash>``, ``B:claim:b:<band key>`` (id, with a TTL) and
  ``B:pending:<id>`` (content hash + signature, same TTL): the claims.

Why not datasketch's ``MinHashLSH`` with Redis storage: measured here it cost 35 to 48 ms per
article (one round trip per band, and a new Redis client for every buffer flush) and about
6 KB of Redis memory per article, against targets of 2 ms and 2 KB. The signatures are still
datasketch ``MinHash`` values; every read and write here is one Lua script or one command.

The race (two workers checking near copies at the same moment). ``claim`` runs one Lua script,
which Redis executes atomically: it stores the article's pending payload and, for its content
hash and each of its LSH band keys, ``SET``s the claim key to its id unless another id holds
it (a ``SET NX`` that also refreshes its own claims), returning the other holders with their
payloads. Of two exact copies the second script always finds the first's content-hash claim;
of two near copies it finds a shared band key with the LSH probability
``1 - (1 - J**rows)**bands`` (the same recall as against recorded articles), then confirms by
estimated Jaccard. ``record`` inserts into the LSH tables before it deletes the claims, and
``check`` claims before it reads the tables, so there is no moment when a kept article is
visible in neither. Hence at most one copy of a story survives. A worker that dies after
``check`` leaves its claims until their TTL (``claim_ttl_s``); the redelivered article is not a
duplicate of itself (its own id is ignored). The script touches keys of several hash slots: use
a single Redis server (or one shard), not Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

from core.errors import TransientError
from core.ids import is_article_id
from dedup.index import Entry, IndexParams, check_stored_params
from dedup.lsh import band_keys
from dedup.signature import Signature, SignatureMismatch

DEFAULT_BASENAME = "newsstream:dedup"
DEFAULT_BAND_SHARDS = 131_072
_EXPIRE_BATCH = 500
_ID = 16

# KEYS[1] = pending key of the claimant; KEYS[2..] = claim keys.
# ARGV[1] = claimant id; ARGV[2] = TTL in ms; ARGV[3] = pending payload; ARGV[4] = key prefix.
_CLAIM = """
local seen = {}
local out = {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if (not holder) or holder == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  elseif not seen[holder] then
    seen[holder] = true
    local payload = redis.call('GET', ARGV[4] .. ':pending:' .. holder)
    if payload then
      out[#out + 1] = holder
      out[#out + 1] = payload
    end
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return out
"""

# KEYS[1] = pending key; KEYS[2..] = claim keys; ARGV[1] = id. Deletes only its own claims.
_RELEASE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] = entry hash; KEYS[2..] = band shards. ARGV[i] = the band field for KEYS[i + 1].
# Returns id, payload, id, payload, ... of every recorded article sharing a band.
_CANDIDATES = """
local seen = {}
local out = {}
for i = 2, #KEYS do
  local ids = redis.call('HGET', KEYS[i], ARGV[i - 1])
  if ids then
    for j = 1, #ids, 16 do
      local id = string.sub(ids, j, j + 15)
      if not seen[id] then
        seen[id] = true
        local payload = redis.call('HGET', KEYS[1], id)
        if payload then
          out[#out + 1] = id
          out[#out + 1] = payload
        end
      end
    end
  end
end
return out
"""

# Shared by record and remove: drop ARGV id from the band fields of KEYS[first..last].
_DROP_BANDS = """
local function drop_bands(id, first, last, field_offset)
  for i = first, last do
    local ids = redis.call('HGET', KEYS[i], ARGV[i + field_offset])
    if ids then
      local rest = {}
      for j = 1, #ids, 16 do
        local other = string.sub(ids, j, j + 15)
        if other ~= id then rest[#rest + 1] = other end
      end
      if #rest == 0 then
        redis.call('HDEL', KEYS[i], ARGV[i + field_offset])
      else
        redis.call('HSET', KEYS[i], ARGV[i + field_offset], table.concat(rest))
      end
    end
  end
end
"""

# KEYS = entry, exact, times, new band shards (n), old band shards (m).
# ARGV = id, payload, hash, now, n, old hash or '', new fields (n), old fields (m).
_RECORD = (
    _DROP_BANDS
    + """
local id = ARGV[1]
local n = tonumber(ARGV[5])
local m = #KEYS - 3 - n
drop_bands(id, 4 + n, 3 + n + m, 3)
if ARGV[6] ~= '' and redis.call('HGET', KEYS[2], ARGV[6]) == id then
  redis.call('HDEL', KEYS[2], ARGV[6])
end
for i = 4, 3 + n do
  local field = ARGV[i + 3]
  local ids = redis.call('HGET', KEYS[i], field)
  if not ids then
    redis.call('HSET', KEYS[i], field, id)
  else
    local present = false
    for j = 1, #ids, 16 do
      if string.sub(ids, j, j + 15) == id then present = true end
    end
    if not present then redis.call('HSET', KEYS[i], field, ids .. id) end
  end
end
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], id)
redis.call('ZADD', KEYS[3], ARGV[4], id)
return 1
"""
)

# KEYS = entry, exact, times, band shards. ARGV = id, hash, cutoff, fields.
# Removes the entry only if it is still recorded before the cutoff (not re-recorded since).
_REMOVE = (
    _DROP_BANDS
    + """
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[3], id)
if (not score) or tonumber(score) >= tonumber(ARGV[3]) then return 0 end
drop_bands(id, 4, #KEYS, 0)
if redis.call('HGET', KEYS[2], ARGV[2]) == id then redis.call('HDEL', KEYS[2], ARGV[2]) end
redis.call('HDEL', KEYS[1], id)
redis.call('ZREM', KEYS[3], id)
return 1
"""
)


# KEYS = entry, exact, times, band shards. ARGV = id, hash, fields. Removes the entry whatever
# its record time (a deleted article); 0 when it was not recorded.
_DELETE = (
    _DROP_BANDS
    + """
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  redis.call('ZREM', KEYS[3], id)
  return 0
end
drop_bands(id, 4, #KEYS, -1)
if redis.call('HGET', KEYS[2], ARGV[2]) == id then redis.call('HDEL', KEYS[2], ARGV[2]) end
redis.call('HDEL', KEYS[1], id)
redis.call('ZREM', KEYS[3], id)
return 1
"""
)


@contextmanager
def _transient() -> Iterator[None]:
    """Redis outages become :class:`TransientError` (the worker backs off and retries)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc


def _raw(value: object) -> bytes:
    """A Redis reply as bytes (the client's replies are loosely typed)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")


def _id_bytes(article_id: str) -> bytes:
    if not is_article_id(article_id):
        raise ValueError(f"the Redis dedup backend stores article ids (32 hex), got {article_id!r}")
    return bytes.fromhex(article_id)


def _hash_bytes(content_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(content_hash)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise ValueError(f"expected a 32-hex-digit content hash, got {content_hash!r}")
    return raw


class RedisBackend:
    """Index storage in Redis, shared by all workers (see the module docstring).

    ``client`` is a ``redis.Redis`` or a ``redis://`` URL; ``basename`` must be the same for
    every worker of a deployment. Raises ``ConfigurationError`` when the index under
    ``basename`` was built with other parameters, ``TransientError`` when Redis cannot be
    reached (at start or later).
    """

    def __init__(
        self,
        params: IndexParams,
        client: redis.Redis | str,
        *,
        basename: str = DEFAULT_BASENAME,
        band_shards: int = DEFAULT_BAND_SHARDS,
    ) -> None:
        if not basename or any(ch.isspace() for ch in basename):
            raise ValueError(f"basename must be a non-empty name without spaces, got {basename!r}")
        if isinstance(band_shards, bool) or not isinstance(band_shards, int) or band_shards < 1:
            raise ValueError(f"band_shards must be a positive integer, got {band_shards!r}")
        self.params = params
        self.basename = basename
        self.band_shards = band_shards
        self._redis: redis.Redis = (
            redis.Redis.from_url(client) if isinstance(client, str) else client
        )
        with _transient():
            self._check_params()
        self._claim_script = self._redis.register_script(_CLAIM)
        self._release_script = self._redis.register_script(_RELEASE)
        self._candidates_script = self._redis.register_script(_CANDIDATES)
        self._record_script = self._redis.register_script(_RECORD)
        self._remove_script = self._redis.register_script(_REMOVE)
        self._delete_script = self._redis.register_script(_DELETE)

    def _key(self, suffix: str) -> str:
        return f"{self.basename}:{suffix}"

    def stored(self) -> dict[str, Any]:
        """The parameters this backend stores and checks."""
        return {**self.params.stored(), "band_shards": self.band_shards, "layout": 1}

    def _check_params(self) -> None:
        expected = self.stored()
        self._redis.set(self._key("params"), json.dumps(expected, sort_keys=True), nx=True)
        raw = self._redis.get(self._key("params"))
        found = json.loads(raw) if raw else {}
        check_stored_params(found, expected, f"redis basename {self.basename!r}")

    def _claim_keys(self, content_hash: str, keys: npt.NDArray[np.uint64]) -> list[str]:
        return [self._key(f"claim:h:{content_hash}")] + [
            self._key(f"claim:b:{key:016x}") for key in keys.tolist()
        ]

    def _bands(self, keys: npt.NDArray[np.uint64]) -> tuple[list[str], list[bytes]]:
        """The shard hash and field of each band key."""
        values = keys.tolist()
        shards = [self._key(f"band:{key % self.band_shards}") for key in values]
        return shards, [key.to_bytes(8, "big") for key in values]

    def _payload(self, entry: Entry) -> bytes:
        return _hash_bytes(entry.content_hash) + entry.signature.to_bytes()

    def _entry(self, raw_id: bytes, payload: bytes) -> Entry:
        signature = Signature.from_bytes(self.params.signature, bytes(payload[16:]))
        return Entry(bytes(raw_id).hex(), bytes(payload[:16]).hex(), signature)

    def _check_signature(self, signature: Signature) -> None:
        if signature.params != self.params.signature:
            raise SignatureMismatch(
                f"signature made with {signature.params}, index uses {self.params.signature}"
            )

    # --- claims ----------------------------------------------------------------------------
    def claim(
        self, entry: Entry, keys: npt.NDArray[np.uint64], now: float, ttl_s: float
    ) -> list[Entry]:
        """Atomically claim the entry's hash and band keys; return earlier claimants."""
        self._check_signature(entry.signature)
        _id_bytes(entry.article_id)
        with _transient():
            out = self._claim_script(
                keys=[
                    self._key(f"pending:{entry.article_id}"),
                    *self._claim_keys(entry.content_hash, keys),
                ],
                args=[
                    entry.article_id,
                    max(1, int(ttl_s * 1000)),
                    self._payload(entry),
                    self.basename,
                ],
            )
        return [
            self._entry(bytes.fromhex(out[i].decode("ascii")), out[i + 1])
            for i in range(0, len(out), 2)
        ]

    def release(self, article_id: str) -> None:
        """Drop the claims of ``article_id`` (only keys it still holds)."""
        pending = self._key(f"pending:{article_id}")
        with _transient():
            payload = self._redis.get(pending)
            if payload is None:
                return
            entry = self._entry(_id_bytes(article_id), _raw(payload))
            self._release(entry, band_keys(entry.signature, self.params.lsh))

    def _release(self, entry: Entry, keys: npt.NDArray[np.uint64]) -> None:
        self._release_script(
            keys=[
                self._key(f"pending:{entry.article_id}"),
                *self._claim_keys(entry.content_hash, keys),
            ],
            args=[entry.article_id],
        )

    # --- lookups ---------------------------------------------------------------------------
    def find_exact(self, content_hash: str) -> str | None:
        """The id of a recorded entry with this content hash, if any."""
        with _transient():
            raw = self._redis.hget(self._key("exact"), _hash_bytes(content_hash))
        return None if raw is None else _raw(raw).hex()

    def candidates(self, signature: Signature, keys: npt.NDArray[np.uint64]) -> list[Entry]:
        """Recorded entries sharing at least one LSH band with ``signature`` (one script)."""
        self._check_signature(signature)
        shards, fields = self._bands(keys)
        with _transient():
            out = self._candidates_script(keys=[self._key("entry"), *shards], args=fields)
        return [self._entry(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    # --- writes ----------------------------------------------------------------------------
    def record(self, entry: Entry, keys: npt.NDArray[np.uint64], now: float) -> None:
        """Store (or replace) ``entry`` as of ``now``, then drop its claims."""
        self._check_signature(entry.signature)
        raw_id = _id_bytes(entry.article_id)
        shards, fields = self._bands(keys)
        with _transient():
            old = self._redis.hget(self._key("entry"), raw_id)
            old_shards: list[str] = []
            old_fields: list[bytes] = []
            old_hash = b""
            if old is not None:
                previous = self._entry(raw_id, _raw(old))
                old_shards, old_fields = self._bands(band_keys(previous.signature, self.params.lsh))
                old_hash = _hash_bytes(previous.content_hash)
            self._record_script(
                keys=[
                    self._key("entry"),
                    self._key("exact"),
                    self._key("times"),
                    *shards,
                    *old_shards,
                ],
                args=[
                    raw_id,
                    self._payload(entry),
                    _hash_bytes(entry.content_hash),
                    repr(float(now)),
                    len(shards),
                    old_hash,
                    *fields,
                    *old_fields,
                ],
            )
            # Only now that the tables hold it may the claim go (see "The race").
            self._release(entry, keys)

    def remove(self, article_id: str) -> bool:
        """Drop the entry and the claims of ``article_id`` (a deleted article), atomically per
        entry; True when an entry was recorded. Safe with several workers removing at once."""
        raw_id = _id_bytes(article_id)
        with _transient():
            self.release(article_id)
            payload = self._redis.hget(self._key("entry"), raw_id)
            if payload is None:
                return False
            entry = self._entry(raw_id, _raw(payload))
            shards, fields = self._bands(band_keys(entry.signature, self.params.lsh))
            return bool(
                self._delete_script(
                    keys=[self._key("entry"), self._key("exact"), self._key("times"), *shards],
                    args=[raw_id, _hash_bytes(entry.content_hash), *fields],
                )
            )

    def expire(self, now: float, window_s: float) -> int:
        """Remove entries recorded before ``now - window_s``; return how many this call removed.

        Safe with several workers expiring at once, and with an article re-recorded meanwhile:
        the removal script checks the record time again, atomically.
        """
        cutoff = now - window_s
        removed = 0
        times = self._key("times")
        with _transient():
            while True:
                old = [
                    _raw(item)
                    for item in self._redis.zrangebyscore(
                        times, "-inf", f"({cutoff!r}", start=0, num=_EXPIRE_BATCH
                    )
                ]
                if not old:
                    return removed
                payloads = self._redis.hmget(self._key("entry"), old)
                for raw_id, payload in zip(old, payloads, strict=True):
                    if payload is None:  # a half-removed entry: drop its time only
                        self._redis.zrem(times, raw_id)
                        continue
                    entry = self._entry(raw_id, _raw(payload))
                    shards, fields = self._bands(band_keys(entry.signature, self.params.lsh))
                    removed += int(
                        self._remove_script(
                            keys=[self._key("entry"), self._key("exact"), times, *shards],
                            args=[raw_id, _hash_bytes(entry.content_hash), repr(cutoff), *fields],
                        )
                    )

    def size(self) -> int:
        """Recorded entries in the window (shared by all workers)."""
        with _transient():
            return int(self._redis.zcard(self._key("times")))

    def clear(self) -> None:
        """Delete every key of this basename (tests and bench; never called by workers)."""
        with _transient():
            batch = list(self._redis.scan_iter(match=f"{self.basename}:*", count=1000))
            for start in range(0, len(batch), 1000):
                self._redis.delete(*batch[start : start + 1000])

    def stored_params(self) -> dict[str, Any]:
        """The parameters stored with the index."""
        with _transient():
            raw = self._redis.get(self._key("params"))
        return dict(json.loads(raw)) if raw else {}
