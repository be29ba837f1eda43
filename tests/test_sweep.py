"""Sweeps: validation with key and line, shared generations, crash-safe resume, Ray, eval."""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from membudget.spec import resolve_spec
from membudget.sweep.config import SweepError, load_sweep
from membudget.sweep.runner import plan, record_plan, run_local
from membudget.sweep.store import RESULT_COLUMNS, Store

from .conftest import THINK_CLOSE, tiny_model, tiny_tokenizer, write_aime

TIMING = {"prefill_s", "decode_s", "peak_memory_bytes"}
KEEP = [i for i, c in enumerate(RESULT_COLUMNS) if c not in TIMING]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a word-level tokenizer and a chat template, saved as safetensors."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", seed=3, boost={THINK_CLOSE: 2.0}).save_pretrained(path, safe_serialization=True)
    tok = tiny_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}<think>"
    tok.save_pretrained(path)
    return path


def write_sweep(path: Path, model: Path, budgets="[4, 10]", samples="[1, 3]", limit=5, extra="") -> Path:
    path.write_text(f"""name = "tiny"
seed = 3
models = ["{model}"]
budgets = {budgets}
samples = {samples}
{extra}
[sampling]
temperature = 1.0
top_p = 0.95
top_k = 50

[generation]
answer_tokens = 4

[[tasks]]
name = "arithmetic"
limit = {limit}
""")
    return path


def run_sweep(file: Path, db: Path) -> list[tuple]:
    config, problems = load_sweep(file)
    store = Store(db)
    record_plan(config, store)
    run_local(config, plan(config, problems, store), store)
    rows = [tuple(r[i] for i in KEEP) for r in store.sample_rows()]
    store.close()
    return rows


def test_sweep_writes_every_row_once(tmp_path, tiny_dir):
    file = write_sweep(tmp_path / "s.toml", tiny_dir)
    rows = run_sweep(file, tmp_path / "r.db")
    assert len(rows) == 5 * 3 * 2  # problems x max G x budgets
    assert run_sweep(file, tmp_path / "r.db") == rows  # a rerun adds nothing
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("SELECT COUNT(*) FROM scenarios").fetchone()[0] == 2 * 2  # budgets x samples
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_weight_precisions_load_once_each(tmp_path, tiny_dir):
    rows = run_sweep(
        write_sweep(tmp_path / "w.toml", tiny_dir, limit=2, extra="weights = [16, 4]"), tmp_path / "w.db"
    )
    weights = RESULT_COLUMNS.index("weights")
    assert sorted({r[KEEP.index(weights)] for r in rows}) == [4, 16] and len(rows) == 2 * 2 * 3 * 2


def test_batched_problems_and_kv_policies_equal_one_at_a_time(tmp_path, tiny_dir):
    kv = 'kv = ["full", "streaming:8", "rkv:12"]'
    alone = run_sweep(write_sweep(tmp_path / "a.toml", tiny_dir, extra=kv), tmp_path / "a.db")
    together = run_sweep(
        write_sweep(tmp_path / "b.toml", tiny_dir, extra=kv + "\nbatch = 3"), tmp_path / "b.db"
    )
    assert sorted(together) == sorted(alone) and len(alone) == 3 * 5 * 3 * 2
    policy = KEEP.index(RESULT_COLUMNS.index("kv"))
    assert {r[policy] for r in alone} == {"full", "streaming:8", "rkv:12"}


def test_shared_budgets_equal_separate_runs(tmp_path, tiny_dir):
    together = run_sweep(write_sweep(tmp_path / "a.toml", tiny_dir, budgets="[4, 10]"), tmp_path / "a.db")
    name = RESULT_COLUMNS.index
    columns = [
        KEEP.index(name(c)) for c in ("problem_id", "sample_index", "budget", "answer_text", "correct")
    ]
    pick = sorted(tuple(r[i] for i in columns) for r in together)
    alone = []
    for budget in (4, 10):
        rows = run_sweep(
            write_sweep(tmp_path / f"b{budget}.toml", tiny_dir, budgets=f"[{budget}]"),
            tmp_path / f"b{budget}.db",
        )
        alone += [tuple(r[i] for i in columns) for r in rows]
    assert pick == sorted(alone)


def test_killed_sweep_resumes_to_the_same_rows(tmp_path, tiny_dir):
    file = write_sweep(tmp_path / "s.toml", tiny_dir, budgets="[6, 16]", limit=40)
    reference = run_sweep(file, tmp_path / "ref.db")
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "membudget", "sweep", str(file), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    count, deadline = 0, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                count = sqlite3.connect(db, timeout=1).execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:  # tables not created yet
                count = 0
            if count >= 6:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < count < len(reference), "the sweep should have been killed mid-run"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    store = Store(db)
    assert [tuple(r[i] for i in KEEP) for r in store.sample_rows()] == reference
    store.close()


