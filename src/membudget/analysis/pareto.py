"""Pareto frontiers of accuracy against memory, and what each frontier step spends memory on.

All functions take and return plain pandas tables (columns of analysis.tables.COLUMNS), so they can
be tested on constructed tables with known answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..memory import GIB, KVPolicy

AXES = ("weights", "tokens", "kv", "samples")


def frontier(df: pd.DataFrame) -> pd.DataFrame:
    """Scenarios no other scenario beats with less or equal memory: sorted by total_bytes, accuracy
    strictly increasing (ties in memory keep the more accurate)."""
    ordered = df.sort_values(["total_bytes", "accuracy"], ascending=[True, False])
    keep, best = [], -np.inf
    for index, row in ordered.iterrows():
        if row["accuracy"] > best:
            keep.append(index)
            best = row["accuracy"]
    return ordered.loc[keep].reset_index(drop=True)


def spent_on(a: pd.Series, b: pd.Series) -> list[str]:
    """Which axes changed from frontier point a to the next one b."""
    axes = []
    if (a["model"], a["weights"]) != (b["model"], b["weights"]):
        axes.append("weights")
    if a["budget"] != b["budget"]:
        axes.append("tokens")
    if a["kv"] != b["kv"]:
        axes.append("kv")
    if a["samples"] != b["samples"]:
        axes.append("samples")
    return axes


def frontier_steps(front: pd.DataFrame) -> pd.DataFrame:
    """One row per step along the frontier: memory added, accuracy gained, and the axes it spends on."""
    rows = []
    for i in range(1, len(front)):
        a, b = front.iloc[i - 1], front.iloc[i]
        rows.append(
            {
                "from": i - 1,
                "to": i,
                "memory_gib": b["total_bytes"] / GIB,
                "added_gib": (b["total_bytes"] - a["total_bytes"]) / GIB,
                "gained": b["accuracy"] - a["accuracy"],
                "effective_gib": b["weights_bytes"] / GIB,
                "spent_on": "+".join(spent_on(a, b)),
            }
        )
    return pd.DataFrame(
        rows, columns=["from", "to", "memory_gib", "added_gib", "gained", "effective_gib", "spent_on"]
    )


def scale_threshold(front: pd.DataFrame) -> float | None:
    """Effective size (GiB of weights) where the frontier stops spending on weights and starts spending
    on tokens: the weights of the first frontier point left by a step that keeps the weights and raises
    the budget, provided bigger weights came before. None if the frontier never turns."""
    for i in range(1, len(front)):
        a, b = front.iloc[i - 1], front.iloc[i]
        axes = spent_on(a, b)
        grew_before = any("weights" in spent_on(front.iloc[j - 1], front.iloc[j]) for j in range(1, i))
        if "tokens" in axes and "weights" not in axes and grew_before:
            return a["weights_bytes"] / GIB
    return None


def memory_bins(df: pd.DataFrame, per_doubling: int = 1) -> np.ndarray:
    """Log-spaced bin edges (bytes) covering the table's memory range."""
    low, high = df["total_bytes"].min(), df["total_bytes"].max()
    count = max(1, int(np.ceil(np.log2(high / low) * per_doubling)))
    return np.geomspace(low, high * (1 + 1e-9), count + 1)


def _kv_kind(kv: str) -> str:
    policy = KVPolicy.parse(kv)
    evicts, quantizes = policy.eviction is not None, policy.bits is not None
    return {(True, True): "both", (True, False): "eviction", (False, True): "quantization"}.get(
        (evicts, quantizes), "full"
    )


def eviction_vs_quantization(df: pd.DataFrame) -> pd.DataFrame:
    """Per memory bin, the best accuracy reached by eviction and by quantization, and which is higher."""
    kinds = df.assign(kv_kind=df["kv"].map(_kv_kind))
    edges = memory_bins(df)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = kinds[(kinds["total_bytes"] >= lo) & (kinds["total_bytes"] < hi)]
        best = {k: inside.loc[inside["kv_kind"] == k, "accuracy"].max() for k in ("eviction", "quantization")}
        if all(pd.isna(v) for v in best.values()):
            continue
        winner = (
            "tie"
            if best["eviction"] == best["quantization"]
            else (
                "eviction"
                if pd.isna(best["quantization"]) or best["eviction"] > best["quantization"]
                else "quantization"
            )
        )
        rows.append(
            {
                "low_gib": lo / GIB,
                "high_gib": hi / GIB,
                "eviction": best["eviction"],
                "quantization": best["quantization"],
                "better": winner,
            }
        )
    return pd.DataFrame(rows, columns=["low_gib", "high_gib", "eviction", "quantization", "better"])


def best_samples(df: pd.DataFrame) -> pd.DataFrame:
    """At every bin edge, the sample count G of the most accurate scenario using at most that memory."""
    edges = memory_bins(df)
    rows = []
    for hi in edges:
        inside = df[df["total_bytes"] <= hi]
        if inside.empty:
            continue
        top = inside.loc[inside["accuracy"].idxmax()]
        rows.append(
            {
                "up_to_gib": hi / GIB,
                "samples": int(top["samples"]),
                "accuracy": top["accuracy"],
                "model": top["model"],
                "budget": int(top["budget"]),
            }
        )
    return pd.DataFrame(rows, columns=["up_to_gib", "samples", "accuracy", "model", "budget"])
