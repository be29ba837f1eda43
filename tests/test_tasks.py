import csv
import json
from pathlib import Path

import pytest

from membudget.tasks import DataError, get_task
from membudget.tasks.arithmetic import generate
from membudget.tasks.extract import last_boxed, option_letter

from .conftest import write_aime


def realistic(answer: str, decoy: str) -> str:
    return (
        f"<think>\nLet me work through this. Maybe the answer is \\boxed{{{decoy}}}? No, let me "
        f"recheck the case analysis... yes.\n</think>\n\nAfter simplifying, the result is\n\n"
        f"**Final Answer**\n\\[\\boxed{{{answer}}}\\]\n"
    )


def test_aime25_answers_round_trip(tmp_path):
    task = get_task("aime25")
    problems = task.problems(data=write_aime(tmp_path / "aime.jsonl", 30))
    assert len(problems) == 30
    for p in problems:
        gold = int(p.answer)
        assert task.is_correct(realistic(str(gold), str(gold + 1)), p.answer), p.id
        assert not task.is_correct(realistic(str(gold + 1), str(gold)), p.answer), p.id
        assert not task.is_correct(realistic(str(gold - 1), str(gold)), p.answer), p.id


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>so \\boxed{70}</think>\nI am not sure.", "70", False),  # answer only inside the thinking
        ("<think>so it is \\boxed{70} and I keep going", "70", False),  # unfinished thinking
        ("<think>first \\boxed{5}</think> \\boxed{69} then, correcting: \\boxed{70}", "70", True),  # last box
        ("<think>x</think> \\boxed{70} is wrong; it is \\boxed{71}", "70", False),
        ("</think>The answer is \\boxed{070}.", "70", True),  # AIME integers, leading zero
        ("</think>\\boxed{70^\\circ}", "70", True),
        ("</think>\\boxed{1{,}000} apples in all", "1000", True),  # trailing text after the box
        ("</think>\\boxed{\\text{70}}", "70", True),
        ("</think>\\boxed 70", "70", True),
        ("</think>**Final Answer**\n\\boxed{70", "70", True),  # cut off by the answer-token cap
        # a list is not a number, an expression is not an answer; thousands separators are fine
        ("</think>\\boxed{1,5}", "15", False),
        ("</think>\\boxed{1, 5}", "15", False),
        ("</think>\\boxed{1,000}", "1000", True),
        ("</think>\\boxed{1\\,000}", "1000", True),
        ("</think>\\boxed{35 + 35}", "70", False),
        ("</think>\\boxed{7 \\cdot 10}", "70", False),
        ("</think>\\boxed{\\frac{140}{2}}", "70", False),
        ("</think>\\boxed{70.0}", "70", True),
        ("</think>\\boxed{n = 70}", "70", True),
        ("</think>\\boxed{70 \\text{ ways}}", "70", True),
        ("</think>\\boxed{70 or 71}", "70", False),
        # no box: a clearly stated final answer after the thinking counts
        ("<think>long</think>\n\nThe answer is 42.", "42", True),
        ("<think>long</think>\n\nThe final answer is 204.", "204", True),
        ("<think>long</think>\n\nAnswer: $42$", "42", True),
        ("<think>long</think>\n\n**Final Answer**\n42", "42", True),
        ("<think>long</think>\n\nThe answer is 42, since 6 times 7 is 42.", "42", True),
        ("<think>The answer is 42.</think>\n\nI could not finish.", "42", False),  # stated while thinking
        ("<think>long</think>\n\nThe answer is 41.", "42", False),
    ],
)
def test_aime_tricky_outputs(text, gold, expected):
    assert get_task("aime25").is_correct(text, gold) is expected


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("</think>\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True),
        ("</think>\\boxed{\\frac12}", "\\frac{1}{2}", True),
        ("</think>\\boxed{0.5}", "\\frac{1}{2}", True),
        ("</think>\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
        ("</think>\\boxed{10\\text{ cm}}", "10", True),  # units
        ("</think>\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("</think>\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("</think>\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", True),
        ("</think>\\boxed{x^2+2x+1}", "(x+1)^2", True),
        ("</think>The answer is 7.", "7", True),  # no box: the stated final answer
        ("</think>The final answer is $\\frac{1}{2}$.", "\\frac{1}{2}", True),
        ("</think>**Final Answer**\n\\(\\frac{1}{2}\\)", "\\frac{1}{2}", True),
        ("</think>The answer is 8.", "7", False),
        ("</think>I think it might be around 7 or so", "7", False),  # nothing stated
        ("No thinking tags: \\boxed{7}", "7", True),  # a non-thinking model's output counts whole
    ],
)
def test_math_tricky_outputs(text, gold, expected):
    assert get_task("math500").is_correct(text, gold) is expected


def test_forced_answer_counts_only_when_forced():
    text = "<think>long thinking \\boxed{3} ...\n\n**Final Answer**\n\\boxed{42}"
    task = get_task("aime25")
    assert not task.is_correct(text, "42")
    assert task.is_correct(text, "42", forced=True)
    assert not task.is_correct(text, "3", forced=True)


def test_last_boxed_balances_braces():
    assert last_boxed("\\boxed{\\frac{a}{b}} and \\boxed{\\sqrt{\\frac{1}{2}}}") == "\\sqrt{\\frac{1}{2}}"
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    "text, letter",
    [
        ("\\boxed{C}", "C"),
        ("\\boxed{(B)}", "B"),
        ("\\boxed{\\text{D}}", "D"),
        ("Answer: C", "C"),
        ("**Answer:** B", "B"),
        ("So the answer is (C).", "C"),
        ("The correct answer is D) 4.2 eV", "D"),
        ("Options A and B fail, so C", "C"),
        ("A reasonable guess is not possible.", None),
        ("", None),
        # phrasings a careful reader accepts; letters merely mentioned are not answers
        ("A is correct.", "A"),
        ("answer: c", "C"),
        ("The answer is (b).", "B"),
        ("\\boxed{d}", "D"),
        ("Option B is the correct one.", "B"),
        ("B is incorrect, D is correct.", "D"),
        ("The correct option is (c).", "C"),
        ("I choose (d).", "D"),
        ("**C**", "C"),
        ("The answer is A.", "A"),
        ("Between A and B, the answer must be A because it fits.", "A"),
        ("A careful look at option (B) shows it fits.", None),
        ("The answer is a compound of B and D.", None),
        ("Compare (A) with (C): both ignore the spin.", None),
        ("C is incorrect.", None),
    ],
)
def test_option_letters(text, letter):
    assert option_letter(text) == letter


