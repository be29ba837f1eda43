"""Time estimates before a sweep runs: the step model against the measurements it was fitted to, the
held context an evicting cache averages, the groups a dry run estimates, and a rehearsal on the CPU."""

import dataclasses
import sys

import pytest
import torch

from membudget.memory import KVPolicy
from membudget.spec import resolve_spec
from membudget.sweep import estimate
from membudget.sweep.batching import Batch
from membudget.sweep.config import load_sweep
from membudget.sweep.runner import group_plans, plan, size_generations

from .test_sweep import tiny_dir, write_sweep  # noqa: F401 (a fixture)

# bench/BASELINE.md, one H200 unless said: (model, weights, KV, rows, context) -> ms per step, graph-replayed
# (the weights and KV rows) or through the Python loop (the bf16 rows: "loop ms")
MEASURED = [
    ("Qwen/Qwen3-0.6B", 16, "full", 1, 8192, 1.050, True),
    ("Qwen/Qwen3-0.6B", 16, "full", 16, 8192, 4.642, True),
    ("Qwen/Qwen3-8B", 16, "full", 1, 8192, 4.694, True),
    ("Qwen/Qwen3-8B", 16, "full", 16, 8192, 9.111, True),
    ("Qwen/Qwen3-8B", 8, "full", 1, 8192, 3.648, False),
    ("Qwen/Qwen3-8B", 4, "full", 1, 8192, 2.845, False),
    ("Qwen/Qwen3-8B", 16, "quant:8", 16, 16384, 13.406, False),
    ("Qwen/Qwen3-8B", 16, "full", 16, 16384, 13.888, False),
    ("Qwen/Qwen3-8B", 16, "quant:4", 16, 32768, 17.353, False),
    # "4-bit weights with an evicting cache", an H100 (3.024 TB/s copy): 7.801 ms x 3.024 / 4.214
    ("Qwen/Qwen3-8B", 4, "full", 16, 3136, 5.598, False),
]


@pytest.mark.parametrize("model, weights, kv, rows, context, ms, loop", MEASURED)
def test_the_step_model_reproduces_the_steps_it_was_fitted_to(model, weights, kv, rows, context, ms, loop):
    seconds = estimate.step_seconds(resolve_spec(model), weights, kv, rows, context)
    modelled = 1e3 * (seconds if loop else seconds - estimate.HOST)
    assert modelled == pytest.approx(ms, rel=0.03)


@pytest.mark.parametrize("kv, prompt, budget", [("full", 10, 100), ("rkv:48", 10, 200), ("rkv:48", 300, 50),
                                                ("streaming:4096", 300, 30000), ("h2o:64", 0, 64)])  # fmt: skip
def test_mean_held_is_the_mean_over_the_thinking_steps(kv, prompt, budget):
    policy = KVPolicy.parse(kv)
    cap = policy.budget + policy.slack / 2 if policy.eviction else float("inf")
    brute = sum(min(prompt + t, cap) for t in range(budget)) / budget
    assert estimate.mean_held(policy, prompt, budget) == pytest.approx(brute)


def test_a_dry_run_estimates_each_group_for_a_gpu_it_does_not_have(tmp_path, monkeypatch, capsys):
    from membudget.cli import main

    file = tmp_path / "q.toml"
    file.write_text(
        'models = ["Qwen/Qwen3-8B"]\nweights = [16, 4]\nkv = ["full", "rkv:4096"]\nbudgets = [30000]\n'
        'samples = [16]\n[[tasks]]\nname = "arithmetic"\nlimit = 30\n'
    )
    config, problems = load_sweep(file)
    sizes = size_generations(config, problems, 80 * 2**30)
    plans = {(p.weights, p.kv): p for p in group_plans(config, problems, plan(config, problems, sizes=sizes))}
    spec = resolve_spec("Qwen/Qwen3-8B")
    hours = {key: estimate.estimate_seconds(spec, p) / 3600 for key, p in plans.items()}
    # fewer weight bytes and a bounded cache each take less time; each generation's rows fit 80 GiB
    assert hours[4, "full"] < hours[16, "full"] and hours[16, "rkv:4096"] < hours[16, "full"]
    assert all(p.generations * p.rows >= 30 * 16 and p.steps == 30000 + p.answer for p in plans.values())
    monkeypatch.setattr(sys, "argv", ["membudget", "sweep", str(file), "--dry-run", "--gpu-memory", "80GiB"])
    with pytest.raises(SystemExit) as stop:
        main()
    printed = capsys.readouterr().out
    assert (
        stop.value.code == 0 and f"about {sum(hours.values()):,.1f} h of decode steps on one H200" in printed
    )
    assert not list(tmp_path.glob("*.db"))


