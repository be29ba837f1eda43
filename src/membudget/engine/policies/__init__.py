"""KV eviction policies, one per file; `make_policy` builds one from its name and budget."""

from __future__ import annotations

from .base import EvictionPolicy
from .h2o import H2O
from .rkv import RKV
from .snapkv import SnapKV
from .streaming import Streaming

POLICIES: dict[str, type[EvictionPolicy]] = {"streaming": Streaming, "rkv": RKV, "h2o": H2O, "snapkv": SnapKV}


def make_policy(name: str, budget: int) -> EvictionPolicy:
    return POLICIES[name](budget=budget)
