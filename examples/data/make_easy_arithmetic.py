"""Writes easy-arithmetic.jsonl: the demo's 24 one-step problems (sums of two numbers, as a bare sum or
a one-sentence story). SmolLM2-135M gets roughly one in five right, which leaves room to see weight
and KV precision help or hurt; the harder built-in `arithmetic` levels are near zero for it.

    python examples/data/make_easy_arithmetic.py   # deterministic: rewrites the same file
"""

import json
import random
from pathlib import Path

NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Finn")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells")

rng = random.Random(7)
rows = []
for i in range(24):
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    if i % 2:
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        question = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
    else:
        question = f"What is {a} + {b}?"
    rows.append({"id": f"easy-{i}", "problem": question, "answer": str(a + b)})
path = Path(__file__).with_name("easy-arithmetic.jsonl")
path.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"{len(rows)} problems -> {path}")
