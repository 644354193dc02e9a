"""The model fingerprint: which model made a collection's vectors, and which models may join.

What goes in: the loaded model's facts (configured name, local model directory, concrete
backend, token limit, dimension). What comes out: a :class:`ModelFingerprint` with a stable JSON
form (:meth:`ModelFingerprint.to_json`, sorted keys, written beside the collection by
:mod:`store.fingerprint`) and the compatibility rule (:func:`compatibility`).

The identity of a model is its configured name, a SHA-256 of its weights as loaded (the weight
files of the model directory and of every module directory that ``modules.json`` lists:
``*.safetensors`` where present, else ``*.bin``/``*.pt``/``*.pth``; the file names and bytes),
its token limit (texts are cut there, so a different limit makes different vectors for long
texts), its dimension and its normalisation (every backend here L2-normalises: ``l2``).

The compatibility rule: vectors of two fingerprints may share a collection when their identities
match exactly. The backend is recorded too, but a different backend of the same weights is
accepted (with a warning in the log) when both backends passed the project's quality bar
against fp32 for that model: ``torch`` by definition, and those ranked in the reference record
``embedding/choice.json`` (every shipped backend passes for the packaged model: mean cosine to
fp32 >= 0.99, MRR@10 within 0.01). Workers on different CPUs may resolve ``auto`` to different
backends (:mod:`embedding.backend_choice` measures each machine): ``auto`` only ever picks
``torch`` or a backend of that record that also met the bar on its own CPU, so any two of its
choices are accepted here. A backend that was never measured for the model is refused like a
different model.

Cost: hashing the weights reads every weight file once per process (0.1-0.2 s for the 87 MiB
of all-MiniLM-L6-v2 here). Each file's hash is kept in a small JSON cache
(``<embedding cache dir>/weights-sha256.json``) keyed by path, size and modification time, so a
later start reads no weights; a file rewritten with the same size within the same nanosecond
would be missed, which no model download or copy does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError
from embedding.embedder import recorded_ranking

log = logging.getLogger(__name__)

#: Version of the JSON form (a reader refuses a form it does not know).
FORMAT = 1
#: How every backend normalises vectors (see :mod:`embedding.embedder`).
NORMALIZATION = "l2"
#: Weight file suffixes, in the order a model loader prefers them (one kind per directory).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
#: The file, under the embedding cache directory, that remembers the hash of each weight file.
CACHE_FILE = "weights-sha256.json"
#: Fields that must match exactly for two fingerprints' vectors to share a collection.
IDENTITY = ("model", "weights_sha256", "max_tokens", "dimension", "normalization")
#: The settings that configure each field (for the message that says how to set it back).
SETTING_OF = {
    "model": "NEWSSTREAM_EMBEDDING_MODEL",
    "weights_sha256": "NEWSSTREAM_EMBEDDING_MODEL",
    "max_tokens": "NEWSSTREAM_EMBEDDING_MAX_TOKENS",
    "dimension": "NEWSSTREAM_EMBEDDING_MODEL",
    "normalization": "NEWSSTREAM_EMBEDDING_MODEL",
    "backend": "NEWSSTREAM_EMBEDDING_BACKEND",
}


@dataclass(frozen=True)
class ModelFingerprint:
    """The identity of an embedding model as loaded, plus the backend that runs it.

    ``model`` is the configured name (what rows carry in their ``model`` field),
    ``weights_sha256`` the hex SHA-256 of the weights, ``backend`` the concrete backend,
    ``max_tokens`` the token limit, ``dimension`` the vector size, ``normalization`` ``l2``.
    """

    model: str
    weights_sha256: str
    backend: str
    max_tokens: int
    dimension: int
    normalization: str = NORMALIZATION

    def to_json(self) -> dict[str, Any]:
        """The JSON form: a flat mapping of every field and the form's version."""
        return {
            "format": FORMAT,
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "backend": self.backend,
            "max_tokens": self.max_tokens,
            "dimension": self.dimension,
            "normalization": self.normalization,
        }

    def dumps(self) -> str:
        """The JSON form as text: sorted keys, no spaces, so equal fingerprints give equal text."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelFingerprint:
        """Read the JSON form; raises :class:`ValueError` for a form or field it cannot read."""
        if data.get("format") != FORMAT:
            raise ValueError(f"fingerprint format {data.get('format')!r}, expected {FORMAT}")
        texts = {k: data.get(k) for k in ("model", "weights_sha256", "backend", "normalization")}
        numbers = {k: data.get(k) for k in ("max_tokens", "dimension")}
        for key, value in texts.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"fingerprint field {key!r} is {value!r}, expected text")
        for key, value in numbers.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"fingerprint field {key!r} is {value!r}, expected a count")
        return cls(
            model=str(texts["model"]),
            weights_sha256=str(texts["weights_sha256"]),
            backend=str(texts["backend"]),
            max_tokens=int(numbers["max_tokens"]),  # type: ignore[arg-type]
            dimension=int(numbers["dimension"]),  # type: ignore[arg-type]
            normalization=str(texts["normalization"]),
        )

    def short(self) -> str:
        """One line for messages: name, weights hash prefix, backend, limits."""
        return (
            f"{self.model} (weights {self.weights_sha256[:12]}, {self.backend}, "
            f"{self.max_tokens} tokens, {self.dimension}-d, {self.normalization})"
        )

    def refusal(self, recorded: Mapping[str, Any]) -> str | None:
        """Why vectors of this model may not join a collection whose fingerprint is
        ``recorded`` (its JSON form), or None when they may (see :func:`compatibility`; an
        accepted difference of backend is logged as a warning). The reason names both
        fingerprints, what differs and the settings that would set this model back."""
        try:
            other = ModelFingerprint.from_json(recorded)
        except ValueError as exc:
            return f"its recorded fingerprint cannot be read ({exc}): {dict(recorded)!r}"
        verdict = compatibility(self, other)
        if verdict.warning:
            log.warning("%s", verdict.warning)
        if verdict.compatible:
            return None
        settings = sorted({SETTING_OF[field] for field in verdict.fields})
        return (
            f"it was built by {other.short()} but this process embeds with {self.short()}; "
            f"they differ in {'; '.join(verdict.differences)} (set {', '.join(settings)} "
            "back to what built it)"
        )


@dataclass(frozen=True)
class Compatibility:
    """The verdict of :func:`compatibility`: the differences that forbid sharing (empty when
    allowed), the fields they concern, and a warning for an accepted difference of backend."""

    differences: tuple[str, ...]
    fields: tuple[str, ...]
    warning: str | None = None

    @property
    def compatible(self) -> bool:
        return not self.differences


def passing_backends(model: str) -> frozenset[str]:
    """Backends whose vectors met the quality bar against fp32 for ``model``: ``torch`` (the
    reference) and those recorded as passing in ``embedding/choice.json``."""
    return frozenset({"torch", *recorded_ranking(model)})


def compatibility(
    current: ModelFingerprint,
    recorded: ModelFingerprint,
    passing: Collection[str] | None = None,
) -> Compatibility:
    """Whether vectors of ``current`` may join a collection recorded as ``recorded``.

    The identity fields (:data:`IDENTITY`) must match exactly. Backends may differ when both are
    in ``passing`` (default :func:`passing_backends` of the model); the verdict then carries a
    warning. Pure: reads ``embedding/choice.json`` only when ``passing`` is not given.
    """
    mine, theirs = current.to_json(), recorded.to_json()
    differences: list[str] = []
    fields: list[str] = []
    for field in IDENTITY:
        if mine[field] != theirs[field]:
            fields.append(field)
            differences.append(
                f"{field} ({_show(theirs[field])} recorded, {_show(mine[field])} here)"
            )
    warning = None
    if current.backend != recorded.backend:
        allowed = passing_backends(current.model) if passing is None else frozenset(passing)
        if {current.backend, recorded.backend} <= allowed:
            warning = (
                f"the collection's vectors were made by backend {recorded.backend} and this "
                f"process embeds with {current.backend}: accepted, both pass the quality bar "
                f"against fp32 for {current.model}"
            )
        else:
            fields.append("backend")
            differences.append(
                f"backend ({recorded.backend} recorded, {current.backend} here; only "
                f"{', '.join(sorted(allowed))} are measured to agree for {current.model})"
            )
    return Compatibility(tuple(differences), tuple(fields), None if differences else warning)


def _show(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text  # a hash: its prefix is enough to tell


# ---------------------------------------------------------------------------------------------
# The weights hash


def model_fingerprint(
    model: str,
    model_dir: Path,
    *,
    backend: str,
    max_tokens: int,
    dimension: int,
    cache_dir: Path | None = None,
) -> ModelFingerprint:
    """The fingerprint of the model loaded from ``model_dir`` (see :func:`weights_sha256`)."""
    return ModelFingerprint(
        model=model,
        weights_sha256=weights_sha256(model_dir, cache_dir),
        backend=backend,
        max_tokens=max_tokens,
        dimension=dimension,
    )


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of ``model_dir`` and of the module directories its ``modules.json``
    lists, sorted; raises :class:`ConfigurationError` when there are none."""
    dirs = [model_dir]
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        modules = []
    for module in modules if isinstance(modules, list) else []:
        sub = module.get("path") if isinstance(module, dict) else None
        if isinstance(sub, str) and sub and (model_dir / sub).is_dir():
            dirs.append(model_dir / sub)
    files: list[Path] = []
    for directory in dirs:
        for suffix in WEIGHT_SUFFIXES:
            found = sorted(p for p in directory.glob(f"*{suffix}") if p.is_file())
            if found:
                files.extend(found)
                break
    if not files:
        raise ConfigurationError(
            f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) found in the model directory "
            f"{model_dir}: expected a sentence-transformers model"
        )
    return sorted(files)


