"""`membudget plan`: the best scenarios for a memory budget, from measurements or the study's prior.

Candidates are the feasible scenarios of the models (fit.py's grid, plus every measured scenario that
fits). A candidate measured in the store is ranked by its measured accuracy; one whose budget lies
between two measured budgets of the same (model, weights, KV, G) by linear interpolation (marked as
such); anything else by the study prior (prior.py), and measured candidates always rank first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

from .fit import Grid, fit
from .memory import GIB, Scenario, breakdown
from .prior import THRESHOLD_GIB, prior_score
from .spec import known_models, resolve_spec
from .tasks import TASKS

KINDS = ("math", "knowledge")


@dataclass(frozen=True, slots=True)
class PlanRow:
    model: str
    weights: int
    kv: str
    tokens: int
    samples: int
    total_bytes: int
    weights_bytes: int
    kv_bytes: int
    workspace_bytes: int
    accuracy: float | None  # measured (or interpolated) accuracy in [0, 1]; None for a prior row
    prior: float | None  # the study prior's points (a ranking, not an accuracy); None when measured
    source: str  # "measured" or "study-prior"
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def task_kind(task: str) -> str:
    """math / knowledge, from a kind or a task name (aime25 -> math, gpqa_diamond -> knowledge)."""
    if task in KINDS:
        return task
    if task in TASKS:
        return TASKS[task].kind
    raise ValueError(f"unknown task {task!r}; use math, knowledge or one of {', '.join(TASKS)}")


def family_models(family: str) -> list[str]:
    models = [m for m in known_models() if family.lower() in m.lower()]
    if not models:
        raise ValueError(f"no registry model matches family {family!r}")
    return models


def plan(
    memory_bytes: int,
    task: str,
    models: list[str],
    db: str | Path | None = None,
    top: int = 5,
    grid: Grid | None = None,
) -> list[PlanRow]:
    """The `top` best feasible scenarios (never over `memory_bytes`), best first."""
    kind = task_kind(task)
    specs = {m: resolve_spec(m) for m in models}
    given = {spec.name: m for m, spec in specs.items()}  # `smollm2` -> the registry's full name and back
    grid = grid or Grid()
    candidates = {
        (given.get(b.model, b.model), b.weights, b.kv, b.tokens, b.samples): b
        for b in fit(list(specs.values()), memory_bytes, grid)
    }
    measured = _measurements(db, kind, set(specs)) if db is not None else {}
    for model, weights, kv, tokens, samples in measured:
        b = breakdown(specs[model], Scenario(model, weights, kv, tokens, samples))
        if b.total_bytes <= memory_bytes:
            candidates[(model, weights, kv, tokens, samples)] = b
    rows = []
    for key, b in candidates.items():
        model, weights, kv, tokens, samples = key
        b = dataclasses.replace(b, model=model)  # the name the user gave
        hit = measured.get(key) or _interpolate(measured, key)
        if hit is not None:
            accuracy, note = hit
            reason = f"{note}; uses {b.total_bytes / GIB:.2f} of {memory_bytes / GIB:.2f} GiB"
            rows.append(_row(b, accuracy, None, "measured", reason))
        else:
            s = prior_score(specs[model], weights, kv, tokens, samples, kind)
            effective = b.weights_bytes / GIB
            side = "above" if effective >= THRESHOLD_GIB else "below"
            reason = (
                f"study prior for {kind}: {effective:.1f} GiB of weights is {side} the 8-bit-4B "
                f"threshold ({THRESHOLD_GIB} GiB); {s:.1f} points"
            )
            rows.append(_row(b, None, s, "study-prior", reason))
    rows.sort(
        key=lambda r: (r.accuracy is None, -(r.prior if r.accuracy is None else r.accuracy), r.total_bytes)
    )
    return rows[:top]


def measured_elsewhere(db, task: str, models: list[str], memory_bytes: int) -> str | None:
    """Why a store gave no measured row: None if it has none for this task and these models, else a
    sentence on the smallest measured scenario that would have fitted a larger budget."""
    specs = {m: resolve_spec(m) for m in models}
    measured = _measurements(db, task_kind(task), set(specs))
    if not measured:
        return None
    needs = min(breakdown(specs[m], Scenario(m, w, kv, t, g)).total_bytes for (m, w, kv, t, g) in measured)
    return (
        f"{len(measured)} measured scenarios for this task, none within {memory_bytes / GIB:.2f} GiB "
        f"(the smallest needs {needs / GIB:.2f} GiB)"
    )


def _row(b, accuracy: float | None, prior: float | None, source: str, reason: str) -> PlanRow:
    return PlanRow(
        b.model,
        b.weights,
        b.kv,
        b.tokens,
        b.samples,
        b.total_bytes,
        b.weights_bytes,
        b.kv_bytes,
        b.workspace_bytes,
        accuracy,
        prior,
        source,
        reason,
    )


def _measurements(db, kind: str, models: set[str]) -> dict[tuple, tuple[float, str]]:
    from .analysis.tables import scenario_table

    table = scenario_table(db)
    table = table[(table["kind"] == kind) & table["model"].isin(models)]
    # several tasks of one kind: average them, scenario by scenario
    grouped = table.groupby(["model", "weights", "kv", "budget", "samples"], as_index=False).agg(
        accuracy=("accuracy", "mean"),
        low=("low", "mean"),
        high=("high", "mean"),
        n=("n_problems", "sum"),
        tasks=("task", lambda t: ",".join(sorted(set(t)))),
        metric=("metric", "first"),
    )
    out = {}
    for r in grouped.itertuples():
        note = (
            f"measured {r.metric} {100 * r.accuracy:.1f} % [{100 * r.low:.1f}, {100 * r.high:.1f}] on "
            f"{r.tasks} ({r.n} problems)"
        )
        out[(r.model, int(r.weights), r.kv, int(r.budget), int(r.samples))] = (float(r.accuracy), note)
    return out


def _interpolate(measured: dict, key: tuple) -> tuple[float, str] | None:
    """Linear interpolation in the budget between the nearest measured budgets around it, else None."""
    model, weights, kv, tokens, samples = key
    budgets = sorted(k[3] for k in measured if (k[0], k[1], k[2], k[4]) == (model, weights, kv, samples))
    below = [b for b in budgets if b < tokens]
    above = [b for b in budgets if b > tokens]
    if not below or not above:
        return None
    lo, hi = below[-1], above[0]
    a_lo = measured[(model, weights, kv, lo, samples)][0]
    a_hi = measured[(model, weights, kv, hi, samples)][0]
    accuracy = a_lo + (a_hi - a_lo) * (tokens - lo) / (hi - lo)
    return accuracy, f"interpolated {100 * accuracy:.1f} % between measured T={lo:,} and T={hi:,}"
