"""`membudget plan`: the best scenarios for a memory budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..memory import GIB, parse_size
from .common import JsonOpt, app, gib, out, scenario_cells


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
    """Best scenarios within --memory: measured accuracy where the store has it, else the study's prior.

    Example: membudget plan --memory 24GiB --task math --db results.db
    """
    from ..plan import family_models, measured_elsewhere, plan

    if db is not None and not db.is_file():
        raise ValueError(f"{db}: no such results store; run `membudget sweep` first or leave out --db")
    if top < 1:
        raise ValueError(f"--top must be at least 1, not {top}")
    budget = parse_size(memory_size)
    models = model or family_models(family)
    rows = plan(budget, task, models, db, top)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not any(r.source == "measured" for r in rows):
        why = (
            ""
            if db is None
            else f": {measured_elsewhere(db, task, models, budget) or f'{db} has none for this task and these models'}"
        )
        out.print(
            "[bold]Ranked by the study's published findings (arXiv 2510.10964), not by measurements"
            + why
            + ".[/bold] Prior points rank scenarios; they are not accuracies."
        )
    table = Table(title=f"Best scenarios within {budget / GIB:,.2f} GiB for {task}")
    for col, justify in (
        ("#", "right"),
        ("model", "left"),
        ("weights", "right"),
        ("KV", "left"),
        ("T", "right"),
        ("G", "right"),
        ("total GiB", "right"),
        ("accuracy", "right"),
        ("prior pts", "right"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    for i, r in enumerate(rows, 1):
        table.add_row(
            str(i),
            *scenario_cells(r),
            gib(r.total_bytes),
            "-" if r.accuracy is None else f"{100 * r.accuracy:.1f} %",
            "-" if r.prior is None else f"{r.prior:.1f}",
        )
    out.print(table)
    for i, r in enumerate(rows, 1):
        out.print(f"{i}. {r.reason}", highlight=False)
