"""Feasible scenarios: every (weights x KV policy x token budget x samples) of some models that fits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product

from .memory import WEIGHT_BITS, KVPolicy, MemoryBreakdown, Scenario, breakdown, weight_bytes
from .spec import ModelSpec

# The study's grid (arXiv 2510.10964): budgets 2k-30k in steps of 4k, G up to 16, R-KV budgets 2k/4k/8k.
DEFAULT_KV = ("full", "quant:8", "quant:4", "quant:2", "streaming:4096", "rkv:2048", "rkv:4096", "rkv:8192")
DEFAULT_TOKENS = (2000, 6000, 10000, 14000, 18000, 22000, 26000, 30000)
DEFAULT_SAMPLES = (1, 4, 8, 16)


class BudgetError(ValueError):
    """The memory budget cannot hold even the weights of any requested model."""


@dataclass(frozen=True, slots=True)
class Grid:
    weights: Sequence[int] = WEIGHT_BITS
    kv: Sequence[str] = DEFAULT_KV
    tokens: Sequence[int] = DEFAULT_TOKENS
    samples: Sequence[int] = DEFAULT_SAMPLES
    prompt_tokens: int = 0
    convention: str = "all"

    def __post_init__(self) -> None:
        """Check every axis up front, so a bad value fails even when nothing would fit."""
        for name in ("weights", "kv", "tokens", "samples"):
            if not getattr(self, name):
                raise ValueError(f"the list of {name} to try is empty")
        for kv in self.kv:
            KVPolicy.parse(kv)
        for bits, tokens, samples in product(self.weights, self.tokens, self.samples):
            Scenario("check", bits, "full", tokens, samples, self.prompt_tokens, self.convention)

    def scenarios(self, model: str) -> Iterable[Scenario]:
        """All scenarios of one model; eviction budgets >= T are skipped (they equal `full`)."""
        for bits in self.weights:
            for kv in self.kv:
                policy = KVPolicy.parse(kv)
                for tokens in self.tokens:
                    if policy.eviction and policy.budget >= tokens:
                        continue
                    for samples in self.samples:
                        yield Scenario(
                            model, bits, str(policy), tokens, samples, self.prompt_tokens, self.convention
                        )


def within_context(spec: ModelSpec, scenario: Scenario) -> bool:
    """Whether the prompt and T generated tokens stay inside the model's positions (when it states them)."""
    return not spec.context or scenario.prompt_tokens + scenario.tokens <= spec.context


def fit(specs: Sequence[ModelSpec], memory_bytes: int, grid: Grid = Grid()) -> list[MemoryBreakdown]:
    """Breakdowns of all scenarios within `memory_bytes` (and the model's context), sorted by total
    bytes (then model, fields).

    Raises BudgetError when the budget is below the weights of every model at the lowest precision.
    """
    lightest = min((weight_bytes(spec, min(grid.weights)), spec.name) for spec in specs)
    if memory_bytes < lightest[0]:
        raise BudgetError(
            f"{memory_bytes / 2**30:.2f} GiB cannot hold even the weights of {lightest[1]} at "
            f"{min(grid.weights)} bits ({lightest[0] / 2**30:.2f} GiB); "
            "raise --memory or pick a smaller model"
        )
    rows = [
        b
        for spec in specs
        for s in grid.scenarios(spec.name)
        if within_context(spec, s) and (b := breakdown(spec, s)).total_bytes <= memory_bytes
    ]
    rows.sort(key=lambda b: (b.total_bytes, b.model, b.weights, b.kv, b.tokens, b.samples))
    return rows
