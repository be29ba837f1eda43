"""A synthetic arithmetic word-problem set: deterministic from a seed, integer answers, levels 1-4.

Level L chains L + 1 operations (add, take away, multiply, share equally) on small numbers, so a
135M-parameter model solves some level-1 problems and few level-4 ones: an offline task with real
signal. Every answer is a non-negative integer; sharing always divides evenly.
"""

from __future__ import annotations

import random
from types import MappingProxyType

from .base import Problem
from .loading import DataError
from .math import MathTask

NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jamal", "Kira", "Leo")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "pencils", "shells", "cards")
LEVELS = (1, 2, 3, 4)


def make_problem(rng: random.Random, level: int) -> tuple[str, int]:
    """(question, answer) with `level + 1` operations."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, 9 + 6 * level)
    sentences = [f"{name} has {value} {item}."]
    for _ in range(level):
        op = rng.choice(("add", "sub", "mul", "div"))
        if op == "mul" and value <= 60:
            factor = rng.randint(2, 4)
            sentences.append(f"Then the number of {item} {name} has becomes {factor} times as large.")
            value *= factor
        elif op == "div" and value >= 4 and any(value % d == 0 for d in (2, 3, 4)):
            d = rng.choice([d for d in (2, 3, 4) if value % d == 0])
            sentences.append(
                f"Then {name} shares the {item} equally with {d - 1} friend"
                f"{'s' if d > 2 else ''} and keeps one share."
            )
            value //= d
        elif op == "sub" and value > 3:
            k = rng.randint(2, value - 1)
            sentences.append(f"Then {name} gives away {k} {item}.")
            value -= k
        else:
            k = rng.randint(2, 5 + 5 * level)
            sentences.append(f"Then {name} gets {k} more {item}.")
            value += k
    k = rng.randint(2, 9)
    sentences.append(f"Finally {name} finds {k} more {item}.")
    value += k
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), value


def generate(count: int, seed: int = 0) -> list[Problem]:
    """`count` problems cycling through the levels; the same (count, seed) gives the same problems,
    and problem i does not depend on count."""
    out = []
    for i in range(count):
        level = LEVELS[i % len(LEVELS)]
        rng = random.Random(f"arithmetic-{seed}-{i}")
        question, answer = make_problem(rng, level)
        out.append(
            Problem(f"arith-{seed}-{i}", question, str(answer), meta=MappingProxyType({"level": level}))
        )
    return out


class Arithmetic(MathTask):
    name = "arithmetic"
    integer_answers = True
    default_count = 60

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def problems(self, data=None, limit=None, columns=None) -> list[Problem]:
        if data is not None:
            return super().problems(data, limit, columns)
        if limit is not None and limit <= 0:
            raise DataError(f"limit must be positive, not {limit}")
        return generate(limit or self.default_count, self.seed)
