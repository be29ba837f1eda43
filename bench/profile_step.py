"""Where does a decode step's time go? torch.profiler over eager steps (no graph), top kernels by GPU time.

Run on the device:  PYTHONPATH=src python3 bench/profile_step.py [MODEL] [BATCH] [WEIGHT BITS]
"""

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from membudget.engine.model import Decoder
from membudget.engine.sampling import SamplingParams, row_seeds
from membudget.engine.step import DecodeStep
from membudget.spec import resolve_spec

name = sys.argv[1] if len(sys.argv) > 1 else "Qwen/Qwen3-0.6B"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
bits = int(sys.argv[3]) if len(sys.argv) > 3 else 16
spec = resolve_spec(name)
model = Decoder.random(spec, torch.bfloat16, "cuda")
model.quantize_(bits)
cache = model.new_cache(batch, 8192 + 64)
for t in cache.store.k + cache.store.v:
    t.normal_()
step = DecodeStep(model, cache, SamplingParams(), row_seeds(0, batch), use_graph=False)
ids, pos = torch.randint(0, 1000, (batch,)), torch.full((batch,), 8191)
for _ in range(5):
    step.run(ids, pos)
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(10):
        step.run(ids, pos)
    torch.cuda.synchronize()
print(f"{name} batch {batch} weights {bits}: 10 steps, top kernels")
m = torch.cuda.memory_stats()
print(
    f"allocated {torch.cuda.memory_allocated() / 2**20:.0f} MiB, "
    f"peak {m['allocated_bytes.all.peak'] / 2**20:.0f} MiB, "
    f"weights {model.weight_bytes / 2**20:.0f} MiB, cache {cache.nbytes / 2**20:.0f} MiB"
)
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))
