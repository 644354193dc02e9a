"""`newsstream eval search`: known-item MRR@10 / recall@10 and category precision@10 per mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from newsstream.cli.eval_group import attach, eval_app

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def eval_search(
    sample: Annotated[int, typer.Option(min=10, help="Queries per measure.")] = 500,
    data: Annotated[Path, typer.Option(help="The shared data directory.")] = SHARED,
    milvus_uri: Annotated[
        str | None, typer.Option(help="Use this Milvus instead of a fresh Lite.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Index bbc-news and measure retrieval quality of semantic, keyword and hybrid search."""
    from newsstream.evals.search import run_search_eval

    if not (data / "eval" / "bbc-news" / "manifest.csv").exists():
        raise typer.BadParameter(f"no bbc-news evaluation data under {data}")
    result = run_search_eval(data, sample=sample, milvus_uri=milvus_uri, console=Console())
    if output is not None:
        output.write_text(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``eval search`` to ``app`` through the shared ``eval`` group."""
    attach(app)
    eval_app.command("search")(eval_search)
