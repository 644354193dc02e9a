"""What ``embedding_backend=auto`` means on the machine it runs on.

What goes in: the settings (model, threads, model cache dir), this CPU's identity and the
runtime versions (:mod:`embedding.cpu`). What comes out: a :class:`Decision`: the concrete
backend, where the choice came from (``measured``, ``cached``, ``rule``, ``fallback`` or
``setting``) and why, in one line for the log.

How it chooses, in order:

1. Candidates are the int8 backends the shipped reference record (``embedding/choice.json``)
   shows passing the full quality check for this model (cosine and MRR@10 against fp32 on the
   shared news data) and whose packages are installed. None: ``torch`` (rule).
2. Rule: a CPU without an int8 dot-product instruction (VNNI or AMX, see :mod:`embedding.cpu`)
   gets ``torch`` without measuring: int8 there measured under the quality bar and no faster.
3. A measurement of this machine, cached next to the exported models
   (``<model cache dir>/<model>-<hash>/auto-choice/<key>.json``), keyed by the model files
   and export recipe, the CPU model and flags, the runtime versions and the thread count: any
   change of these measures again. Processes that start together serialise on a file lock, so
   one measures and the others read its record. A record measured while the machine was busy
   (load average above :data:`BUSY_LOAD_PER_CORE` per core) is used until a start finds the
   machine quieter, which measures again.
4. Otherwise measure (:func:`measure_backends`): each candidate and torch embed the 48
   :func:`embedding.probe_texts.probe_texts` in :data:`CHUNKS` interleaved chunks, taking turns,
   up to :data:`ROUNDS` times (each chunk's fastest run counts: the machine may be busy; no
   round starts after :data:`TIMING_BUDGET_S` seconds of timing); quality is
   the mean cosine to torch fp32's vectors of the same texts. Cost: loading each backend
   (exporting it on a first start) plus a few seconds.

The rule of :func:`decide`: a candidate qualifies when its mean cosine to fp32 is at least
:data:`MIN_MEAN_COSINE` and it is at least :data:`MIN_SPEEDUP` times as fast as torch; the
fastest qualifying one wins, else torch. A backend that fails to load or embed is left out
and named. Guarantees: never a backend below the bar; any failure of the measurement itself
falls back to torch fp32 and says why; the cached figures are decided again on every read, so a
record can never smuggle in a backend that fails the bar.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.settings import Settings
from embedding.cpu import CpuIdentity, cpu_identity, library_versions
from embedding.probe_texts import probe_texts

if TYPE_CHECKING:
    from embedding.embedder import Embedder

log = logging.getLogger(__name__)

#: The quality bar: mean cosine to torch fp32 on the probe texts.
MIN_MEAN_COSINE = 0.99
#: An int8 backend must beat fp32 by this factor to be worth its (small) loss of precision.
MIN_SPEEDUP = 1.10
#: Timing rounds per backend (interleaved; the fastest run of each chunk counts).
ROUNDS = 3
#: The probe texts are timed in this many interleaved chunks (each mixes short and long texts).
CHUNKS = 3
#: A measurement taken at a load average above this many runnable tasks per core is cached as
#: busy: used, but measured again by the first start that finds the machine below that load.
BUSY_LOAD_PER_CORE = 2.0
#: No further timing round starts after this many seconds of timing (at least one is done).
TIMING_BUDGET_S = 20.0
#: Version of the cached record's form (part of the key).
FORMAT = 1
#: The directory, inside a model's cache directory, that holds the measured choices.
CHOICE_DIR = "auto-choice"
#: The Python modules each backend needs.
BACKEND_MODULES = {
    "torch": ("torch",),
    "onnx-int8": ("onnxruntime", "onnx"),
    "openvino-int8": ("openvino", "nncf", "onnx"),
}

Loader = Callable[[Settings], "Embedder"]


@dataclass(frozen=True)
class Measurement:
    """One backend measured here: texts/s on the probe texts, mean and lowest cosine to fp32,
    or the error that kept it from being measured."""

    backend: str
    texts_per_s: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Measurement:
        """Read :func:`dataclasses.asdict`'s form; raises :class:`ValueError` when malformed."""
        try:
            return cls(
                backend=str(data["backend"]),
                texts_per_s=_number(data.get("texts_per_s")),
                mean_cosine=_number(data.get("mean_cosine")),
                min_cosine=_number(data.get("min_cosine")),
                error=None if data.get("error") is None else str(data["error"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"unreadable measurement {data!r}") from exc


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class Decision:
    """The concrete backend, where the choice came from, and why (one line)."""

    backend: str
    source: str
    reason: str

    def line(self) -> str:
        """``embedding backend <name> (<source>): <reason>``, the line a start logs."""
        return f"embedding backend {self.backend} ({self.source}): {self.reason}"


def is_busy(load_avg: float, cores: int) -> bool:
    """True when a load average means timings here are not this CPU's own (see
    :data:`BUSY_LOAD_PER_CORE`). Pure."""
    return load_avg > BUSY_LOAD_PER_CORE * cores


def choice_key(
    model_cache: str, cpu: CpuIdentity, versions: Mapping[str, str], threads: int
) -> str:
    """The cache key of a measurement: 16 hex digits over the model's cache directory name
    (model files and export recipe), the CPU's model and flags, the runtime versions and the
    thread count. Pure."""
    facts = {
        "format": FORMAT,
        "model_cache": model_cache,
        "cpu": cpu.model,
        "flags": sorted(cpu.flags),
        "versions": dict(sorted(versions.items())),
        "threads": threads,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def cpu_rule(cpu: CpuIdentity) -> str | None:
    """Why int8 backends are not even measured on ``cpu``, or None when they are. Pure."""
    if cpu.has_int8_dot:
        return None
    return (
        f"CPU {cpu.describe()} has no VNNI/AMX int8 dot product; int8 measured under the "
        f"{MIN_MEAN_COSINE} cosine bar and no faster on such a CPU (AMD EPYC, AVX2: OpenVINO "
        "int8 cosine 0.9897, 1.03x torch), so torch fp32 without measuring"
    )


def decide(
    measured: Mapping[str, Measurement],
    *,
    min_mean_cosine: float = MIN_MEAN_COSINE,
    min_speedup: float = MIN_SPEEDUP,
) -> tuple[str, str]:
    """``(backend, figures)`` from measurements that include torch (see the module docstring).

    Pure. ``figures`` says each backend's speed ratio and cosine and why it lost; when torch
    itself could not be measured, the answer is torch with the error.
    """
    torch = measured.get("torch")
    if torch is None or torch.error or not torch.texts_per_s:
        why = torch.error if torch is not None and torch.error else "torch not measured"
        return "torch", f"measurement could not run ({why}): torch fp32"
    best, best_ratio, notes = "torch", 1.0, []
    for name, m in measured.items():
        if name == "torch":
            continue
        if m.error or m.texts_per_s is None or m.mean_cosine is None:
            notes.append(f"{name} failed ({m.error or 'no figures'})")
            continue
        ratio = m.texts_per_s / torch.texts_per_s
        note = f"{name} {ratio:.2f}x torch, cosine {m.mean_cosine:.4f}"
        if m.mean_cosine < min_mean_cosine:
            note += f" (under the {min_mean_cosine} bar)"
        elif ratio < min_speedup:
            note += f" (not {min_speedup:.2f}x faster)"
        elif ratio > best_ratio:
            best, best_ratio = name, ratio
        notes.append(note)
    return best, f"{'; '.join(notes) or 'no int8 backend measured'}"


def measure_backends(
    settings: Settings,
    backends: Sequence[str],
    *,
    load: Loader,
    texts: Sequence[str] | None = None,
    rounds: int = ROUNDS,
) -> dict[str, Measurement]:
    """Measure torch and ``backends`` on ``texts`` (default the probe texts) here.

    ``load`` builds an embedder from settings whose ``embedding_backend`` is set per backend
    (the tests hand in one that reuses loaded models). A backend that raises while loading or
    embedding gets a measurement with its error; nothing raises.
    """
    texts = list(texts or probe_texts())
    names = ["torch", *[b for b in backends if b != "torch"]]
    errors: dict[str, str] = {}
    embedders: dict[str, Embedder] = {}
    for name in names:
        try:
            embedder = load(settings.model_copy(update={"embedding_backend": name}))
            embedder.embed(texts[:4])  # warm-up: first-call allocations and graph compilation
            embedders[name] = embedder
        except Exception as exc:  # an export or a runtime may fail in many ways; all mean "no"
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("embedding backend %s could not be measured: %s", name, errors[name])
    # Short interleaved runs, each backend's fastest of ``rounds`` per chunk summed: on a
    # shared machine a burst of other work then slows one chunk of one backend, not its figure.
    chunks = [texts[i::CHUNKS] for i in range(CHUNKS)]
    best: dict[str, list[float]] = {name: [float("inf")] * CHUNKS for name in embedders}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    started = time.perf_counter()
    for repeat in range(rounds):
        if repeat and time.perf_counter() - started > TIMING_BUDGET_S:
            break  # a busy machine: the rounds done so far decide (first-start cost bound)
        for index, chunk in enumerate(chunks):
            order = list(embedders)
            shift = (repeat + index) % len(order)  # no backend always runs first
            for name in order[shift:] + order[:shift]:
                if name in errors:
                    continue
                try:
                    start = time.perf_counter()
                    rows = embedders[name].embed(chunk)
                    elapsed = time.perf_counter() - start
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                best[name][index] = min(best[name][index], elapsed)
                if repeat == 0:
                    parts[name].append(rows)
    vectors: dict[str, np.ndarray] = {}
    for name, done in parts.items():
        if name in errors or len(done) != CHUNKS:
            continue
        vectors[name] = np.empty((len(texts), done[0].shape[1]), dtype=np.float32)
        for index, chunk_rows in enumerate(done):
            vectors[name][index::CHUNKS] = chunk_rows  # back in the order of ``texts``
    reference = vectors.get("torch")
    result: dict[str, Measurement] = {}
    for name in names:
        if name in errors or name not in vectors:
            result[name] = Measurement(name, error=errors.get(name, "not measured"))
            continue
        cos = np.sum(vectors[name] * reference, axis=1) if reference is not None else np.zeros(1)
        result[name] = Measurement(
            name,
            texts_per_s=round(len(texts) / sum(best[name]), 1),
            mean_cosine=round(float(np.mean(cos)), 5),
            min_cosine=round(float(np.min(cos)), 5),
        )
    return result


def resolve_auto(
    settings: Settings,
    *,
    cpu: CpuIdentity | None = None,
    versions: Mapping[str, str] | None = None,
    load: Loader | None = None,
    adjust: Callable[[Measurement], Measurement] | None = None,
    cache_dir: Path | None = None,
    loadavg: Callable[[], float] | None = None,
    texts: Sequence[str] | None = None,
) -> Decision:
    """The :class:`Decision` for ``embedding_backend=auto`` here (see the module docstring).

    Seams for tests (defaults are this machine): ``cpu`` and ``versions`` (the cache key),
    ``load`` (how a backend's embedder is built), ``adjust`` (applied to each fresh measurement
    before it is decided and cached, e.g. a quality figure measured on another CPU),
    ``cache_dir`` (where records go; default next to the model's exports), ``loadavg`` (the
    1-minute load average, default :func:`os.getloadavg`'s), ``texts`` (default the probe
    texts).
    """
    from embedding.embedder import recorded_ranking

    model = settings.embedding_model
    missing = [
        b
        for b in recorded_ranking(model)
        if b != "torch" and not all(importlib.util.find_spec(m) for m in BACKEND_MODULES[b])
    ]
    candidates = [b for b in recorded_ranking(model) if b != "torch" and b not in missing]
    if not candidates:
        why = f" ({', '.join(missing)} not installed)" if missing else ""
        return Decision(
            "torch", "rule", f"no int8 backend passed the reference check for {model}{why}"
        )
    cpu = cpu or cpu_identity()
    rule = cpu_rule(cpu)
    if rule is not None:
        return Decision("torch", "rule", rule)
    try:
        return _measured_choice(
            settings,
            candidates,
            cpu=cpu,
            versions=versions or library_versions(),
            load=load,
            adjust=adjust,
            cache_dir=cache_dir,
            loadavg=loadavg or (lambda: os.getloadavg()[0]),
            texts=texts,
        )
    except Exception as exc:  # the choice must never keep a service from starting
        log.warning("embedding backend measurement failed", exc_info=True)
        return Decision(
            "torch", "fallback", f"measurement could not run ({type(exc).__name__}: {exc})"
        )


def _measured_choice(
    settings: Settings,
    candidates: Sequence[str],
    *,
    cpu: CpuIdentity,
    versions: Mapping[str, str],
    load: Loader | None,
    adjust: Callable[[Measurement], Measurement] | None,
    cache_dir: Path | None,
    loadavg: Callable[[], float],
    texts: Sequence[str] | None,
) -> Decision:
    from embedding.embedder import Embedder, local_model_dir, resolve_model_path
    from embedding.onnx_export import model_cache_root

    threads = settings.embedding_threads or (os.cpu_count() or 1)
    root = model_cache_root(
        settings.model_cache_dir,
        settings.embedding_model,
        local_model_dir(resolve_model_path(settings.embedding_model)),
    )
    key = choice_key(root.name, cpu, versions, threads)
    path = (cache_dir or root / CHOICE_DIR) / f"{key}.json"
    with _exclusive_lock(path.with_name(f".{path.name}.lock")):
        cores = os.cpu_count() or 1
        record = read_record(path, key, quiet_now=not is_busy(loadavg(), cores))
        if record is not None:
            measured = {m.backend: m for m in record[1] if m.backend in {"torch", *candidates}}
            backend, figures = decide(measured)
            return Decision(backend, "cached", f"measured here on {record[0]}: {figures}")
        log.info("measuring embedding backends on this machine (first start; %s)", cpu.describe())
        start = time.perf_counter()
        load_before = loadavg()
        measured = measure_backends(settings, candidates, load=load or Embedder, texts=texts)
        if adjust is not None:
            measured = {name: adjust(m) for name, m in measured.items()}
        seconds = time.perf_counter() - start
        load_avg = round(max(load_before, loadavg()), 1)
        backend, figures = decide(measured)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _write_record(
            path,
            {
                "format": FORMAT,
                "key": key,
                "model": settings.embedding_model,
                "model_cache": root.name,
                "cpu": {"model": cpu.model, "flags": list(cpu.flags)},
                "versions": dict(versions),
                "threads": threads,
                "measured_at": when,
                "seconds": round(seconds, 1),
                "load_avg_1m": load_avg,
                "busy": is_busy(load_avg, cores),
                "texts": len(texts or probe_texts()),
                "rounds": ROUNDS,
                "min_mean_cosine": MIN_MEAN_COSINE,
                "min_speedup": MIN_SPEEDUP,
                "backends": {name: asdict(m) for name, m in measured.items()},
                "choice": backend,
            },
        )
    return Decision(
        backend,
        "measured",
        f"measured here in {seconds:.0f} s (load average {load_avg}): {figures}",
    )


def read_record(
    path: Path, key: str, *, quiet_now: bool = False
) -> tuple[str, list[Measurement]] | None:
    """``(measured_at, measurements)`` of the record at ``path`` when it is for ``key``, else
    None (absent, unreadable, another form or key: the caller measures again). With
    ``quiet_now``, a record measured on a busy machine is None too (measured again)."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        if quiet_now and data.get("busy") is True:
            return None
        return str(data["measured_at"]), [
            Measurement.from_json(m) for m in data["backends"].values()
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    # Atomic replace: a reader sees the old record or the new one, whole.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache: the next start measures again
        log.warning("embedding backend choice not cached at %s: %s", path, exc)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:  # read-only cache: measure without the lock (and without caching)
        log.warning("no lock for the embedding backend choice at %s: %s", path, exc)
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def choice_line(settings: Settings, env: Mapping[str, str], timeout_s: float = 900) -> str:
    """The one line a supervisor prints about the backend, resolved before its services start.

    An ``auto`` choice is resolved in a child process with ``env`` (this module's ``main``), so
    that the supervisor never loads a model runtime; the services then read the cached record.
    A child that fails or times out leaves the choice to each service, and the line says so.
    """
    if settings.embedding_backend != "auto":
        return Decision(
            settings.embedding_backend, "setting", "set by NEWSSTREAM_EMBEDDING_BACKEND"
        ).line()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "embedding.backend_choice"],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"embedding backend: not resolved ahead ({exc}); each service resolves it at start"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"embedding backend: not resolved ahead ({tail}); each service resolves it at start"
    return lines[-1]


def main() -> None:
    """Print this machine's :class:`Decision` line for the settings in the environment."""
    from core.settings import load_settings

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    decision = resolve_auto(settings) if settings.embedding_backend == "auto" else None
    print(decision.line() if decision else f"embedding backend {settings.embedding_backend}")


if __name__ == "__main__":
    main()