def weights_sha256(model_dir: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 (hex) over the relative names and bytes of :func:`weight_files`.

    Each file's hash is computed once per process and remembered in
    ``cache_dir/weights-sha256.json`` (keyed by absolute path, size and mtime) when
    ``cache_dir`` is given; a cache that cannot be read or written only costs the reading.
    """
    cache_path = cache_dir / CACHE_FILE if cache_dir is not None else None
    stored = _read_cache(cache_path)
    changed = False
    digest = hashlib.sha256(f"newsstream-weights/{FORMAT}\n".encode())
    for path in weight_files(model_dir):
        stat = path.stat()
        key = str(path.resolve())
        entry = stored.get(key)
        if (
            isinstance(entry, dict)
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            file_hash = str(entry["sha256"])
        else:
            file_hash = _file_sha256(path, stat.st_size, stat.st_mtime_ns)
            stored[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_hash}
            changed = True
        digest.update(f"{path.relative_to(model_dir).as_posix()}\n{file_hash}\n".encode())
    if changed and cache_path is not None:
        _write_cache(cache_path, stored)
    return digest.hexdigest()


_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    key = (str(path.resolve()), size, mtime_ns)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _memo_lock:
        _memo[key] = digest.hexdigest()
    return _memo[key]


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    # Atomic replace: a process starting beside this one reads the old or the new file, whole.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{CACHE_FILE}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache directory: the next start hashes again
        log.info("weights hash cache %s not written: %s", path, exc)
