"""GPQA-Diamond: four options in an order seeded by a hash of the question text; graded by letter.

The data set is gated (HF `Idavidrein/gpqa`, config `gpqa_diamond`): never commit a copy of it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from types import MappingProxyType

from . import prompts
from .base import Problem, Task, row_id
from .extract import option_letter
from .loading import field

LETTERS = "ABCD"


def shuffled_options(question: str, correct: str, incorrect: list[str]) -> tuple[tuple[str, ...], str]:
    """(options in display order, correct letter). The order depends only on the question text,
    so every run, machine and subset shows the same order."""
    seed = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big")
    options = [correct, *incorrect]
    order = list(range(4))
    random.Random(seed).shuffle(order)
    shown = tuple(options[i] for i in order)
    return shown, LETTERS[order.index(0)]


class GPQADiamond(Task):
    name = "gpqa_diamond"
    kind = "knowledge"
    hub_id = "Idavidrein/gpqa"
    hub_config = "gpqa_diamond"
    hub_split = "train"
    template = prompts.MULTIPLE_CHOICE
    answer_prefix = prompts.CHOICE_ANSWER_PREFIX
    columns = MappingProxyType(
        {
            "question": "Question",
            "correct": "Correct Answer",
            "incorrect1": "Incorrect Answer 1",
            "incorrect2": "Incorrect Answer 2",
            "incorrect3": "Incorrect Answer 3",
        }
    )

    def _problem(self, row: dict, number: int, source: str, columns: Mapping[str, str]) -> Problem:
        question = field(row, columns["question"], source, number)
        correct = field(row, columns["correct"], source, number)
        incorrect = [field(row, columns[f"incorrect{i}"], source, number) for i in (1, 2, 3)]
        choices, letter = shuffled_options(question, correct, incorrect)
        return Problem(row_id(row, number, self.name), question, letter, choices)

    def prompt(self, problem: Problem) -> str:
        return self.template.format(
            question=problem.question, **dict(zip(LETTERS, problem.choices, strict=True))
        )

    def _extract(self, answer_text: str) -> str | None:
        return option_letter(answer_text)

    def grade(self, extracted: str | None, gold: str) -> bool:
        return extracted is not None and extracted == gold.strip().upper()
