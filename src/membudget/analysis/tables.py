"""Scenario tables from a results store: one row per measured scenario, with its score and memory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..sweep.store import open_readonly, scenario_score
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
    con = open_readonly(db)
    scenarios = con.execute(
        "SELECT DISTINCT run_key, model, weights, kv, task, budget, samples, weights_bytes, kv_bytes, "
        "workspace_bytes, total_bytes FROM scenarios"
    ).fetchall()
    rows = []
    for run_key, model, weights, kv, task, budget, samples, wb, kb, sb, tb in scenarios:
        s = scenario_score(con, run_key, model, weights, kv, task, budget, samples)
        if s is None:
            continue
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
