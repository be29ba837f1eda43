"""`membudget generate` and `membudget bench`: the engine from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..memory import WEIGHT_BITS, Scenario, breakdown
from ..spec import resolve_spec
from ..tasks.prompts import MATH_ANSWER_PREFIX
from .common import JsonOpt, app, csv, err_console, gib, out, short_name, split_ints

TokensOpt = Annotated[
    str,
    typer.Option(
        "--tokens",
        "--max-tokens",
        "--budgets",
        help="Thinking budget T, or checkpoints T1,T2,... (the last is T); --max-tokens and --budgets are aliases",
    ),
]


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local dir, .gguf file, or smollm2")],
    prompt: Annotated[str, typer.Option(help="The user message (or raw text with --raw)")],
    raw: Annotated[bool, typer.Option(help="Tokenize the prompt as is, without the chat template")] = False,
    thinking: Annotated[bool, typer.Option(help="Thinking mode in the chat template (Qwen3)")] = True,
    samples: Annotated[int, typer.Option(help="Parallel samples G (one shared prefill)")] = 1,
    tokens: TokensOpt = "512",
    answer_prefix: Annotated[
        str, typer.Option(help="Forced after the thinking at the budget")
    ] = MATH_ANSWER_PREFIX,
    answer_tokens: Annotated[int, typer.Option(help="Answer tokens A after the forced prefix")] = 32,
    budget_forcing: Annotated[
        bool, typer.Option(help="Replace an early end of thinking with --wait-text")
    ] = True,
    wait_text: Annotated[str, typer.Option(help="What replaces an early end of thinking")] = "Wait",
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 20,
    min_p: float = 0.0,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding (ignores the sampling options)")] = False,
    seed: int = 0,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="bfloat16, float32 or float16 (default: bfloat16 on a GPU or a CPU with AMX/AVX512-BF16, else float32)"
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: cuda when available)")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own Python code")] = False,
    weights: Annotated[int, typer.Option(help="Weight bits: 16, or 8/4 (round-to-nearest, group 128)")] = 16,
    kv: Annotated[
        str, typer.Option(help="KV policy: full, quant:Q, streaming|rkv|h2o|snapkv:B, or NAME:B+quant:Q")
    ] = "full",
    as_json: JsonOpt = False,
) -> None:
    """Generate G samples with budget forcing and answers at every budget checkpoint.

    Example: membudget generate --model smollm2 --prompt "What is 12 + 30?" --max-tokens 64 --samples 2
    """
    import time

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..engine.generate import GenerationConfig, Generator
    from ..engine.load import default_dtype, load_model
    from ..engine.sampling import SamplingParams
    from ..tasks import chat_prompt

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"--device {device}: expected cpu or cuda (cuda:N for another GPU)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
    if device.startswith("cuda"):
        from ..engine.attention import GPU_HEAD_DIMS

        head_dim = resolve_spec(model).head_dim
        if head_dim not in GPU_HEAD_DIMS:
            raise ValueError(
                f"{model} has head_dim {head_dim}; the GPU kernels take 64 or 128: use --device cpu"
            )
    sampling = SamplingParams(temperature, top_p, top_k, min_p, greedy)
    config = GenerationConfig(
        tuple(split_ints([tokens], "--tokens")),
        samples,
        answer_tokens,
        answer_prefix,
        budget_forcing,
        wait_text,
        sampling,
        seed,
        kv=kv,
    )
    t0 = time.perf_counter()
    loaded = load_model(
        model,
        dtype or default_dtype(device),
        device,
        trust_remote_code,
        weights,
    )
    load_s = time.perf_counter() - t0
    tok = loaded.tokenizer
    text = prompt if raw else chat_prompt(tok, prompt, thinking)
    ids = tok.encode(text, add_special_tokens=raw)
    with Progress(
        "decoding",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("steps", total=None)
        gen = Generator(loaded.decoder, tok, on_step=lambda rows: bar.advance(task))
        bar.update(task, total=gen.max_steps(config))
        results = gen.generate(ids, config)
    capacity = gen.capacity(len(ids), config)
    scenario = Scenario(
        model, weights, kv, capacity - len(ids), samples, len(ids), answer_slots=gen.answer_slots(config)
    )
    accounted = breakdown(loaded.spec, scenario)
    payload = {
        "samples": [
            {
                "text": r.text,
                "token_ids": r.token_ids,
                "finish_reason": r.finish_reason,
                "thinking_tokens": r.thinking_tokens,
                "answers": {str(t): a for t, a in r.answers.items()},
            }
            for r in results
        ],
        "prompt_tokens": len(ids),
        "peak_memory_bytes": gen.peak_memory_bytes or None,
        "accounted_bytes": accounted.total_bytes,
        "accounted_note": "membudget memory for this scenario (16-bit activations), convention 'all'",
        "timings": {
            "load_s": load_s,
            "prefill_s": gen.timings.prefill_s,
            "decode_s": gen.timings.decode_s,
            "decode_steps": gen.timings.steps,
        },
    }
    if as_json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for i, r in enumerate(results):
        out.rule(f"sample {i} ({r.finish_reason}, {r.thinking_tokens} thinking tokens)")
        out.print(r.text, markup=False, highlight=False)
        for t, answer in r.answers.items():
            out.print(f"[bold]answer at T={t}:[/bold] ", end="")
            out.print(answer.strip(), markup=False, highlight=False)
    steps = max(gen.timings.steps, 1)
    out.print(
        f"[dim]prefill {gen.timings.prefill_s:.2f} s; {steps} decode steps in {gen.timings.decode_s:.2f} s "
        f"({1e3 * gen.timings.decode_s / steps:.1f} ms/step, {samples} rows)[/dim]"
    )


@app.command()
def bench(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Registry model(s) (random weights)")
    ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, e.g. 1,16")] = "1,16",
    context: Annotated[int, typer.Option(help="Tokens in the cache when the step is timed")] = 8192,
    weights: Annotated[str, typer.Option(help="Weight bits, e.g. 16,8,4")] = "16",
    kv: Annotated[str, typer.Option(help="KV caches: full and/or quant:Q, e.g. full,quant:8")] = "full",
    hf: Annotated[
        bool, typer.Option(help="Also time transformers generate() at batch 1 (16-bit weights, full cache)")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Decode-step speed and memory of the engine on random weights of real shapes (needs a CUDA GPU).

    Example: membudget bench --model Qwen/Qwen3-8B --batch 16 --context 8192 --weights 4
    """
    import torch

    from ..timing import bench_engine, bench_transformers, check_bench_kv, copy_bandwidth

    specs = [resolve_spec(name) for name in model or ["Qwen/Qwen3-8B"]]
    batches = split_ints([batch], "--batch")
    bits = split_ints([weights], "--weights")
    if bad := [b for b in bits if b not in WEIGHT_BITS]:
        raise ValueError(f"--weights must be among {csv(WEIGHT_BITS)}, got {csv(bad)}")
    caches = [c.strip() for c in kv.split(",") if c.strip()]
    for c in caches:
        check_bench_kv(c)
    if context < 1 or any(g < 1 for g in batches):
        raise ValueError("--context and --batch must be positive")
    if not torch.cuda.is_available():
        raise ValueError("membudget bench times CUDA graphs and needs a CUDA GPU; none is visible")
    bandwidth = copy_bandwidth(torch.device("cuda"))
    rows = []
    for spec in specs:
        for w in bits:
            for c in caches:
                for g in batches:
                    row = bench_engine(spec, g, context, bandwidth, weights=w, kv=c)
                    if g == 1 and hf and w == 16 and c == "full":
                        row.hf_ms_per_step = bench_transformers(spec, 1, context)
                        row.speedup_vs_hf = row.hf_ms_per_step / row.ms_per_step
                    rows.append(row)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = Table(
        title=f"Decode step, bf16, {context:,} tokens of context (copy bandwidth {bandwidth / 1e9:,.0f} GB/s)"
    )
    for col in (
        "model",
        "W",
        "KV",
        "G",
        "ms/step",
        "tokens/s",
        "HBM bound ms",
        "% of bound",
        "HF ms/step",
        "peak GiB",
        "accounted GiB",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            short_name(r.model),
            str(r.weights),
            r.kv,
            str(r.batch),
            f"{r.ms_per_step:.3f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.hbm_bound_ms:.3f}",
            f"{r.pct_of_bound:.1f}",
            f"{r.hf_ms_per_step:.1f}" if r.hf_ms_per_step else "-",
            gib(r.peak_bytes),
            gib(r.accounted_bytes),
        )
    out.print(table)
