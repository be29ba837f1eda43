"""Problem and Task: the interface every benchmark implements (load -> prompt -> extract -> grade)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .extract import answer_part
from .loading import DataError, read_hub, read_rows

BUNDLED = Path(__file__).parent / "data"  # benchmark files shipped with the package (see its README)


@dataclass(frozen=True, slots=True)
class Problem:
    """One benchmark item. `answer` is the gold answer text (math) or the correct letter (choices)."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()  # multiple choice: the options in the order shown (A, B, C, D)
    meta: Mapping = field(default_factory=lambda: MappingProxyType({}))


class Task:
    """Base of all tasks. Subclasses set the class attributes and override `_problem` and `grade`.

    Attributes:
        name: the task id (`get_task(name)`).
        kind: "math" or "knowledge" (what `membudget plan --task` speaks of).
        bundled: a data file shipped in membudget/tasks/data, read when no `data` is given.
        hub_id, hub_config, hub_split: where the rows come from by default otherwise.
        columns: our field name -> the source column name (override with `columns=` when loading).
        template: the prompt text (see prompts.py), filled by `prompt()`.
        answer_prefix: forced after the thinking when the token budget runs out.
    """

    name: str = ""
    kind: str = "math"
    bundled: str | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "test"
    columns: Mapping[str, str] = MappingProxyType({})
    template: str = ""
    answer_prefix: str = ""

    def problems(
        self,
        data: str | Path | None = None,
        limit: int | None = None,
        columns: Mapping[str, str] | None = None,
    ) -> list[Problem]:
        """The task's problems from `data` (a local file) or the hub; the first `limit` if given."""
        if limit is not None and limit <= 0:
            raise DataError(f"limit must be positive, not {limit}")
        mapping = {**self.columns, **(columns or {})}
        unknown = set(columns or {}) - set(self.columns)
        if unknown:
            raise DataError(
                f"unknown field(s) {', '.join(sorted(unknown))} in the column mapping; "
                f"{self.name} reads {', '.join(self.columns)}"
            )
        if data is not None:
            source, rows = str(data), read_rows(data)
        elif self.bundled is not None:
            source, rows = self.bundled, read_rows(BUNDLED / self.bundled)
        elif self.hub_id is not None:
            source, rows = self.hub_id, read_hub(self.hub_id, self.hub_config, self.hub_split)
        else:
            raise DataError(f"task {self.name} has no default source", "data")
        out: list[Problem] = []
        for number, row in rows:
            out.append(self._problem(row, number, source, mapping))
            if limit is not None and len(out) == limit:
                break
        if not out:
            raise DataError(f"{source}: no problems")
        ids = [p.id for p in out]
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: problem ids are not unique")
        return out

    def _problem(self, row: dict, number: int, source: str, columns: Mapping[str, str]) -> Problem:
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        """The user message for `problem` (render it with `chat_prompt`)."""
        return self.template.format(question=problem.question)

    def extract(self, text: str, forced: bool = False) -> str | None:
        """The answer in a model output (after the thinking), or None."""
        part = answer_part(text, forced)
        return None if part is None else self._extract(part)

    def _extract(self, answer_text: str) -> str | None:
        raise NotImplementedError

    def grade(self, extracted: str | None, gold: str) -> bool:
        """Whether an extracted answer equals the gold answer."""
        raise NotImplementedError

    def is_correct(self, text: str, gold: str, forced: bool = False) -> bool:
        return self.grade(self.extract(text, forced), gold)


def chat_prompt(tokenizer, text: str, thinking: bool = True) -> str:
    """`text` as one user turn through the model's chat template, generation prompt appended.

    `enable_thinking` reaches templates that know it (Qwen3); others ignore it.
    """
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
    )


def row_id(row: dict, number: int, prefix: str) -> str:
    """A stable problem id: the row's own id column if it has one, else prefix + row number."""
    for key in ("id", "unique_id", "ID", "Record ID"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return f"{prefix}-{number}"
