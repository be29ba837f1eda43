"""Sweeps on a Ray cluster: one task per (model, weights) group, rows streamed back to the driver.

Each group is a Ray task asking for one GPU (or one CPU on a cluster without GPUs) that yields each
problem's rows (and each generation's record) as soon as they exist; the driver alone writes them to the store, in arrival order,
so a killed driver resumes exactly like a local sweep. `address=None` starts a local cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import SweepConfig
from .runner import Group, run_group, store_item
from .store import SampleRow, Store


def _group_rows(config: SweepConfig, group: Group):
    yield from run_group(config, group)


def run_ray(
    config: SweepConfig,
    groups: list[Group],
    store: Store,
    address: str | None = None,
    on_problem: Callable[[list[SampleRow]], None] = lambda rows: None,
    num_cpus: int | None = None,
) -> int:
    """Run the groups as Ray tasks; returns the number of new rows."""
    import ray

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_returns="streaming", num_gpus=gpus, num_cpus=0 if gpus else 1)(_group_rows)
        streams = [task.remote(config, group) for group in groups]
        written = 0
        for stream in streams:
            for ref in stream:
                written += store_item(store, ray.get(ref), on_problem)
        return written
    finally:
        if started:
            ray.shutdown()
