"""Math tasks (AIME24/25, MATH-500): the last \\boxed{} after the thinking (or, without one, a clearly
stated final answer such as "The final answer is 204."), graded with math-verify.

Integer-answer tasks (AIME, arithmetic) accept only a number the answer states ("070" == "70",
"1,000" == "1000"); an expression ("14 + 22") or a list ("1,5") is wrong whatever it evaluates to.
Other answers go to math-verify, called as `verify(gold, answer)`, gold first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from types import MappingProxyType

from . import prompts
from .base import Problem, Task, row_id
from .extract import last_boxed, stated_answer
from .loading import DataError, field

_WRAPPERS = re.compile(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}|\\textbf\{([^{}]*)\}")


def as_integer(text: str) -> int | None:
    """The integer a short answer states, else None. Accepted: `070`, `1{,}000`, `1,000`, `$42$`,
    `42^\\circ`, `42.0`, `42 \\text{ apples}`, `n = 42`. Refused: a comma list (`1,5`), an
    expression (`14 + 22`), anything else."""
    t = _WRAPPERS.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    t = t.replace("\\!", "").replace("\\,", ",").replace("{,}", ",").replace("\\$", "").replace("$", "")
    t = re.sub(r"\^\s*\{?\\circ\}?|\\%|%", "", t).strip().rstrip(".").strip()
    match = _INTEGER.fullmatch(t)
    return int(match.group(1).replace(",", "")) if match else None


_INTEGER = re.compile(
    r"(?:[a-zA-Z]\w*\s*=\s*)?"  # a variable it names: "n = 42"
    r"([+-]?(?:\d{1,3}(?:,\d{3})+|\d+))(?:\.0+)?"  # thousands separated by commas, never a list
    r"(?:\s*[a-zA-Z][a-zA-Z ]*)?"  # a unit: "42 apples"
)


def math_equal(gold: str, answer: str) -> bool:
    """math-verify's judgement of `answer` against `gold` (both LaTeX without delimiters)."""
    from math_verify import parse, verify

    # math-verify's timeouts use signals, which only work in the main thread
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
    answer_parsed = parse(f"${answer}$", parsing_timeout=timeout)
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))


class MathTask(Task):
    kind = "math"
    template = prompts.MATH
    answer_prefix = prompts.MATH_ANSWER_PREFIX
    columns = MappingProxyType({"question": "problem", "answer": "answer"})
    integer_answers = False

    def _problem(self, row: dict, number: int, source: str, columns: Mapping[str, str]) -> Problem:
        question = field(row, columns["question"], source, number)
        answer = field(row, columns["answer"], source, number)
        if self.integer_answers and as_integer(answer) is None:
            raise DataError(f"{source}: row {number}: {self.name} answers are integers, got {answer!r}")
        meta = {k: row[k] for k in ("subject", "level") if k in row}
        return Problem(row_id(row, number, self.name), question, answer, meta=MappingProxyType(meta))

    def _extract(self, answer_text: str) -> str | None:
        boxed = last_boxed(answer_text)
        return boxed if boxed is not None else stated_answer(answer_text)

    def grade(self, extracted: str | None, gold: str) -> bool:
        if extracted is None or not extracted.strip():
            return False
        if self.integer_answers:  # only a stated number counts: never an expression or a list
            value = as_integer(extracted)
            return value is not None and value == as_integer(gold)
        return math_equal(gold, extracted)


class AIME25(MathTask):
    name = "aime25"
    hub_id = "math-ai/aime25"
    integer_answers = True


class AIME24(MathTask):
    name = "aime24"
    hub_id = "HuggingFaceH4/aime_2024"
    hub_split = "train"
    integer_answers = True


class Math500(MathTask):
    name = "math500"
    bundled = "math500.jsonl"  # MIT-licensed: shipped, runs offline
    hub_id = "HuggingFaceH4/MATH-500"
