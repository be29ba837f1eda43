"""`membudget sweep` and `membudget eval`: run scenarios into the results store, then score them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import app, err_console, gib, out, split_ints


def _run(config, problems, db: Path, ray: bool, ray_address: str | None, dry_run: bool) -> None:
    from ..sweep.runner import plan, record_plan, resolve_device, run_local, scenario_scores
    from ..sweep.store import Store

    if not dry_run:
        resolve_device(config)  # refuses device = "cuda" without a GPU before anything is written
    store = Store.readonly(db) if dry_run else Store(db)  # a dry run creates and changes nothing
    try:
        groups = plan(config, problems, store)
        todo = sum(len(g.units) for g in groups)
        total = (
            sum(len(p) for p in problems.values()) * len(config.models) * len(config.weights) * len(config.kv)
        )
        if dry_run:
            from ..sweep.runner import estimate_seconds

            for model in config.models:
                hours = estimate_seconds(config, problems, model) / 3600
                out.print(f"{model}: about {hours:,.1f} h on one H200 (bf16 roofline estimate)")
            out.print(
                f"{len(config.scenarios()) * len(config.tasks)} scenarios; {total} generations of "
                f"{config.max_samples} samples up to {config.budgets[-1]:,} tokens, {todo} still to run "
                f"in {len(groups)} model loads; results in {db}"
            )
            return
        record_plan(config, store)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        ) as bar:
            task = bar.add_task(f"{config.name}: problems", total=total, completed=total - todo)
            steps = bar.add_task("decode steps", total=None)  # moves between problems (batches)
            tokens = [0]

            def on_problem(rows):
                tokens[0] += sum(
                    r.thinking_tokens + r.answer_tokens for r in rows if r.budget == config.budgets[-1]
                )
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(
                    task,
                    advance=1,
                    description=f"{config.name}: {rows[0].model.split('/')[-1]} "
                    f"{rows[0].task} ({tokens[0] / elapsed:,.0f} tok/s)",
                )

            if ray:
                from ..sweep.ray import run_ray

                written = run_ray(config, groups, store, ray_address, on_problem)
            else:
                written = run_local(config, groups, store, on_problem, lambda: bar.advance(steps))
        scores = scenario_scores(config, store)
        table = Table(title=f"{config.name}: {written} new rows in {db}")
        for col in (
            "model",
            "weights",
            "KV",
            "task",
            "T",
            "G",
            "metric",
            "score %",
            "95 % CI",
            "problems",
            "memory GiB",
        ):
            table.add_column(col, justify="left" if col in ("model", "KV", "task", "metric") else "right")
        for s in scores:
            table.add_row(
                s.model.split("/")[-1],
                str(s.weights),
                s.kv,
                s.task,
                f"{s.budget:,}",
                str(s.samples),
                s.score.metric,
                f"{100 * s.score.value:.1f}",
                f"{100 * s.score.low:.1f}-{100 * s.score.high:.1f}",
                str(s.score.n_problems),
                gib(s.total_bytes),
            )
        out.print(table)
    finally:
        if store is not None:
            store.close()


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (TOML); see examples/")],
    db: Annotated[Path, typer.Option(help="SQLite results store (created or resumed)")] = Path("results.db"),
    ray: Annotated[bool, typer.Option("--ray", help="Run each (model, weights) group as a Ray task")] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: start a local one)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and print the plan; run nothing")] = False,
    parquet: Annotated[
        Path | None, typer.Option(help="Also export all sample rows to this Parquet file")
    ] = None,
) -> None:
    """Run a sweep file: every scenario, sharing generations across budgets and sample counts."""
    from ..sweep.config import load_sweep

    config, problems = load_sweep(file)
    _run(config, problems, db, ray or ray_address is not None, ray_address, dry_run)
    if parquet is not None and not dry_run:
        from ..sweep.store import Store

        store = Store(db)
        out.print(f"{store.export_parquet(parquet)} rows written to {parquet}")
        store.close()


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local dir, .gguf file, or smollm2")],
    task: Annotated[str, typer.Option(help="aime25, aime24, math500, gpqa_diamond or arithmetic")],
    data: Annotated[Path | None, typer.Option(help="Local JSONL/JSON/Parquet/CSV instead of the hub")] = None,
    weights: int = 16,
    kv: str = "full",
    budgets: Annotated[str, typer.Option(help="Token budgets, e.g. 2000,6000")] = "2000",
    samples: Annotated[int, typer.Option(help="Samples per problem G")] = 1,
    limit: Annotated[int | None, typer.Option(help="First N problems only")] = None,
    seed: int = 0,
    db: Annotated[Path, typer.Option(help="SQLite results store")] = Path("results.db"),
) -> None:
    """One scenario through the sweep machinery and store (a one-line sweep file)."""
    from ..sweep.config import parse_sweep

    entry = {"name": task}
    if data is not None:
        entry["data"] = str(data.resolve())
    if limit is not None:
        entry["limit"] = limit
    raw = {
        "name": f"eval-{task}",
        "seed": seed,
        "models": [model],
        "weights": [weights],
        "kv": [kv],
        "budgets": split_ints([budgets], "--budgets"),
        "samples": [samples],
        "tasks": [entry],
    }
    config, problems = parse_sweep(raw, Path("membudget eval"))
    _run(config, problems, db, False, None, False)
