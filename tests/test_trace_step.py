"""bench/trace_step.py charges each kernel of a traced step with how far it pushed the step's end: the
charges and the idle time must add up to the step, whatever the kernels' overlap."""

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "trace_step", Path(__file__).parent.parent / "bench" / "trace_step.py"
)
trace_step = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(trace_step)


def test_charges_and_idle_add_up_to_the_span():
    # a (0-10), b overlapping its end (5-12), c inside b (6-8), idle 12-15, d (15-20); two steps
    kernels = [("a", 0, 10), ("b", 5, 12), ("c", 6, 8), ("d", 15, 20)]
    kernels += [(name, start + 20, end + 20) for name, start, end in kernels]
    found = trace_step.attribute(kernels, steps=2)
    charged = {row["kernel"]: row["charged_us_per_step"] for row in found["kernels"]}
    assert charged == {"a": 10, "b": 2, "c": 0, "d": 5}
    assert found["idle_us_per_step"] == 3
    assert found["ms_per_step"] == pytest.approx(20e-3)
    assert sum(charged.values()) + found["idle_us_per_step"] == 20
    assert [row["kernel"] for row in found["kernels"]] == ["a", "d", "b", "c"]  # most charged first
    assert {row["kernel"]: row["mean_us"] for row in found["kernels"]}["b"] == 7
