"""Math tasks (AIME24/25, MATH-500): last \\boxed{} after the thinking, graded with math-verify.

AIME answers are integers 0-999 and compare as integers ("070" == "70"); anything that is not a plain
integer goes to math-verify. math-verify is called as `verify(gold, answer)`, gold first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from types import MappingProxyType

from . import prompts
from .base import Problem, Task, row_id
from .extract import last_boxed
from .loading import DataError, field

_WRAPPERS = re.compile(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}|\\textbf\{([^{}]*)\}")


def as_integer(text: str) -> int | None:
    """The integer a short answer states (`070`, `1{,}000`, `$42$`, `42^\\circ`), else None."""
    t = _WRAPPERS.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    t = t.replace("\\!", "").replace("\\,", "").replace("{,}", "").replace("$", "")
    t = re.sub(r"\^\s*\{?\\circ\}?|\\%|%", "", t).replace(",", "").strip().rstrip(".")
    return int(t) if re.fullmatch(r"[+-]?\d+", t) else None


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
        return last_boxed(answer_text)

    def grade(self, extracted: str | None, gold: str) -> bool:
        if extracted is None or not extracted.strip():
            return False
        if self.integer_answers:
            value = as_integer(extracted)
            if value is not None:
                return value == as_integer(gold)
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
    hub_id = "HuggingFaceH4/MATH-500"
