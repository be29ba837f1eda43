"""How fast can one warp per program stream a weight matrix when each load instruction covers a run of
`span` contiguous bytes in each of several rows? The one-row weight kernels read a 4-bit row in
64-byte runs (one group of 128 codes, engine/kernels/gemv_tc.py); this asks whether that run length
alone caps the bandwidth, with no arithmetic in the way (each program only xor-reduces what it reads).

Run on the device:  PYTHONPATH=src python3 bench/load_pattern.py [--out DIR]
Writes load-pattern.json: GB/s per (span, loads in flight per lane, row length) and torch's copy
bandwidth for comparison.
"""

import argparse
import itertools
import os

import torch
import triton
import triton.language as tl

from membudget.timing import copy_bandwidth, save_result


@triton.jit
def _read_kernel(src, out, ROW_WORDS, SPAN_WORDS: tl.constexpr, ROWS: tl.constexpr, AT_ONCE: tl.constexpr):
    """Program (i, j) reads rows i * ROWS .. + ROWS, words j * AT_ONCE * SPAN_WORDS .. of each, as
    AT_ONCE loads of [ROWS, SPAN_WORDS], all issued before any is used; writes one xor per program."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_n * ROWS + tl.arange(0, ROWS)[:, None]
    base = (
        src
        + rows.to(tl.int64) * ROW_WORDS
        + pid_s * (AT_ONCE * SPAN_WORDS)
        + tl.arange(0, SPAN_WORDS)[None, :]
    )
    acc = tl.load(base)
    for u in tl.static_range(1, AT_ONCE):
        acc = acc ^ tl.load(base + u * SPAN_WORDS)
    total = tl.reduce(acc, None, _xor)
    tl.store(out + pid_n * tl.num_programs(1) + pid_s, total)


@triton.jit
def _xor(a, b):
    return a ^ b


def gbps(words: torch.Tensor, span: int, at_once: int, copies: list[torch.Tensor]) -> float:
    """GB/s of reading every copy once per call (cycled through, so that nothing stays in L2)."""
    n, row_words = words.shape
    span_words = span // 4
    rows = 2048 // span  # 2 KB per load instruction and warp, as a 4-bit kernel with 2 tiles reads
    grid = (n // rows, row_words // (span_words * at_once))
    out = torch.empty(grid[0] * grid[1], dtype=torch.int32, device=words.device)

    def call(w):
        _read_kernel[grid](w, out, row_words, SPAN_WORDS=span_words, ROWS=rows, AT_ONCE=at_once, num_warps=1)

    for w in copies:
        call(w)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 20
    start.record()
    for _ in range(reps):
        for w in copies:
            call(w)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / (reps * len(copies))
    return words.numel() * 4 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    result = {"device": torch.cuda.get_device_name(), "copy_gbps": copy_bandwidth(torch.device("cuda")) / 1e9}
    rows = []
    for row_bytes in (2048, 6144):  # Qwen3-8B 4-bit: K = 4096 (qkv, o, gate_up), 12288 (down)
        n = 52_297_728 // row_bytes // 64 * 64  # about gate_up's 4-bit bytes
        copies = [
            torch.randint(-(2**31), 2**31 - 1, (n, row_bytes // 4), dtype=torch.int32, device="cuda")
            for _ in range(4)
        ]
        for span, at_once in itertools.product((64, 128, 256, 512), (1, 2, 4)):
            if row_bytes % (span * at_once):
                continue
            row = {"row_bytes": row_bytes, "span": span, "at_once": at_once}
            row["gbps"] = gbps(copies[0], span, at_once, copies)
            rows.append(row)
            print(row, flush=True)
        del copies
    result["rows"] = rows
    save_result(args.out, "load-pattern", result)
    print(f"copy bandwidth {result['copy_gbps']:.0f} GB/s")


if __name__ == "__main__":
    main()
