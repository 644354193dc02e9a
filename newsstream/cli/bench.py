"""`newsstream bench ...`: benchmark scenarios; each prints a table and writes JSON.

Speed and memory targets are checked here, never by timed assertions in the tests. Results go
to ``bench-results/<scenario>.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from newsstream.cli.common import console, settings_or_exit

bench_app = typer.Typer(
    help="Benchmarks: print figures and ratios, write JSON.", no_args_is_help=True
)
RESULTS = Path("bench-results")
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _write(name: str, out: Path | None, result: dict[str, Any]) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"[dim]written: {path}[/dim]")
    return path


@bench_app.command("embed")
def bench_embed(
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per backend (median counts).")] = 3,
    quality: Annotated[bool, typer.Option(help="Also measure cosine to fp32 and MRR@10.")] = True,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Write the reference record here (needs --quality), e.g. "
            "embedding/choice.json: the backends that pass become the candidates `auto` "
            "measures on each machine."
        ),
    ] = None,
) -> None:
    """Texts/s per embedding backend at short and full-length texts, with ratios to fp32."""
    from newsstream.bench.embed import run_embed_bench

    if record is not None and not quality:
        raise typer.BadParameter("--record needs the quality check (drop --no-quality)")
    path = out or RESULTS / "embed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run_embed_bench(
        settings_or_exit(),
        path,
        rounds=rounds,
        quality=quality,
        data_dir=data,
        console=console,
        choice_path=record,
    )


@bench_app.command("embed-choice")
def bench_embed_choice(
    fresh_exports: Annotated[
        bool, typer.Option(help="Export the int8 models afresh (a first start's whole cost).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """What `auto` picks on this machine, with the figures and the seconds a first start takes."""
    from newsstream.bench.embed_choice import run_embed_choice_bench

    path = out or RESULTS / "embed-choice.json"
    run_embed_choice_bench(settings_or_exit(), path, fresh_exports=fresh_exports, console=console)


@bench_app.command("embed-memory")
def bench_embed_memory(
    backend: Annotated[
        list[str] | None, typer.Option(help="Backends to measure (repeat); default all three.")
    ] = None,
    passes: Annotated[int, typer.Option(min=1, help="Passes over the same texts.")] = 3,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """RSS of a process per pass over 1,800 texts of varied length, per embedding backend."""
    from embedding.embedder import BACKENDS
    from newsstream.bench.embed_memory import run_embed_memory_bench

    settings_or_exit()  # invalid settings fail here with the usual message, not in a child
    path = out or RESULTS / "embed-memory.json"
    run_embed_memory_bench(
        path, backends=backend or list(BACKENDS), passes=passes, data_dir=data, console=console
    )


@bench_app.command("ledger")
def bench_ledger(
    records: Annotated[int, typer.Option(min=100, help="Records in the partition looked up.")] = (
        100_000
    ),
    batch: Annotated[int, typer.Option(min=1, help="Records per acknowledged write.")] = 64,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Ledger cost: an acknowledged write per batch, bytes per record, and the look-up of one
    id in a partition of RECORDS records (a local broker of its own)."""
    from newsstream.bench.ledger import run_ledger_bench

    result = run_ledger_bench(records, batch)
    for name, value in result.items():
        console.print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    _write("ledger", out, result)


