"""One Qwen3-8B-sized weight matrix through the engine's weight-only product, a few calls, nothing
else: a target for external profilers.

Run on the device (the kernel: _gemv_tc_kernel for one row at 4 bits, _gemv_kernel at 8):
    ncu --clock-control none -k _gemv_kernel --section WarpStateStats \
    python3 bench/one_matrix.py --bits 4 --n 24576 --k 4096 --rows 1
"""

import argparse

import torch

from membudget.engine.kernels.qlinear import qlinear
from membudget.engine.wquant import quantize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--n", type=int, default=24576)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    w = quantize(torch.randn(args.n, args.k, device="cuda") * 0.02, args.bits)
    x = torch.randn(args.rows, args.k, device="cuda", dtype=torch.bfloat16)
    for _ in range(args.calls):
        y = qlinear(x, w)
    torch.cuda.synchronize()
    print(f"{args.bits}-bit {args.n}x{args.k}, {args.rows} row(s): |y| = {y.float().norm():.3f}")


if __name__ == "__main__":
    main()
