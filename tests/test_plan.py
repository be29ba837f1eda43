"""The planner: never over budget, the study's orderings as a prior, measured results first."""

import json

import pytest

from membudget.memory import GIB, parse_size
from membudget.plan import family_models, plan
from membudget.prior import prior_score
from membudget.spec import resolve_spec

from .conftest import fake_store

QWEN3 = family_models("qwen3")


def score(model, bits, tokens, kv="full", samples=1, kind="math"):
    return prior_score(resolve_spec(model), bits, kv, tokens, samples, kind)


def test_prior_reproduces_the_study_orderings():
    # finding 1: below 8-bit 4B, memory goes to weights rather than to a longer budget
    assert score("qwen3-1.7b", 8, 6000) > score("qwen3-0.6b", 8, 18000)
    assert score("qwen3-4b", 4, 10000) > score("qwen3-1.7b", 8, 18000)
    # finding 2: on AIME25 8B 8-bit beats 14B 4-bit (about the same weight memory)
    assert score("qwen3-8b", 8, 10000) > score("qwen3-14b", 4, 10000)
    # finding 2: for knowledge, 4-bit costs little; for math it costs a lot
    drop_math = score("qwen3-14b", 8, 10000) - score("qwen3-14b", 4, 10000)
    drop_knowledge = score("qwen3-14b", 8, 10000, kind="knowledge") - score(
        "qwen3-14b", 4, 10000, kind="knowledge"
    )
    assert drop_math > 5 * drop_knowledge > 0
    # finding 3: parallel samples pay only above the threshold
    assert score("qwen3-0.6b", 16, 10000, samples=8) < score("qwen3-0.6b", 16, 10000)
    assert score("qwen3-8b", 16, 10000, samples=8) > score("qwen3-8b", 16, 10000)
    # finding 5: 8-bit KV is near-free for large models, 4-bit drops, 2-bit worse
    big = "qwen3-32b"
    assert score(big, 16, 20000) - score(big, 16, 20000, "quant:8") < 1
    assert score(big, 16, 20000, "quant:4") > score(big, 16, 20000, "quant:2")


@pytest.mark.parametrize("memory", ["3GiB", "8GiB", "24GiB", "80GiB"])
@pytest.mark.parametrize("kind", ["math", "knowledge"])
def test_plan_never_exceeds_the_budget(memory, kind):
    rows = plan(parse_size(memory), kind, QWEN3, top=50)
    assert len(rows) == 50
    assert all(r.total_bytes <= parse_size(memory) for r in rows)
    assert all(r.source == "study-prior" for r in rows)
    assert [r.prior for r in rows] == sorted((r.prior for r in rows), reverse=True)
    assert all(r.accuracy is None for r in rows)


def test_plan_prefers_4bit_for_knowledge_and_not_for_math():
    assert plan(24 * GIB, "knowledge", QWEN3)[0].weights == 4
    assert plan(24 * GIB, "math", QWEN3)[0].weights >= 8


def test_plan_ranks_measured_results_first_and_interpolates_inside_the_range(tmp_path):
    db = fake_store(
        tmp_path / "r.db",
        {
            ("Qwen/Qwen3-1.7B", 16, "full", 2000): 0.3,
            ("Qwen/Qwen3-1.7B", 16, "full", 10000): 0.7,
            ("Qwen/Qwen3-0.6B", 16, "full", 10000): 0.5,
        },
    )
    rows = plan(24 * GIB, "math", QWEN3, db=db, top=10)
    measured = [r for r in rows if r.source == "measured"]
    assert (measured[0].model, measured[0].tokens) == ("Qwen/Qwen3-1.7B", 10000)
    assert measured[0].accuracy == pytest.approx(0.7) and measured[0].prior is None
    interpolated = [r for r in measured if "interpolated" in r.reason]
    assert any(r.tokens == 6000 and r.accuracy == pytest.approx(0.5) for r in interpolated)
    assert not any(r.tokens > 10000 and r.model == "Qwen/Qwen3-1.7B" and r.source == "measured" for r in rows)
    assert rows.index(measured[-1]) < len(measured)  # measured rows come first
    assert all(r.total_bytes <= 24 * GIB for r in rows)


def test_plan_cli_json_and_errors(monkeypatch, capsys, tmp_path):
    from .test_cli import run

    code, out, _ = run(monkeypatch, capsys, "plan", "--memory", "24GiB", "--task", "aime25", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 5
    assert {
        "model",
        "weights",
        "kv",
        "tokens",
        "samples",
        "total_bytes",
        "accuracy",
        "prior",
        "source",
        "reason",
    } <= set(rows[0])
    assert rows[0]["accuracy"] is None and rows[0]["prior"] > 1  # prior points, never shown as an accuracy
    code, out, _ = run(monkeypatch, capsys, "plan", "--memory", "24GiB", "--task", "knowledge")
    assert "study's published findings" in out
    for args, message in [
        (["--memory", "0.1GiB"], "cannot hold even the weights"),
        (["--memory", "24GiB", "--task", "poetry"], "unknown task"),
        (["--memory", "24GiB", "--db", str(tmp_path / "none.db")], "no such results store"),
        (["--memory", "24GiB", "--family", "gpt"], "no registry model"),
    ]:
        code, _, err = run(monkeypatch, capsys, "plan", *args)
        assert code == 2 and message in err, args


def test_an_alias_plans_like_its_full_name():
    from membudget.memory import parse_size
    from membudget.plan import plan

    rows = plan(parse_size("1GiB"), "math", ["smollm2"])
    assert rows and all(r.model == "smollm2" for r in rows)


def test_plan_stays_inside_the_context_and_says_why_nothing_measured_fits(tmp_path, monkeypatch, capsys):
    from .test_cli import run

    rows = plan(parse_size("2GiB"), "math", ["smollm2"], top=200)
    assert rows and max(r.tokens for r in rows) <= 8192  # SmolLM2's context
    db = fake_store(tmp_path / "r.db", {("Qwen/Qwen3-8B", 16, "full", 30000): 0.6})
    code, out, _ = run(
        monkeypatch, capsys, "plan", "--memory", "8GiB", "--db", str(db), "-m", "Qwen/Qwen3-8B"
    )
    assert code == 0 and "none within 8.00 GiB" in out and "needs" in out