def write_gpqa(path: Path, count: int) -> list[dict]:
    rows = [
        {
            "Question": f"Question number {i}: which value is right?",
            "Correct Answer": f"right {i}",
            "Incorrect Answer 1": f"wrong a{i}",
            "Incorrect Answer 2": f"wrong b{i}",
            "Incorrect Answer 3": f"wrong c{i}",
        }
        for i in range(count)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_gpqa_shuffle_is_stable_and_graded_by_letter(tmp_path):
    rows = write_gpqa(tmp_path / "gpqa.csv", 200)
    task = get_task("gpqa_diamond")
    problems = task.problems(data=tmp_path / "gpqa.csv")
    again = task.problems(data=tmp_path / "gpqa.csv")
    assert [(p.choices, p.answer) for p in problems] == [(p.choices, p.answer) for p in again]
    # a subset (other rows, other order) shows each question's options in the same order
    write_gpqa(tmp_path / "one.csv", 1)
    (tmp_path / "sub.jsonl").write_text("\n".join(json.dumps(r) for r in reversed(rows[:50])))
    subset = {p.question: p for p in task.problems(data=tmp_path / "sub.jsonl")}
    for p in problems[:50]:
        assert subset[p.question].choices == p.choices and subset[p.question].answer == p.answer
    for p, row in zip(problems, rows, strict=True):
        assert p.choices["ABCD".index(p.answer)] == row["Correct Answer"]
        assert sorted(p.choices) == sorted(row[k] for k in row if k != "Question")
    letters = [p.answer for p in problems]
    assert all(letters.count(x) > 25 for x in "ABCD")  # not always the same position
    prompt = task.prompt(problems[0])
    assert "A) " in prompt and "D) " in prompt and problems[0].choices[3] in prompt
    assert task.is_correct(f"<think>hmm</think> \\boxed{{{problems[0].answer}}}", problems[0].answer)
    wrong = "ABCD"[("ABCD".index(problems[0].answer) + 1) % 4]
    assert not task.is_correct(f"</think> Answer: {wrong}", problems[0].answer)


def test_loaders_read_every_format(tmp_path):
    source = [json.loads(line) for line in write_aime(tmp_path / "src.jsonl", 5).read_text().splitlines()]
    rows = [{"problem": r["problem"], "answer": r["answer"]} for r in source]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    with (tmp_path / "a.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["problem", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    task = get_task("aime24")
    loaded = [task.problems(data=tmp_path / f"a.{ext}") for ext in ("jsonl", "json", "csv", "parquet")]
    assert all(
        [(p.question, p.answer) for p in x] == [(r["problem"], r["answer"]) for r in rows] for x in loaded
    )
    # column mapping
    (tmp_path / "b.jsonl").write_text(json.dumps({"q": "1+1?", "gold": "2"}) + "\n")
    [p] = task.problems(data=tmp_path / "b.jsonl", columns={"question": "q", "answer": "gold"})
    assert (p.question, p.answer) == ("1+1?", "2")
    assert len(get_task("math500").problems(limit=7)) == 7  # the copy shipped with the package


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"problem": "p", "answer": "1"}\n{"problem": "q", "answer": "2"}\n{oops\n',
            "a.jsonl:3: not valid JSON",
        ),
        ('{"problem": "p", "answer": "1"}\n{"problem": "q"}\n', "row 2 has no column 'answer'"),
        (
            '{"problem": "p", "answer": "1"}\n{"problem": " ", "answer": "2"}\n',
            "row 2: column 'problem' is empty",
        ),
        ('{"problem": "p", "answer": "seventy"}\n', "row 1: aime25 answers are integers"),
        ('["p", "1"]\n', "a.jsonl:1: expected a JSON object"),
    ],
)
def test_malformed_rows_are_rejected_with_row_number(tmp_path, content, message):
    (tmp_path / "a.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        get_task("aime25").problems(data=tmp_path / "a.jsonl")


def test_bad_sources(tmp_path):
    write_aime(tmp_path / "aime.jsonl", 3)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        get_task("aime25").problems(data=tmp_path / "a.txt")
    with pytest.raises(DataError, match="no such file"):
        get_task("aime25").problems(data=tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown task"):
        get_task("aime26")
    with pytest.raises(DataError, match="unknown field"):
        get_task("aime25").problems(data=tmp_path / "aime.jsonl", columns={"solution": "x"})


def test_offline_hub_says_use_data(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="local copy") as err:
        get_task("gpqa_diamond").problems()
    assert err.value.fix == "data"


def test_a_hub_task_offline_fails_within_seconds(monkeypatch):
    """No retries against an unreachable hub: HF_HUB_OFFLINE (or no route) reads the HF cache only."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # an empty cache
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="could not load math-ai/aime25"):
        get_task("aime25").problems()
    assert time.perf_counter() - t0 < 5


def test_arithmetic_is_deterministic_and_solvable():
    first, again = generate(40, seed=3), generate(40, seed=3)
    assert first == again
    assert generate(10, seed=3) == first[:10]  # problem i does not depend on the count
    assert generate(40, seed=4) != first
    assert {p.meta["level"] for p in first} == {1, 2, 3, 4}
    assert all(int(p.answer) >= 0 for p in first)
    task = get_task("arithmetic")
    assert len(task.problems()) == task.default_count
    p = first[0]
    assert task.is_correct(f"The total is \\boxed{{{p.answer}}}.", p.answer)
    assert not task.is_correct("\\boxed{14 + 22}", "36")  # the question echoed is not an answer
    assert "How many" in task.prompt(p) and "\\boxed{}" in task.prompt(p)


def test_arithmetic_answers_follow_the_story():
    """Re-derive every answer from the words of its question."""
    import re

    for p in generate(80, seed=1):
        value = int(re.search(r"has (\d+) ", p.question).group(1))
        for sentence in p.question.split(". ")[1:]:
            if m := re.search(r"gets (\d+) more|finds (\d+) more", sentence):
                value += int(m.group(1) or m.group(2))
            elif m := re.search(r"gives away (\d+)", sentence):
                value -= int(m.group(1))
            elif m := re.search(r"becomes (\d+) times", sentence):
                value *= int(m.group(1))
            elif m := re.search(r"with (\d+) friend", sentence):
                assert value % (int(m.group(1)) + 1) == 0
                value //= int(m.group(1)) + 1
        assert value == int(p.answer), p.question


def test_prompts_go_through_the_chat_template(smollm2_tokenizer):
    from membudget.tasks import chat_prompt

    task = get_task("math500")
    problem = task.problems(limit=1)[0]
    text = chat_prompt(smollm2_tokenizer, task.prompt(problem))
    assert problem.question in text and "\\boxed{}" in text
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
