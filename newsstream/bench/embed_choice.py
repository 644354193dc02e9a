"""The ``bench embed-choice`` scenario: what ``embedding_backend=auto`` picks here, and its cost.

What goes in: settings (model, threads, model cache dir) and whether to export the int8 models
afresh. What comes out: a JSON-able dict (also written to ``out_path``) with the CPU identity,
the runtime versions, the decision line, the per-backend figures of the measurement and the
seconds it took: a first start's cost, exports included with ``fresh_exports`` (a temporary
model cache), or with the exports already cached. The measured record goes to a temporary
directory, so the choice cached for the services is never touched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from core.settings import Settings
from embedding.backend_choice import Measurement, resolve_auto
from embedding.cpu import cpu_identity, library_versions


def run_embed_choice_bench(
    settings: Settings,
    out_path: Path,
    *,
    fresh_exports: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure the ``auto`` choice once, as a first start would; see the module docstring."""
    console = console or Console()
    cpu = cpu_identity()
    measured: dict[str, dict[str, Any]] = {}

    def keep(m: Measurement) -> Measurement:  # records the figures the decision is made on
        measured[m.backend] = dataclasses.asdict(m)
        return m

    with tempfile.TemporaryDirectory(prefix="newsstream-embed-choice-") as tmp:
        run_settings = settings.model_copy(update={"embedding_backend": "auto"})
        if fresh_exports:
            run_settings = run_settings.model_copy(
                update={"embedding_cache_dir": Path(tmp) / "models"}
            )
        load_avg = os.getloadavg()[0]
        start = time.perf_counter()
        decision = resolve_auto(run_settings, cpu=cpu, adjust=keep, cache_dir=Path(tmp) / "c")
        seconds = time.perf_counter() - start
    report: dict[str, Any] = {
        "scenario": "embed-choice",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": {"model": cpu.model, "flags": list(cpu.flags)},
        "versions": library_versions(),
        "threads": settings.embedding_threads or os.cpu_count(),
        "load_avg_1m": [round(load_avg, 2), round(os.getloadavg()[0], 2)],
        "fresh_exports": fresh_exports,
        "seconds": round(seconds, 1),
        "backend": decision.backend,
        "source": decision.source,
        "line": decision.line(),
        "backends": measured,
    }
    console.print(decision.line())
    console.print(
        f"first-start cost: {seconds:.1f} s ({'exports included' if fresh_exports else 'exports cached'}; "
        f"load average {report['load_avg_1m'][0]} -> {report['load_avg_1m'][1]})"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    return report
