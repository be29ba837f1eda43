"""Benchmarks: `get_task(name)` -> a Task with problems(), prompt(), extract(), is_correct().

from membudget.tasks import get_task
task = get_task("aime25")
problems = task.problems(data="aime25.jsonl")        # or from the hub by default
text = task.prompt(problems[0])                      # render with chat_prompt(tokenizer, text)
task.is_correct("<think>...</think> \\boxed{70}", problems[0].answer)
"""

from __future__ import annotations

from .arithmetic import Arithmetic
from .base import Problem, Task, chat_prompt
from .gpqa import GPQADiamond
from .loading import DataError
from .math import AIME24, AIME25, Math500

TASKS: dict[str, type[Task]] = {t.name: t for t in (AIME25, AIME24, Math500, GPQADiamond, Arithmetic)}


def get_task(name: str) -> Task:
    """A fresh task object by name (aime25, aime24, math500, gpqa_diamond, arithmetic)."""
    try:
        return TASKS[name.lower()]()
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "DataError", "Problem", "Task", "chat_prompt", "get_task"]
