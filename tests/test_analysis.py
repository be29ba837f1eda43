"""Frontier, threshold and comparison tables on constructed scenario tables with known answers."""

import pandas as pd
import pytest

from membudget.analysis.pareto import (
    best_samples,
    eviction_vs_quantization,
    frontier,
    frontier_steps,
    scale_threshold,
)
from membudget.memory import GIB


def table(rows):
    """rows: (model, weights, kv, budget, samples, weights GiB, total GiB, accuracy)."""
    return pd.DataFrame(
        [
            {
                "model": m,
                "weights": w,
                "kv": kv,
                "task": "aime25",
                "budget": t,
                "samples": g,
                "weights_bytes": int(wg * GIB),
                "total_bytes": int(tg * GIB),
                "accuracy": a,
            }
            for m, w, kv, t, g, wg, tg, a in rows
        ]
    )


SCALING = table(
    [
        ("0.6B", 8, "full", 2000, 1, 0.7, 1.0, 0.05),
        ("0.6B", 8, "full", 18000, 1, 0.7, 2.7, 0.08),  # longer budget on a small model: dominated
        ("1.7B", 8, "full", 6000, 1, 1.9, 2.6, 0.20),
        ("4B", 8, "full", 2000, 1, 4.2, 4.6, 0.25),
        ("4B", 8, "full", 10000, 1, 4.2, 5.8, 0.45),
        ("4B", 8, "full", 18000, 1, 4.2, 7.0, 0.55),
        ("8B", 8, "full", 2000, 1, 8.9, 9.2, 0.40),  # bigger weights with a short budget: dominated
        ("4B", 8, "full", 26000, 4, 4.2, 12.0, 0.60),
    ]
)


def test_frontier_keeps_exactly_the_undominated_points():
    front = frontier(SCALING)
    assert list(zip(front["model"], front["budget"], front["samples"], strict=True)) == [
        ("0.6B", 2000, 1),
        ("1.7B", 6000, 1),
        ("4B", 2000, 1),
        ("4B", 10000, 1),
        ("4B", 18000, 1),
        ("4B", 26000, 4),
    ]
    assert front["accuracy"].is_monotonic_increasing and front["total_bytes"].is_monotonic_increasing


def test_frontier_steps_and_scale_threshold():
    front = frontier(SCALING)
    steps = frontier_steps(front)
    assert list(steps["spent_on"]) == [
        "weights+tokens",
        "weights+tokens",
        "tokens",
        "tokens",
        "tokens+samples",
    ]
    assert scale_threshold(front) == pytest.approx(4.2)
    # a frontier that only ever grows weights has no threshold
    assert scale_threshold(frontier(SCALING[SCALING["budget"] == 2000])) is None


def test_eviction_vs_quantization_per_memory_bin():
    df = table(
        [
            ("1.7B", 8, "rkv:2048", 18000, 1, 1.9, 2.2, 0.30),
            ("1.7B", 8, "quant:4", 18000, 1, 1.9, 2.4, 0.20),
            ("8B", 8, "rkv:4096", 18000, 1, 8.9, 10.0, 0.50),
            ("8B", 8, "quant:8", 18000, 1, 8.9, 11.0, 0.55),
            ("8B", 8, "full", 18000, 1, 8.9, 16.0, 0.56),
        ]
    )
    result = eviction_vs_quantization(df)
    assert list(result["better"]) == ["eviction", "quantization"]
    assert result.iloc[0]["eviction"] == 0.30 and result.iloc[1]["quantization"] == 0.55


def test_best_samples_grows_with_memory():
    df = table(
        [
            ("8B", 8, "full", 18000, 1, 8.9, 10.0, 0.50),
            ("8B", 8, "full", 18000, 4, 8.9, 20.0, 0.60),
            ("8B", 8, "full", 18000, 8, 8.9, 40.0, 0.66),
        ]
    )
    assert list(best_samples(df)["samples"]) == [1, 4, 8]
