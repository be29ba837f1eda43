"""Our `quant:Q` KV quantizer against the study's: transformers' QuantizedCache with the HQQ backend.

Real keys and values of SmolLM2-135M-Instruct (every layer, after RoPE) over MATH-500 text, fed to
each cache the way decoding feeds it: a prompt, then one token at a time. Ours: per token and KV head,
groups of 64 along head_dim, min-max scale and zero, the newest 128 tokens exact. HQQ cache (the
study's): group 64, residual 128, HQQ's fitted (proximal) scale and zero, and every time the residual
fills the whole cache is dequantized, joined with the residual and quantized again. transformers'
default grouping is axis 0 (64 elements strided across the flattened [1, H_kv, T, D] tensor); its docs
show axis 1 (64 contiguous elements: per token along head_dim, our grouping); both are measured.

Reported per bits: relative Frobenius error of K and V over all layers, and of the attention output of
the last 256 real queries (causal, GQA) computed over the reconstructed K, V. CPU only; needs
`pip install hqq einops termcolor --no-deps` (not a membudget dependency).

    python bench/kv_quant_error.py --tokens 1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from membudget.engine.kvquant import RESIDUAL, dequantize, quantize
from membudget.engine.load import smollm2_dir
from membudget.tasks.base import BUNDLED


def real_kv(tokens: int):
    """Keys, values [1, H_kv, T, D] (bf16) and queries [1, H, T, D] (fp32) of every layer, after RoPE."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    source = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(source)
    rows = [json.loads(line) for line in (BUNDLED / "math500.jsonl").read_text().splitlines()[:40]]
    ids = tok.encode("\n\n".join(r["problem"] + " " + r["solution"] for r in rows))[:tokens]
    queries = []

    def grab(module, args, kwargs):
        hidden, (cos, sin) = kwargs["hidden_states"], kwargs["position_embeddings"]
        shape = (*hidden.shape[:-1], -1, module.head_dim)
        q = module.q_proj(hidden).view(shape).transpose(1, 2)
        queries.append(apply_rotary_pos_emb(q, q, cos, sin)[0])

    hooks = [
        layer.self_attn.register_forward_pre_hook(grab, with_kwargs=True) for layer in model.model.layers
    ]
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
    for h in hooks:
        h.remove()
    cache = out.past_key_values
    # bf16, the dtype a cache holds them in (both quantizers see the same values)
    return [
        (layer.keys.bfloat16(), layer.values.bfloat16(), q)
        for layer, q in zip(cache.layers, queries, strict=True)
    ]


def ours(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x [1, H_kv, T, D] through our store: codes for all but the newest RESIDUAL tokens."""
    old, new = x[:, :, :-RESIDUAL], x[:, :, -RESIDUAL:]
    codes, scale, zero = quantize(old, bits)
    return torch.cat([dequantize(codes, scale, zero, bits, x.dtype), new], dim=2).float()


def hqq_cache(keys: torch.Tensor, values: torch.Tensor, bits: int, axis: int, prompt: int):
    """K, V [1, H_kv, T, D] fed to transformers' HQQ QuantizedCache (prompt, then one token per step)
    -> what its next step would attend over."""
    from transformers.cache_utils import HQQQuantizedLayer

    layer = HQQQuantizedLayer(
        nbits=bits, axis_key=axis, axis_value=axis, q_group_size=64, residual_length=RESIDUAL
    )
    layer.update(keys[:, :, :prompt], values[:, :, :prompt])
    for t in range(prompt, keys.shape[2]):
        layer.update(keys[:, :, t : t + 1], values[:, :, t : t + 1])
    k_hat = torch.cat([layer._dequantize(layer._quantized_keys), layer.keys], dim=2)
    v_hat = torch.cat([layer._dequantize(layer._quantized_values), layer.values], dim=2)
    return k_hat.float(), v_hat.float()


def attention(q, k, v, last: int):
    """Causal attention of the last `last` queries q [1, H, T, D] over k, v [1, H_kv, T, D] (fp32)."""
    k, v = k.float(), v.float()
    t, d = k.shape[2], k.shape[3]
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    logits = q[:, :, -last:] @ k.transpose(-1, -2) / math.sqrt(d)
    mask = torch.arange(t)[None, :] > torch.arange(t - last, t)[:, None]
    return logits.masked_fill(mask, float("-inf")).softmax(-1) @ v


def relative(pairs) -> float:
    num = sum(((a.float() - b.float()) ** 2).sum().item() for a, b in pairs)
    den = sum((b.float() ** 2).sum().item() for _, b in pairs)
    return math.sqrt(num / den)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024, help="tokens of MATH-500 text (default 1024)")
    parser.add_argument("--prompt", type=int, default=256, help="tokens fed at once before decoding")
    parser.add_argument("--last", type=int, default=256, help="queries whose attention output is compared")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args()
    layers = real_kv(args.tokens)
    rows = []
    for bits in (8, 4, 2):
        variants = {"ours (min-max, per token)": [(ours(k, bits), ours(v, bits)) for k, v, _ in layers]}
        for axis in (0, 1):
            variants[f"HQQ cache, axis {axis}"] = [
                hqq_cache(k, v, bits, axis, args.prompt) for k, v, _ in layers
            ]
        for name, rebuilt in variants.items():
            row = {
                "bits": bits,
                "quantizer": name,
                "K": relative([(kh, k) for (kh, _), (k, _, _) in zip(rebuilt, layers, strict=True)]),
                "V": relative([(vh, v) for (_, vh), (_, v, _) in zip(rebuilt, layers, strict=True)]),
                "attention": relative(
                    [
                        (attention(q, kh, vh, args.last), attention(q, k, v, args.last))
                        for (kh, vh), (k, v, q) in zip(rebuilt, layers, strict=True)
                    ]
                ),
            }
            rows.append(row)
            print(
                f"{bits} bits  {name:28s} K {row['K']:.4f}  V {row['V']:.4f}  attention out {row['attention']:.4f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"tokens": args.tokens, "prompt": args.prompt, "last": args.last, "rows": rows}, f, indent=1
            )


if __name__ == "__main__":
    main()