def test_a_rehearsal_times_the_groups_shapes_on_the_sweeps_device(tmp_path, tiny_dir, monkeypatch, capsys):  # noqa: F811
    from membudget.cli import main

    file = write_sweep(tmp_path / "s.toml", tiny_dir, budgets="[40]", extra='kv = ["full", "streaming:8"]')
    config, problems = load_sweep(file)
    spec = resolve_spec(str(tiny_dir))
    evicting = estimate.group_plan(str(tiny_dir), 16, "streaming:8", "arithmetic", 5, Batch(5, 15, 1, 0), 3, 20,
                                   (400,), 6)  # fmt: skip
    r = estimate.rehearse(
        spec, evicting, "cpu", "float32", steps=160
    )  # compacts in the warm-up, then every 128
    assert r.steps == 160 and r.seconds_per_step > 0 and r.peak_bytes == 0 and r.accounted_bytes > 0
    # out of time at once: an evicting cache still times one whole compaction cycle, a full one a step
    assert estimate.rehearse(spec, evicting, "cpu", "float32", steps=300, seconds=0).steps == 128
    full = dataclasses.replace(evicting, kv="full")
    assert estimate.rehearse(spec, full, "cpu", "float32", steps=300, seconds=0).steps == 1
    assert r.estimate_seconds == pytest.approx(r.seconds_per_step * evicting.steps, rel=0.5)
    monkeypatch.setattr(
        sys, "argv", ["membudget", "sweep", str(file), "--rehearse", "--db", str(tmp_path / "r.db")]
    )
    with pytest.raises(SystemExit) as stop:
        main()
    printed = capsys.readouterr().out
    assert stop.value.code == 0 and "rehearsed on CPU" in printed and "on this CPU (rehearsed)" in printed
    assert not (tmp_path / "r.db").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.xfail(
    strict=False,  # passes on a machine that compiled these shapes before (0.98x)
    reason="on an H100 (torch 2.11), compiling these shapes for the first time on a machine peaked 2.26 GB "
    "against 1.65 accounted (1.367), with plain compile as with autotuning; which allocation it is has "
    "not been found (bench/BASELINE.md, '4-bit weights with an evicting cache')",
)
def test_a_rehearsals_peak_is_that_of_the_weights_it_holds():
    """4-bit weights: the rehearsal builds its random model 16-bit and then quantizes it; its peak must
    be the generation's (the held 4-bit weights, cache and step), not that transient 16-bit copy, nor
    anything its first compile holds. Four rows: where the sweep packs batches when memory is tight."""
    spec = resolve_spec("Qwen/Qwen3-1.7B")  # 16-bit layers 2.8 GB, 4-bit 0.8 GB: a transient copy is plain
    group = estimate.group_plan(
        "Qwen/Qwen3-1.7B", 4, "rkv:256", "check", 1, Batch(1, 4, 1, 0), 4, 64, (512,), 20
    )
    r = estimate.rehearse(spec, group, "cuda", "bfloat16", steps=160)
    assert 0.95 < r.peak_bytes / r.accounted_bytes < 1.05, (r.peak_bytes, r.accounted_bytes)
