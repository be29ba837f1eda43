"""The engine's one entry point for a matrix product with a weight: `linear`, for 16-bit and
quantized (engine/wquant.py) weights, which picks the kernel by this rule:

  CUDA, quantized weight (8-bit, or 4-bit with an even input size) -> kernels/qlinear.py `qlinear`:
      one bf16/fp16 row of 4-bit weights with N % 16 == 0, K % 128 == 0 -> kernels/gemv_tc.py
      (tensor cores); other single 16-bit rows where it applies -> kernels/gemv.py (packed 16-bit
      arithmetic); anything else -> qlinear's own kernel (a dequantized tile on the tensor cores
      for two or more rows, CUDA cores for one)
  CUDA, 16-bit weight, one row that kernels/gemv16.py supports -> its split-K GEMV
  otherwise -> torch: F.linear, a quantized weight dequantized first (the reference of every kernel)

The kernels are imported only on CUDA, so a CPU installation never needs Triton.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .wquant import QuantWeight, dequantize


def linear(x: torch.Tensor, w: torch.Tensor | QuantWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear for plain or quantized weights: x [..., K], w of shape (N, K) -> [..., N] in x's
    dtype, by the kernel the module docstring's rule picks."""
    if isinstance(w, QuantWeight):
        if x.is_cuda and (w.bits == 8 or w.shape[1] % 2 == 0):
            from .kernels.qlinear import qlinear

            y = qlinear(x, w)
            return y if bias is None else y + bias
        return F.linear(x, dequantize(w, x.dtype), bias)
    if x.is_cuda:
        from .kernels import gemv16

        if gemv16.supports(x, w):
            y = gemv16.gemv16(x, w)
            return y if bias is None else y + bias
    return F.linear(x, w, bias)