@bench_app.command("dedup")
def bench_dedup(
    n: Annotated[int, typer.Option(min=100, help="Articles to index.")] = 100_000,
    redis_url: Annotated[str | None, typer.Option(help="Also measure the Redis backend.")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Dedup cost per article and index memory per article, for both backends."""
    from newsstream.bench.dedup import print_dedup_bench, run_dedup_bench

    result = run_dedup_bench(n, redis_url)
    print_dedup_bench(result, console)
    _write("dedup", out, result)


@bench_app.command("producer")
def bench_producer(
    feeds: Annotated[int, typer.Option(min=1, help="Feed URLs to serve and poll.")] = 1000,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """A full poll cycle where every feed answers 304, and one where every feed changed."""
    from newsstream.bench.producer import run_producer_bench

    result = run_producer_bench(feeds, console=console)
    _write("producer", out, result)


@bench_app.command("producers")
def bench_producers(
    feeds: Annotated[int, typer.Option(min=1, help="Feed URLs to serve and poll.")] = 1000,
    producers: Annotated[
        list[int] | None, typer.Option(min=1, help="Producer counts to run (repeat).")
    ] = None,
    light: Annotated[bool, typer.Option(help="One-item feed documents.")] = False,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Feeds sharded over producer processes: all-changed and all-304 cycles, and failover."""
    from newsstream.bench.producers import run_producers_bench

    counts = tuple(producers or (1, 2))
    result = run_producers_bench(feeds, counts, light=light, console=console)
    _write("producers", out, result)


@bench_app.command("search")
def bench_search(
    n: Annotated[int, typer.Option(min=100, help="Articles in the collection.")] = 100_000,
    seconds: Annotated[float, typer.Option(help="Seconds per client setting.")] = 20.0,
    mode: Annotated[str, typer.Option(help="semantic, keyword or hybrid.")] = "semantic",
    milvus_uri: Annotated[
        str | None, typer.Option(help="Use this Milvus instead of a fresh Lite.")
    ] = None,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Search latency (p50/p95/p99) and QPS with 1 and 4 clients, recall@10 vs exact."""
    from newsstream.bench.search import run_search_bench

    result = run_search_bench(
        n, data, seconds=seconds, milvus_uri=milvus_uri, mode=mode, console=console
    )
    _write(f"search-{n}", out, result)


@bench_app.command("stack")
def bench_stack(
    n: Annotated[int, typer.Option(min=100, help="Articles in the store (all in the window).")] = (
        100_000
    ),
    seconds: Annotated[float, typer.Option(help="Seconds of search load per mode.")] = 20.0,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Memory of the whole `newsstream up` stack (per service and in all) holding N articles."""
    from newsstream.bench.stack import run_stack_bench, stack_table

    result = run_stack_bench(n, data, seconds=seconds, console=console)
    console.print(stack_table(result))
    console.print(
        f"start: dedup index rebuilt from {result['dedup_rebuilt']:,} articles after "
        f"{result['rebuild_done_s']:.0f} s, API answering after {result['api_ready_s']:.0f} s; "
        f"peak RSS of the tree {result['peak_rss'] / 2**30:.2f} GiB; search p50 hybrid "
        f"{result['search_hybrid']['p50_ms']:.1f} ms, semantic "
        f"{result['search_semantic']['p50_ms']:.1f} ms; SIGTERM to every process gone "
        f"{result['stop_s']:.1f} s (exit code {result['stop_exit_code']}, "
        f"{len(result['stop_left'])} left)"
    )
    _write(f"stack-{n}", out, result)


@bench_app.command("stores")
def bench_stores(
    rows: Annotated[int, typer.Option(min=100, help="Rows per store.")] = 100_000,
    stores: Annotated[
        str, typer.Option(help="Comma-separated: lite-3.2, lite-2.5, milvus-2.3, or all.")
    ] = "all",
    queries: Annotated[int, typer.Option(min=1, help="Distinct query vectors.")] = 200,
    seconds: Annotated[float, typer.Option(help="Time limit per client setting.")] = 20.0,
    max_fill_minutes: Annotated[
        float, typer.Option(help="Skip a store whose fill would take longer.")
    ] = 20.0,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """The local Milvus stores side by side: upserts/s, p50/p99, QPS, recall@10, RSS, features."""
    from newsstream.bench.stores import run_store_bench
    from newsstream.stack.local_stores import parse_stores

    try:
        keys = parse_stores(stores)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stores") from None
    result = run_store_bench(
        rows,
        keys,
        data,
        queries=queries,
        seconds=seconds,
        max_fill_s=max_fill_minutes * 60,
        console=console,
    )
    _write(f"stores-{rows}", out, result)


@bench_app.command("ingest")
def bench_ingest(
    rate: Annotated[
        float, typer.Option(help="Offered load of the time-to-searchable run (/s).")
    ] = 20.0,
    seconds: Annotated[float, typer.Option(help="Duration of the time-to-searchable run.")] = 30.0,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """End-to-end articles/s (shared feeds, bbc backfill) and time-to-searchable percentiles."""
    from newsstream.bench.ingest import run_ingest_bench

    result = run_ingest_bench(
        data, settings=settings_or_exit(), rate=rate, tts_seconds=seconds, console=console
    )
    _write("ingest", out, result)


@bench_app.command("workers")
def bench_workers(
    counts: Annotated[
        str, typer.Option(help="Worker counts to run, comma-separated (e.g. 1,2,3).")
    ] = "1,2,3",
    articles: Annotated[
        int, typer.Option(min=1, help="bbc-news articles (full texts) per run.")
    ] = 2000,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Articles/s with 1, 2, 3 ... worker processes in one consumer group."""
    from newsstream.bench.workers import run_workers_bench

    try:
        wanted = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected counts such as 1,2,3; found {counts!r}") from None
    if not wanted or min(wanted) < 1:
        raise typer.BadParameter(f"expected counts of at least 1; found {counts!r}")
    result = run_workers_bench(
        data, wanted, settings=settings_or_exit(), limit=articles, console=console
    )
    _write("workers", out, result)


@bench_app.command("retention")
def bench_retention(
    days: Annotated[int, typer.Option(min=2, help="Simulated days of publish dates.")] = 60,
    per_day: Annotated[int, typer.Option(min=1, help="Articles a simulated day.")] = 30,
    retention_days: Annotated[int, typer.Option(min=1, help="The retention window.")] = 14,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
    chart: Annotated[
        Path | None, typer.Option(help="SVG chart path (default: beside the JSON).")
    ] = None,
) -> None:
    """Soak in compressed time: rows in Milvus and worker memory per simulated day."""
    from newsstream.bench.retention import run_retention_soak, soak_chart

    result = run_retention_soak(
        settings_or_exit(),
        data,
        days=days,
        per_day=per_day,
        retention_days=retention_days,
        console=console,
    )
    path = _write("retention", out, result)
    svg = chart or path.with_suffix(".svg")
    svg.write_text(soak_chart(result), encoding="utf-8")
    console.print(f"[dim]chart: {svg}[/dim]")


@bench_app.command("delete")
def bench_delete(
    n: Annotated[int, typer.Option(min=1, help="Articles to index, then delete one by one.")] = 60,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Delete-to-invisible p50/p95 through the whole stack (broker, worker, Milvus, API)."""
    from newsstream.bench.delete import delete_table, run_delete_bench

    result = run_delete_bench(n, data, settings=settings_or_exit(), console=console)
    console.print(delete_table(result))
    _write("delete", out, result)


@bench_app.command("reindex")
def bench_reindex(
    rows: Annotated[int, typer.Option(min=100, help="Rows to fill, then reindex.")] = 20_000,
    store: Annotated[str, typer.Option(help="Local store: milvus-2.3 or lite-3.2.")] = "milvus-2.3",
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    out: Annotated[Path | None, typer.Option(help="JSON output path.")] = None,
) -> None:
    """Reindex time and rate, cold and with a warm embedding cache, and search p99 during the
    swap against before it (failed and empty searches counted)."""
    from newsstream.bench.reindex import run_reindex_bench

    result = run_reindex_bench(
        rows, data, settings=settings_or_exit(), store=store, console=console
    )
    console.print_json(json.dumps(result))
    _write("reindex", out, result)


@bench_app.command("all")
def bench_all() -> None:
    """Every scenario with its defaults, one after the other."""
    bench_embed(out=None, rounds=3, quality=True, data=SHARED)
    bench_ingest(rate=20.0, seconds=30.0, data=SHARED, out=None)
    bench_dedup(n=100_000, redis_url=None, out=None)
    bench_producer(feeds=1000, out=None)
    bench_search(n=100_000, seconds=20.0, mode="semantic", milvus_uri=None, data=SHARED, out=None)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
