import json
import sys

import pytest

from membudget.cli import main


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["membudget", *args])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_memory_json(monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch,
        capsys,
        "memory",
        "--model",
        "Qwen/Qwen3-8B",
        "--weights",
        "8",
        "--kv",
        "full",
        "--tokens",
        "30000",
        "--samples",
        "4",
        "--json",
    )
    assert code == 0
    row = json.loads(out)
    assert row["kv_bytes"] == 4 * 30000 * 147_456
    assert row["total_bytes"] == row["weights_bytes"] + row["kv_bytes"] + row["workspace_bytes"]
    for key in ("weights_gib", "kv_gib", "workspace_gib", "total_gib"):
        assert key in row


def test_memory_table_states_conventions(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "memory", "-m", "qwen3-0.6b", "--convention", "study")
    assert code == 0
    assert "3.204" in out and "GiB = 2^30 bytes" in out and "convention 'study'" in out


def test_fit_json(monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch,
        capsys,
        "fit",
        "--memory",
        "24GiB",
        "--model",
        "Qwen/Qwen3-4B",
        "--model",
        "Qwen/Qwen3-8B",
        "--json",
    )
    rows = json.loads(out)
    assert code == 0 and rows
    assert {"model", "weights", "kv", "tokens", "samples", "total_bytes"} <= set(rows[0])
    assert max(r["total_bytes"] for r in rows) <= 24 * 2**30
    assert {r["model"] for r in rows} == {"Qwen/Qwen3-4B", "Qwen/Qwen3-8B"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["memory", "-m", "no-such-model"], "unknown model"),
        (["memory", "-m", "qwen3-8b", "--kv", "rkv:x"], "malformed KV policy"),
        (["memory", "-m", "qwen3-8b", "--tokens", "-5"], "positive token budget"),
        (["memory", "-m", "qwen3-8b", "--weights", "3"], "weights must be one of"),
        (["fit", "--memory", "1GiB", "-m", "qwen3-8b"], "cannot hold even the weights"),
        (["fit", "--memory", "lots", "-m", "qwen3-8b"], "cannot read the memory size"),
        (["fit", "--memory", "24GiB", "-m", "qwen3-8b", "--tokens", "2k"], "whole numbers"),
        (["memory", "--bogus"], "No such option"),
    ],
)
def test_bad_input_exits_2_with_one_line(monkeypatch, capsys, args, message):
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert out == ""


def test_generate_json_with_budget_checkpoints(monkeypatch, capsys, smollm2_fp32):
    code, out, err = run(
        monkeypatch,
        capsys,
        "generate",
        "--model",
        "smollm2",
        "--prompt",
        "What is 2+2?",
        "--budgets",
        "6,12",
        "--samples",
        "2",
        "--answer-tokens",
        "4",
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert len(result["samples"]) == 2
    for sample in result["samples"]:
        assert set(sample) >= {"text", "token_ids", "finish_reason", "answers"}
        assert set(sample["answers"]) <= {"6", "12"}
    assert result["accounted_bytes"] > 0 and result["timings"]["decode_steps"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "-m", "smollm2", "--prompt", "hi", "--budgets", "9,3"], "increasing"),
        (["generate", "-m", "smollm2", "--prompt", "hi", "--temperature", "0"], "temperature"),
        (["bench", "-m", "qwen3-0.6b"], "needs a CUDA GPU"),
        (["bench", "-m", "qwen3-0.6b", "--kv", "full,rkv:64"], "leaves out the compactions"),
        (["bench", "-m", "qwen3-0.6b", "--kv", "quant:3"], "quant"),
        (["bench", "-m", "qwen3-0.6b", "--weights", "16,3"], "--weights must be among 16,8,4, got 3"),
        (["bench", "-m", "qwen3-0.6b", "--batch", "0"], "must be positive"),
    ],
)
def test_engine_commands_reject_bad_input(monkeypatch, capsys, args, message):
    import torch

    if torch.cuda.is_available():
        pytest.skip("these checks are for machines without a GPU")
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2 and message in err
