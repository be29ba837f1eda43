"""`membudget plan`: the best scenarios for a memory budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..memory import GIB, parse_size
from . import JsonOpt, app, gib, out, scenario_cells


@app.command("plan")
def plan_cmd(
    memory_size: Annotated[str, typer.Option("--memory", help="Budget: 24GiB, 24GB (decimal), 24G = GiB")],
    task: Annotated[str, typer.Option(help="math, knowledge, or a task name (aime25 -> math)")] = "math",
    family: Annotated[str, typer.Option(help="Registry models whose id contains this")] = "qwen3",
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Models to consider (instead of --family)")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="Results store to rank by measured accuracy")] = None,
    top: Annotated[int, typer.Option(help="How many scenarios to show")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Best scenarios within --memory: measured accuracy where the store has it, else the study's prior."""
    from ..plan import family_models, plan

    if db is not None and not db.is_file():
        raise ValueError(f"{db}: no such results store; run `membudget sweep` first or leave out --db")
    if top < 1:
        raise ValueError(f"--top must be at least 1, not {top}")
    budget = parse_size(memory_size)
    rows = plan(budget, task, model or family_models(family), db, top)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not any(r.source == "measured" for r in rows):
        out.print(
            "[bold]Ranked by the study's published findings (arXiv 2510.10964), not by measurements"
            + ("" if db is None else f": {db} has none for this task and these models")
            + ".[/bold]"
        )
    table = Table(title=f"Best scenarios within {budget / GIB:,.2f} GiB for {task}")
    for col in (
        "#",
        "model",
        "weights",
        "KV",
        "T",
        "G",
        "weights GiB",
        "KV GiB",
        "total GiB",
        "score",
        "source",
        "reason",
    ):
        table.add_column(col, justify="left" if col in ("model", "KV", "source", "reason") else "right")
    for i, r in enumerate(rows, 1):
        score = f"{100 * r.score:.1f} %" if r.source == "measured" else f"{r.score:.1f}"
        table.add_row(
            str(i),
            *scenario_cells(r),
            gib(r.weights_bytes),
            gib(r.kv_bytes),
            gib(r.total_bytes),
            score,
            r.source,
            r.reason,
        )
    out.print(table)