def test_ray_writes_the_same_rows_as_a_local_run(tmp_path, tiny_dir):
    pytest.importorskip("ray", reason="`make test` installs ray")
    from membudget.sweep.ray import run_ray

    file = write_sweep(tmp_path / "s.toml", tiny_dir, limit=3)
    local = run_sweep(file, tmp_path / "local.db")
    config, problems = load_sweep(file)
    store = Store(tmp_path / "ray.db")
    record_plan(config, store)
    written = run_ray(config, plan(config, problems, store), store, num_cpus=2)
    assert written == len(local)
    assert [tuple(r[i] for i in KEEP) for r in store.sample_rows()] == local
    store.close()


@pytest.mark.parametrize(
    "extra, key, message",
    [
        ("bogus = 1", "bogus", "unknown key"),
        ('kv = ["rkv:abc"]', "kv", "malformed KV policy"),
        ('kv = ["lru:4096"]', "kv", "unknown KV method"),
        ("weights = [3]", "weights", "must be among 16, 8, 4"),
        ('memory = "1MiB"', "memory", "drop it or raise memory"),
        ('memory = "lots"', "memory", "cannot read the memory size"),
        ('device = "tpu"', "device", "auto, cpu or cuda"),
    ],
)
def test_malformed_sweep_files_name_key_and_line(tmp_path, tiny_dir, extra, key, message):
    file = write_sweep(tmp_path / "s.toml", tiny_dir, extra=extra)
    line = 1 + next(i for i, text in enumerate(file.read_text().splitlines()) if text.startswith(f"{key} ="))
    with pytest.raises(SweepError, match=f"s.toml:{line}: {key}: .*{message}"):
        load_sweep(file)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("budgets = [4, 10]", "budgets = [0, 10]"),
            r"s.toml:4: budgets: expected a non-empty list of positive",
        ),
        (('name = "arithmetic"', 'name = "aime26"'), r"s.toml:\d+: tasks.name: unknown task"),
        (("limit = 5", "limit = -1"), r"s.toml:\d+: tasks.limit: expected a positive"),
        (("top_k = 50", "top_k = 50\ncolour = 1"), r"s.toml:\d+: sampling.colour: unknown key"),
        (("temperature = 1.0", "temperature = -1.0"), r"sampling.temperature: temperature must be positive"),
        (
            (
                'models = ["',
                'models = ["nobody/',
            ),
            r"s.toml:3: models: .*not in the offline registry",
        ),
        (("[sampling]", "[sampling"), r"not valid TOML"),
    ],
)
def test_more_malformed_sweep_files(tmp_path, tiny_dir, monkeypatch, change, message):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    file = write_sweep(tmp_path / "s.toml", tiny_dir)
    file.write_text(file.read_text().replace(*change))
    with pytest.raises(SweepError, match=message):
        load_sweep(file)


def test_eval_and_parquet_export(tmp_path, tiny_dir, monkeypatch, capsys):
    from membudget.cli import main

    db = tmp_path / "e.db"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "membudget",
            "eval",
            "--model",
            str(tiny_dir),
            "--task",
            "arithmetic",
            "--limit",
            "3",
            "--budgets",
            "4,8",
            "--samples",
            "2",
            "--db",
            str(db),
        ],
    )
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code in (0, None)
    out = capsys.readouterr().out
    assert "maj@2" in out and "arithmetic" in out
    with pytest.raises(SystemExit) as stop:  # the same again: nothing to run, and it says so
        main()
    assert stop.value.code in (0, None)
    again = capsys.readouterr()
    assert "all 3 problems already in" in again.err and "0 new rows" in again.out
    store = Store(db)
    assert store.export_parquet(tmp_path / "e.parquet") == 3 * 2 * 2
    store.close()
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "e.parquet").num_rows == 12


