"""bench/gpu_acceptance.py's parts that need no GPU: sweep-file variants and the GPU-vs-CPU check."""

import importlib.util
from pathlib import Path

from membudget.sweep.config import load_sweep

from .conftest import fake_store

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_acceptance", ROOT / "bench" / "gpu_acceptance.py")
acceptance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(acceptance)


def test_the_grid_covers_every_kv_family_and_weight_width(tmp_path):
    grid = acceptance.variant(acceptance.GRID, tmp_path / "g.toml", device='"cpu"')
    config, problems = load_sweep(grid, check_models=False)
    families = {kv.split(":")[0] for kv in config.kv}
    assert families >= {"full", "quant", "streaming", "rkv", "h2o", "snapkv"}
    assert any("+quant" in kv for kv in config.kv)
    assert config.weights == (4, 8, 16) and config.samples == (1, 16) and len(config.budgets) == 2
    assert config.device == "cpu" and config.batch >= len(problems["arithmetic"])  # one generation each
    evicting = [kv for kv in config.kv if ":" in kv and kv.split(":")[0] != "quant"]
    assert all(int(kv.split(":")[1].split("+")[0]) + 128 < config.budgets[-1] + 64 for kv in evicting)


def test_gpu_and_cpu_scores_agree_when_their_intervals_overlap(tmp_path):
    model = "Qwen/Qwen3-0.6B"
    gpu = fake_store(tmp_path / "g.db", {(model, 16, "full", 64): 0.5, (model, 16, "quant:4", 64): 0.9})
    cpu = fake_store(tmp_path / "c.db", {(model, 16, "full", 64): 0.6, (model, 16, "quant:4", 64): 0.1})
    rows = {r["kv"]: r for r in acceptance.compare(gpu, cpu)}
    assert rows["full"]["overlap"] and not rows["quant:4"]["overlap"]
