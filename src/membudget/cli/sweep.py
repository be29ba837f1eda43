"""`membudget sweep` and `membudget eval`: run scenarios into the results store, then score them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import app, duration, err_console, gib, out, plural, short_name, split_ints
from .progress import SweepProgress


def gpu_memory_bytes(config, gpu_memory: str | None) -> int | None:
    """The memory generations are sized for: --gpu-memory, else the free memory of the GPU the sweep
    runs on (before anything loads), else None (a CPU run: no sizing)."""
    from ..memory import parse_size
    from ..sweep.config import on_gpu

    if gpu_memory is not None:
        return parse_size(gpu_memory)
    if on_gpu(config.device):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.mem_get_info()[0]
    return None


def _run(
    config,
    problems,
    db: Path,
    ray: bool,
    ray_address: str | None,
    dry_run: bool,
    gpu_memory: str | None = None,
    rehearse: bool = False,
) -> None:
    from ..sweep.runner import (
        plan,
        planned_tokens,
        record_plan,
        resolve_device,
        run_local,
        scenario_scores,
        size_generations,
    )
    from ..sweep.store import Store

    # refuses device = "cuda" without a GPU before anything is written
    device = resolve_device(config) if not dry_run or rehearse else None
    memory = gpu_memory_bytes(config, gpu_memory)
    sizes = size_generations(config, problems, memory)  # refuses what cannot fit before the store opens
    store = Store.readonly(db) if dry_run else Store(db)  # a dry run creates and changes nothing
    try:
        groups = plan(config, problems, store, sizes)
        todo = sum(len(g.units) for g in groups)
        total = (
            sum(len(p) for p in problems.values()) * len(config.models) * len(config.weights) * len(config.kv)
        )
        if dry_run:
            _print_estimates(config, problems, groups, memory, device if rehearse else None)
            if memory is not None:
                _print_batches(groups, memory)
            count = len(config.scenarios()) * len(config.tasks)
            out.print(
                f"{plural(count, 'scenario')}; {plural(total, 'generation')} of {config.max_samples} samples up "
                f"to {config.budgets[-1]:,} tokens, {todo} still to run in {plural(len(groups), 'model load')}; "
                f"results in {db}"
            )
            return
        record_plan(config, store)
        if not todo:
            written = 0
            err_console.print(
                f"{config.name}: all {plural(total, 'problem')} already in {db}", highlight=False
            )
        else:
            with SweepProgress(
                config.name, total, total - todo, planned_tokens(config, problems, groups)
            ) as progress:
                on_problem = progress.problem
                if ray:
                    from ..sweep.ray import run_ray

                    written = run_ray(config, groups, store, ray_address, on_problem)
                else:
                    written = run_local(config, groups, store, on_problem, progress.step)
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
                short_name(s.model),
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


def _print_estimates(config, problems, groups, memory: int | None, rehearse: tuple[str, str] | None) -> None:
    """Per (model, weights, KV, task) group: its generations, and its time by the step model (a GPU
    sweep) and, given `rehearse` = (device, dtype), by a rehearsal on random weights there."""
    from ..spec import resolve_spec
    from ..sweep import estimate
    from ..sweep.config import on_gpu
    from ..sweep.runner import group_plans

    modelled = memory is not None or on_gpu(config.device)
    if not modelled and not rehearse:
        out.print("runs on the CPU: no time estimate (the step model is a GPU's; --rehearse times this CPU)")
        return
    device, dtype = rehearse or (config.device, config.dtype)
    title = "Time of the decode steps" + (f" (rehearsed on {_device_name(device)})" if rehearse else "")
    table = Table(title=title)
    cols = ["model", "weights", "KV", "task", "generations", "rows", "steps each"]
    cols += [f"on {estimate.DEVICE} (model)"] if modelled else []
    cols += ["ms/step rehearsed", "rehearsed", "peak / accounted GiB"] if rehearse else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "KV", "task") else "right")
    totals = [0.0, 0.0]
    for plan in group_plans(config, problems, groups):
        spec = resolve_spec(plan.model)
        cells = [short_name(plan.model), str(plan.weights), plan.kv, plan.task, f"{plan.generations:,}",
                 f"{plan.rows:,}", f"{plan.steps:,}"]  # fmt: skip
        if modelled:
            seconds = estimate.estimate_seconds(spec, plan)
            totals[0] += seconds
            cells.append(duration(seconds))
        if rehearse:
            err_console.print(f"rehearsing {plan.model} {plan.weights}-bit {plan.kv}, {plan.rows} rows ...")
            r = estimate.rehearse(spec, plan, device, dtype)
            totals[1] += r.estimate_seconds
            peak = f"{gib(r.peak_bytes)} / {gib(r.accounted_bytes)}" if r.peak_bytes else "- (CPU)"
            cells += [f"{r.seconds_per_step * 1e3:,.2f}", duration(r.estimate_seconds), peak]
        table.add_row(*cells)
    out.print(table)
    if modelled:
        out.print(f"about {duration(totals[0])} of decode steps on {estimate.DEVICE} (the engine's step "
                  "model, calibrated there; prefill not counted)")  # fmt: skip
    if rehearse:
        out.print(f"about {duration(totals[1])} on this {_device_name(device)} (rehearsed)")


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def _print_batches(groups, memory: int) -> None:
    table = Table(title=f"Generations sized for {memory / 2**30:,.2f} GiB of GPU memory (less a 5 % margin)")
    for col in ("model", "weights", "KV", "task", "problems/generation", "rows", "sample passes", "GiB each"):
        table.add_column(col, justify="left" if col in ("model", "KV", "task") else "right")
    for group in groups:
        for kv, task, b in group.batches:
            table.add_row(short_name(group.model), str(group.weights), kv, task, str(b.problems), str(b.rows),
                          str(b.passes), gib(b.bytes))  # fmt: skip
    out.print(table)


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (TOML); see examples/")],
    db: Annotated[Path, typer.Option(help="SQLite results store (created or resumed)")] = Path("results.db"),
    ray: Annotated[bool, typer.Option("--ray", help="Run each (model, weights) group as a Ray task")] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: start a local one)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Validate, print the plan and its time estimate; run nothing")
    ] = False,
    parquet: Annotated[
        Path | None, typer.Option(help="Also export all sample rows to this Parquet file")
    ] = None,
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            help="Size generations for this much GPU memory (e.g. 80GiB; default: the GPU's free memory)"
        ),
    ] = None,
    rehearse: Annotated[
        bool,
        typer.Option(
            help="A dry run that also times a few hundred decode steps of each group's shapes on random "
            "weights on the sweep's device, and its peak memory (nothing is downloaded or written)"
        ),
    ] = False,
) -> None:
    """Run a sweep file: every scenario, sharing generations across budgets and sample counts.

    Example: membudget sweep examples/smollm2-arithmetic.toml --db demo.db   (--dry-run: the plan only)
    """
    from ..sweep.config import load_sweep

    config, problems = load_sweep(file)
    dry_run = dry_run or rehearse
    _run(config, problems, db, ray or ray_address is not None, ray_address, dry_run, gpu_memory, rehearse)
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
    weights: Annotated[int, typer.Option(help="Weight bits: 16, 8 or 4")] = 16,
    kv: Annotated[
        str, typer.Option(help="KV policy: full, quant:8, rkv:4096, rkv:4096+quant:8, ...")
    ] = "full",
    budgets: Annotated[
        str,
        typer.Option("--tokens", "--budgets", help="Token budgets T, e.g. 2000,6000 (--budgets: an alias)"),
    ] = "2000",
    samples: Annotated[int, typer.Option(help="Samples per problem G")] = 1,
    limit: Annotated[int | None, typer.Option(help="First N problems only")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first sample (rows depend only on their seeds)")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16 or float32")] = "auto",
    batch: Annotated[int, typer.Option(help="Problems generated together (more rows per step)")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (Qwen3 thinking: 0.6)")] = 0.6,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass")] = 0.95,
    top_k: Annotated[int, typer.Option(help="Top-k (0: off)")] = 20,
    min_p: Annotated[float, typer.Option(help="Min-p (0: off)")] = 0.0,
    db: Annotated[Path, typer.Option(help="SQLite results store (created or resumed)")] = Path("results.db"),
) -> None:
    """One scenario through the sweep machinery and store (a one-line sweep file).

    Example: membudget eval --model smollm2 --task arithmetic --budgets 32,96 --samples 4 --limit 6
    """
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
        "budgets": split_ints([budgets], "--tokens"),
        "samples": [samples],
        "device": device,
        "dtype": dtype,
        "batch": batch,
        "sampling": {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p},
        "tasks": [entry],
    }
    flags = {"models": "--model", "weights": "--weights", "kv": "--kv", "budgets": "--tokens",
             "samples": "--samples", "seed": "--seed", "name": "--task", "data": "--data", "limit": "--limit",
             "device": "--device", "dtype": "--dtype", "batch": "--batch", "temperature": "--temperature",
             "top_p": "--top-p", "top_k": "--top-k", "min_p": "--min-p"}  # fmt: skip
    config, problems = parse_sweep(raw, Path("membudget eval"), flags=flags)
    _run(config, problems, db, False, None, False)