def test_example_sweep_file_is_valid(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "qwen3-aime25.toml"
    data = write_aime(tmp_path / "aime25.jsonl", 30)
    text = example.read_text().replace("limit = 30", f'data = "{data}"\nlimit = 30')
    (tmp_path / "q.toml").write_text(text)
    config, problems = load_sweep(tmp_path / "q.toml")
    assert len(config.scenarios()) == 128 and len(problems["aime25"]) == 30
    assert len(plan(config, problems)) == 4  # one model load each


def test_progress_lines_reach_a_log_file_while_the_sweep_runs(tmp_path, tiny_dir):
    """With stderr not a terminal (a log file, nohup) progress comes as plain lines, the first as the
    sweep starts, the last with every problem done."""
    file = write_sweep(tmp_path / "s.toml", tiny_dir, budgets="[6, 16]", limit=8)
    log = tmp_path / "err.log"
    cmd = [sys.executable, "-m", "membudget", "sweep", str(file), "--db", str(tmp_path / "p.db")]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        seen_running = False
        while proc.poll() is None and not seen_running:
            seen_running = "0/8 problems" in log.read_text()
            time.sleep(0.02)
        assert proc.wait(timeout=300) == 0, log.read_text()
    text = log.read_text()
    assert seen_running, text
    assert "8/8 problems" in text and "left" in text


def test_progress_bounds_the_time_left_before_the_first_problem_finishes(monkeypatch):
    """Inside a long first generation the rate counts the tokens decoded so far and the time left is
    the planned tokens' bound; once problems finish, it comes from them."""
    from types import SimpleNamespace

    from membudget.cli import progress as cli

    now = [100.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    progress = cli.SweepProgress("s", total=10, done=0, planned=1000, every=1e9)
    assert progress.left() == "time left: after the first problems"
    progress.step(16)  # the first step (its compile) starts the clock of the rate
    now[0] = 101.0
    assert progress.left() == "time left: after the first problems"  # one second is too few to extrapolate
    for _ in range(10):
        progress.step(16)
    now[0] = 110.0
    assert progress.rate() == 16.0 and progress.steps_now == 11
    assert progress.left() == "at most 0:00:52 of decoding left"  # (1000 - 176) tokens at 16 per second
    row = SimpleNamespace(
        model="m", weights=16, kv="full", task="t", budget=8, thinking_tokens=8, answer_tokens=2
    )
    progress.problem([row, SimpleNamespace(**{**vars(row), "budget": 4})])
    assert progress.left() == "about 0:00:52 left" and progress.steps_now == 0  # the bound: less than 90 s
    progress.planned = 10**6
    assert progress.left() == "about 0:01:30 left"  # 10 s per problem, 9 to go
    now[0] = 125.0
    assert progress.left() == "about 0:01:15 left"  # counted down while the next generation runs
    now[0], progress.planned = 300.0, 2000
    # past the countdown: (2000 - 176) tokens at 0.8/s, an upper bound
    assert progress.left() == "time left: finishing this generation, at most 0:38:00"
    progress.planned = 0
    assert progress.left() == "time left: finishing this generation"
    progress.done = 10
    assert progress.left() == "done in 0:03:20"  # not the plan's tokens that stopped rows skip
    assert cli._clock(59.7) == "0:01:00" and cli._clock(3725.2) == "1:02:05"
    now[0] = 110.0
    ray = cli.SweepProgress("s", total=10, done=0)  # no steps reported: the finished problems' tokens
    now[0] = 120.0
    ray.problem([row])
    assert ray.rate() == 1.0  # 10 tokens of the largest budget in 10 s


def test_generations_are_sized_for_the_gpu_memory():
    """batch = "auto": the most problems whose rows fit; G split into passes where one problem's rows do
    not; a single sample that does not fit is refused with the budget that would."""
    from membudget.memory import GIB
    from membudget.spec import resolve_spec
    from membudget.sweep.batching import MARGIN, FitError, fit_batch, generation_bytes, largest_budget

    spec = resolve_spec("Qwen/Qwen3-8B")
    small = fit_batch(spec, 16, "rkv:4096", 8000, 16, 300, 32, 80 * GIB, 30)
    assert small.passes == 1 and 1 < small.problems <= 30 and small.rows == 16 * small.problems
    answer = 1 + 32 + 32
    limit = 80 * GIB * (1 - MARGIN)
    assert small.bytes <= limit < generation_bytes(spec, 16, "rkv:4096", 8000, small.rows + 16, 300, answer)
    assert fit_batch(spec, 16, "rkv:4096", 8000, 16, 300, 32, 80 * GIB, 30, requested=2).problems == 2
    full = fit_batch(spec, 16, "full", 30000, 16, 300, 32, 80 * GIB, 30)  # 82 GiB for G = 16: passes
    assert full.problems == 1 and full.passes == 2 and full.rows < 16 and full.bytes <= limit
    with pytest.raises(FitError, match="a budget up to T="):
        fit_batch(spec, 16, "full", 30000, 1, 300, 32, 17 * GIB, 30)
    most = largest_budget(spec, 16, "full", 16, 300, answer, 80 * GIB, 40000)  # the full cache's longest T
    assert 20000 < most < 30000
    assert generation_bytes(spec, 16, "full", most, 16, 300, answer) <= limit
    assert generation_bytes(spec, 16, "full", most + 1, 16, 300, answer) > limit
    assert (
        largest_budget(spec, 16, "full", 16, 300, answer, 10 * GIB, 40000) == 0
    )  # the weights alone do not fit
    with pytest.raises(FitError, match="fewer weight bits"):
        fit_batch(spec, 16, "full", 30000, 1, 300, 32, 10 * GIB, 30)


def test_a_dry_run_plans_passes_for_a_gpu_it_does_not_have(tmp_path, monkeypatch, capsys):
    from membudget.cli import main

    file = tmp_path / "q.toml"
    file.write_text(
        'models = ["Qwen/Qwen3-8B"]\nbudgets = [30000]\nsamples = [16]\n'
        '[[tasks]]\nname = "arithmetic"\nlimit = 4\n'
    )
    for memory, code, words in [("80GiB", 0, "│   14 │             2 │"), ("10GiB", 2, "one sample needs")]:
        monkeypatch.setattr(
            sys, "argv", ["membudget", "sweep", str(file), "--dry-run", "--gpu-memory", memory]
        )
        with pytest.raises(SystemExit) as stop:
            main()
        captured = capsys.readouterr()
        assert stop.value.code == code and words in captured.out + captured.err, captured
    assert not list(tmp_path.glob("*.db"))


def test_samples_in_passes_equal_one_pass(tmp_path, tiny_dir):
    """A problem whose G rows do not fit runs its samples in passes: the same rows as one pass, and
    several problems in one generation the same as one at a time."""
    import dataclasses

    from membudget.sweep.batching import Batch

    file = write_sweep(tmp_path / "s.toml", tiny_dir, budgets="[6, 16]", samples="[1, 3]", limit=3)
    reference = run_sweep(file, tmp_path / "ref.db")
    config, problems = load_sweep(file)
    for batch in (Batch(1, 2, 2, 0), Batch(3, 9, 1, 0)):  # passes of 2 + 1 samples; 3 problems at once
        store = Store(tmp_path / f"{batch.passes}-{batch.problems}.db")
        record_plan(config, store)
        groups = [
            dataclasses.replace(g, batches=(("full", "arithmetic", batch),)) for g in plan(config, problems)
        ]
        run_local(config, groups, store)
        assert [tuple(r[i] for i in KEEP) for r in store.sample_rows()] == reference, batch
        store.close()


def test_each_generation_is_recorded_with_its_accounting(tmp_path, tiny_dir):
    """One record per generation (per pass): its rows, longest prompt and `membudget memory`'s bytes
    for that batch; the peak stays empty on the CPU."""
    import dataclasses

    from membudget.memory import Scenario, breakdown
    from membudget.spec import resolve_spec
    from membudget.sweep.batching import Batch

    file = write_sweep(tmp_path / "s.toml", tiny_dir, budgets="[6, 16]", samples="[1, 3]", limit=3)
    config, problems = load_sweep(file)
    store = Store(tmp_path / "g.db")
    record_plan(config, store)
    groups = [
        dataclasses.replace(g, batches=(("full", "arithmetic", Batch(3, 9, 1, 0)),))
        for g in plan(config, problems)
    ]
    run_local(config, groups, store)
    [(problems_, rows, prompt, peak, accounted)] = store.db.execute(
        "SELECT problems, rows, prompt_tokens, peak_memory_bytes, accounted_bytes FROM generations"
    ).fetchall()
    assert len(problems_.split(",")) == 3 and rows == 9 and peak is None
    from transformers import AutoTokenizer

    from membudget.engine.generate import GenerationConfig, Generator
    from membudget.tasks import get_task

    settings = GenerationConfig((6, 16), 3, 4, get_task("arithmetic").answer_prefix)
    slots = Generator(None, AutoTokenizer.from_pretrained(tiny_dir)).answer_slots(settings)
    scenario = Scenario(str(tiny_dir), 16, "full", 16 + slots, 9, prompt, answer_slots=slots)
    assert accounted == breakdown(resolve_spec(str(tiny_dir)), scenario).total_bytes
    store.close()


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16")],
)
def test_auto_dtype_is_bf16_only_where_the_cpu_multiplies_it(monkeypatch, amx, avx512_bf16, expected):
    import torch

    from membudget.engine.load import default_dtype

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert default_dtype("cpu") == expected
    assert default_dtype("cuda") == default_dtype("cuda:1") == "bfloat16"


def test_a_random_model_runs_a_sweep_at_its_shapes_without_weights(tmp_path, tiny_dir):
    """`random:NAME`: NAME's shapes and accounting, random weights and a word tokenizer, nothing read
    but NAME's config; every row is written as for a real model."""
    from membudget.engine.load import WordTokenizer, load_model

    name = f"random:{tiny_dir}"
    assert resolve_spec(name) == dataclasses.replace(resolve_spec(str(tiny_dir)), name=name)
    loaded = load_model(name, "float32", "cpu", weights=8)
    assert isinstance(loaded.tokenizer, WordTokenizer) and loaded.spec.name == name
    assert loaded.tokenizer.encode("two words") == loaded.tokenizer.encode("two  words") != []
    file = write_sweep(tmp_path / "s.toml", name)
    rows = run_sweep(file, tmp_path / "r.db")
    assert len(rows) == 5 * 3 * 2 and {r[1] for r in rows} == {name}
