"""Every command on bad input: one line on stderr naming the flag or key and what to do, exit status 2,
no traceback, and the files around it exactly as they were (nothing created, changed or removed)."""

import hashlib
import sqlite3
import sys
from pathlib import Path

import pytest

from membudget.cli import main

from .conftest import fake_store

GOOD_SWEEP = """name = "s"
models = ["smollm2"]
weights = [16]
kv = ["full"]
budgets = [8]
samples = [1]
device = "cpu"

[[tasks]]
name = "arithmetic"
limit = 2
"""


def files(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> content hash) and every folder (-> "dir")."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder of bad (and a few good) inputs."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "notdb.db").write_text("this is not a database\n")
    foreign = sqlite3.connect(root / "foreign.db")
    foreign.execute("CREATE TABLE people (name TEXT)")
    foreign.commit()
    foreign.close()
    other = sqlite3.connect(root / "othercols.db")
    for table in ("sweeps", "runs", "scenarios", "samples"):
        other.execute(f"CREATE TABLE {table} (x INTEGER)")
    other.commit()
    other.close()
    fake_store(root / "good.db", {("Qwen/Qwen3-0.6B", 16, "full", 2000): 0.5})
    (root / "truncated.db").write_bytes((root / "good.db").read_bytes()[:200])
    (root / "afile").write_text("x")
    (root / "good.toml").write_text(GOOD_SWEEP)
    (root / "cuda.toml").write_text(GOOD_SWEEP.replace('device = "cpu"', 'device = "cuda"'))
    (root / "syntax.toml").write_text('name = "s"\nmodels = [smollm2\n')
    (root / "unknown.toml").write_text(GOOD_SWEEP + "colour = 3\n")
    (root / "weights.toml").write_text(GOOD_SWEEP.replace("weights = [16]", "weights = [3]"))
    (root / "kv.toml").write_text(GOOD_SWEEP.replace('kv = ["full"]', 'kv = ["zip:3"]'))
    (root / "device.toml").write_text(GOOD_SWEEP.replace('device = "cpu"', 'device = "tpu"'))
    (root / "task.toml").write_text(GOOD_SWEEP.replace('name = "arithmetic"', 'name = "trivia"'))
    (root / "data.toml").write_text(GOOD_SWEEP.replace("limit = 2", 'data = "missing.jsonl"'))
    (root / "sampling.toml").write_text(GOOD_SWEEP + "\n[sampling]\ntop_p = 3.0\n")
    (root / "budgets.toml").write_text(GOOD_SWEEP.replace("budgets = [8]", "budgets = []"))
    (root / "model.toml").write_text(GOOD_SWEEP.replace('models = ["smollm2"]', 'models = ["nothere"]'))
    return root


