"""Scores over a table of graded samples: pass@1, Maj@k (exact expectation), bootstrap intervals.

Input per problem: the n samples' vote keys (see `vote_key`) and correctness. Maj@k is the exact
expectation, over all C(n, k) subsets of the n samples, of "the majority answer of the subset is
correct", computed by counting (no enumeration, no sampling error).

Tie rule: answers that tie for the most votes split the win evenly -- a subset whose top answers
are {correct, wrong} with equal counts scores 1/2 (the expectation of a uniformly random tie-break).
Samples without an extracted answer abstain: they take a place in the subset but cast no vote; a
subset of only abstentions scores 0.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import comb

CORRECT = "\x00correct"  # the vote key shared by every answer graded correct


def vote_key(extracted: str | None, correct: bool) -> str | None:
    """What a sample votes for: all correct answers are one answer; wrong ones by normalized text."""
    if correct:
        return CORRECT
    if extracted is None or not extracted.strip():
        return None
    return "".join(extracted.split())


def maj_at_k(votes: Sequence[str | None], k: int) -> float:
    """Exact expected Maj@k of one problem from its n >= k samples' vote keys (None = abstain)."""
    n = len(votes)
    if not 1 <= k <= n:
        raise ValueError(f"maj@{k} needs 1 <= k <= n samples (n = {n})")
    counts = Counter(votes)
    correct = counts.pop(CORRECT, 0)
    abstain = counts.pop(None, 0)
    others = list(counts.values())
    if correct == 0:
        return 0.0
    total = Fraction(0)
    for x in range(1, min(correct, k) + 1):  # x = correct votes in the subset
        # ways[j][t]: ways to pick j samples from the wrong answers, each answer < = x picks,
        # t of them with exactly x (a tie with the correct answer)
        ways = {(0, 0): 1}
        for c in others:
            nxt: dict[tuple[int, int], int] = {}
            for (j, t), w in ways.items():
                for y in range(min(c, x, k - x - j) + 1):
                    key = (j + y, t + (y == x))
                    nxt[key] = nxt.get(key, 0) + w * comb(c, y)
            ways = nxt
        for (j, t), w in ways.items():
            rest = k - x - j  # filled by abstentions
            if rest <= abstain:
                total += Fraction(comb(correct, x) * w * comb(abstain, rest), t + 1)
    return float(total / comb(n, k))


@dataclass(frozen=True, slots=True)
class Score:
    """A metric over problems with its 95 % bootstrap interval, n samples each, and the problem count."""

    metric: str
    value: float
    low: float
    high: float
    n_samples: int
    n_problems: int

    def __str__(self) -> str:
        return (
            f"{self.metric} = {100 * self.value:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}] "
            f"(95 % CI, {self.n_problems} problems, n = {self.n_samples})"
        )


def bootstrap_ci(
    per_problem: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over problems (problems resampled with replacement)."""
    m = len(per_problem)
    if m == 0:
        raise ValueError("no problems to score")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(per_problem, k=m)) / m for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * (resamples - 1))], means[int(round((1 - tail) * (resamples - 1)))]


def score(table: Sequence[Sequence[tuple[str | None, bool]]], k: int = 1, seed: int = 0) -> Score:
    """pass@1 (k = 1) or Maj@k over problems. `table[p]` lists (extracted answer, correct) per sample.

    Every problem must have the same number of samples n >= k.
    """
    if not table:
        raise ValueError("no problems to score")
    sizes = {len(samples) for samples in table}
    if len(sizes) != 1:
        raise ValueError(f"problems have different sample counts {sorted(sizes)}; score equal n only")
    n = sizes.pop()
    if k == 1:
        per_problem = [sum(ok for _, ok in samples) / n for samples in table]
        metric = "pass@1"
    else:
        per_problem = [maj_at_k([vote_key(a, ok) for a, ok in samples], k) for samples in table]
        metric = f"maj@{k}"
    low, high = bootstrap_ci(per_problem, seed=seed)
    return Score(metric, sum(per_problem) / len(per_problem), low, high, n, len(table))
