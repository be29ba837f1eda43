"""Scenario tables from a results store: one row per measured scenario, with its score and memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from ..scoring import score
from ..tasks import get_task

COLUMNS = [
    "model",
    "weights",
    "kv",
    "task",
    "kind",
    "budget",
    "samples",
    "metric",
    "accuracy",
    "low",
    "high",
    "n_problems",
    "weights_bytes",
    "kv_bytes",
    "workspace_bytes",
    "total_bytes",
]


def scenario_table(db: str | Path) -> pd.DataFrame:
    """Every scenario of every sweep in `db` that has complete samples: pass@1 (G = 1) or Maj@G with its
    95 % bootstrap interval, and its memory breakdown. Columns: COLUMNS."""
    path = Path(db)
    if not path.is_file():
        raise FileNotFoundError(f"{db}: no such results store; run `membudget sweep` first")
    con = sqlite3.connect(path)
    scenarios = con.execute(
        "SELECT DISTINCT run_key, model, weights, kv, task, budget, samples, weights_bytes, kv_bytes, "
        "workspace_bytes, total_bytes FROM scenarios"
    ).fetchall()
    rows = []
    for run_key, model, weights, kv, task, budget, samples, wb, kb, sb, tb in scenarios:
        table: dict[str, list] = {}
        for problem_id, extracted, correct in con.execute(
            "SELECT problem_id, extracted, correct FROM samples WHERE run_key=? AND model=? AND weights=? "
            "AND kv=? AND task=? AND budget=? AND sample_index < ? ORDER BY problem_id, sample_index",
            (run_key, model, weights, kv, task, budget, samples),
        ):
            table.setdefault(problem_id, []).append((extracted, bool(correct)))
        complete = [v for v in table.values() if len(v) == samples]
        if not complete:
            continue
        s = score(complete, k=samples)
        rows.append(
            [
                model,
                weights,
                kv,
                task,
                get_task(task).kind,
                budget,
                samples,
                s.metric,
                s.value,
                s.low,
                s.high,
                s.n_problems,
                wb,
                kb,
                sb,
                tb,
            ]
        )
    con.close()
    return pd.DataFrame(rows, columns=COLUMNS)