# (arguments, words the one line must contain); {d} is the folder of inputs
CASES = [
    (["memory", "--model", "nothere"], "unknown model 'nothere'"),
    (["memory", "--model", "qwen3-8b", "--weights", "3"], "weights"),
    (["memory", "--model", "qwen3-8b", "--kv", "bogus"], "bogus"),
    (["memory", "--model", "qwen3-8b", "--kv", "rkv:0"], "rkv:0"),
    (["memory", "--model", "qwen3-8b", "--tokens", "-5"], "--tokens"),
    (["memory", "--model", "qwen3-8b", "--samples", "0"], "--samples"),
    (["memory", "--model", "qwen3-8b", "--convention", "foo"], "convention"),
    (["memory", "--model", "{d}/missing.gguf"], "no such file"),
    (["memory", "--model", "{d}"], "no config.json"),
    (["memory", "--model", "qwen3-8b", "--nonsense"], "--nonsense"),
    (["fit", "--memory", "abc", "--model", "qwen3-8b"], "abc"),
    (["fit", "--memory", "-1GiB", "--model", "qwen3-8b"], "-1GiB"),
    (["fit", "--memory", "24GiB", "--model", "nothere"], "nothere"),
    (["fit", "--memory", "24GiB", "--model", "qwen3-8b", "--samples", "x"], "--samples"),
    (["plan", "--memory", "24GiB", "--task", "foo"], "foo"),
    (["plan", "--memory", "zz", "--task", "math"], "zz"),
    (["plan", "--memory", "24GiB", "--db", "{d}/notdb.db"], "not a SQLite database"),
    (["plan", "--memory", "24GiB", "--db", "{d}/foreign.db"], "not a membudget results store"),
    (["plan", "--memory", "24GiB", "--db", "{d}/othercols.db"], "lacks the column"),
    (["plan", "--memory", "24GiB", "--db", "{d}/truncated.db"], "truncated.db"),
    (["plan", "--memory", "24GiB", "--db", "{d}/missing.db"], "no such results store"),
    (["report", "{d}/missing.db", "--out", "{d}/r"], "no such results store"),
    (["report", "{d}/notdb.db", "--out", "{d}/r"], "not a SQLite database"),
    (["report", "{d}/foreign.db", "--out", "{d}/r"], "not a membudget results store"),
    (["report", "{d}/othercols.db", "--out", "{d}/r"], "lacks the column"),
    (["report", "{d}/truncated.db", "--out", "{d}/r"], "truncated.db"),
    (["report", "{d}/good.db", "--out", "{d}/afile"], "is a file"),
    (["report", "{d}/good.db", "--out", "{d}/afile/sub"], "cannot write the report"),
    (["sweep", "{d}/missing.toml"], "cannot read the sweep file"),
    (["sweep", "{d}/syntax.toml"], "syntax.toml"),
    (["sweep", "{d}/unknown.toml"], "colour"),
    (["sweep", "{d}/weights.toml"], "weights"),
    (["sweep", "{d}/kv.toml"], "zip:3"),
    (["sweep", "{d}/device.toml"], "device"),
    (["sweep", "{d}/task.toml"], "trivia"),
    (["sweep", "{d}/data.toml"], "missing.jsonl"),
    (["sweep", "{d}/sampling.toml"], "sampling.top_p"),
    (["sweep", "{d}/budgets.toml"], "budgets"),
    (["sweep", "{d}/model.toml"], "nothere"),
    (["sweep", "{d}/good.toml", "--db", "{d}/notdb.db"], "not a SQLite database"),
    (["sweep", "{d}/good.toml", "--db", "{d}/foreign.db"], "not a membudget results store"),
    (["sweep", "{d}/good.toml", "--db", "{d}/othercols.db"], "lacks the column"),
    (["sweep", "{d}/good.toml", "--db", "{d}/truncated.db"], "truncated.db"),
    (["sweep", "{d}/good.toml", "--dry-run", "--db", "{d}/foreign.db"], "not a membudget results store"),
    (["sweep", "{d}/good.toml", "--db", "{d}/afile/x.db"], "results store"),
    (["eval", "--model", "smollm2", "--task", "nope"], "nope"),
    (["eval", "--model", "smollm2", "--task", "aime25", "--data", "{d}/missing.jsonl"], "missing.jsonl"),
    (["eval", "--model", "smollm2", "--task", "arithmetic", "--budgets", "abc"], "--tokens"),
    (["eval", "--model", "nothere", "--task", "arithmetic", "--db", "{d}/e.db"], "nothere"),
    (["generate", "--model", "smollm2", "--prompt", "hi", "--device", "tpu"], "--device tpu"),
    (["generate", "--model", "smollm2", "--prompt", "hi", "--kv", "bogus"], "bogus"),
    (["generate", "--model", "{d}/missing.gguf", "--prompt", "hi", "--device", "cpu"], "missing.gguf"),
]
if "torch" in sys.modules or True:  # CUDA-only refusals apply on machines without a GPU
    import torch

    if not torch.cuda.is_available():
        CASES += [
            (["sweep", "{d}/cuda.toml", "--db", "{d}/c.db"], 'device = "cuda"'),
            (["bench", "--model", "qwen3-0.6b"], "CUDA"),
        ]


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(place, monkeypatch, capsys, args, words):
    before = files(place)
    monkeypatch.chdir(place)
    monkeypatch.setattr(sys, "argv", ["membudget", *[a.format(d=place) for a in args]])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 or (lines[0].startswith("Usage:") and "Error" in err), err
    assert words.format(d=place) in err, err
    assert files(place) == before


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_a_dry_run_writes_nothing_and_math500_needs_no_network(place, tmp_path, monkeypatch, capsys):
    """`sweep --dry-run` creates no store (nor its folders) and changes no existing one; MATH-500 is
    shipped with the package, so a sweep of it plans with the hub unreachable."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    sweep = tmp_path / "m.toml"
    sweep.write_text(GOOD_SWEEP.replace('name = "arithmetic"\nlimit = 2', 'name = "math500"\nlimit = 3'))
    before = files(place)
    for db in (tmp_path / "new" / "r.db", place / "good.db"):
        monkeypatch.setattr(sys, "argv", ["membudget", "sweep", str(sweep), "--dry-run", "--db", str(db)])
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code == 0, capsys.readouterr().err
        assert "3 still to run" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()
    assert files(place) == before
