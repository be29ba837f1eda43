"""Compile a decode-attention or int8/int4 matrix kernel for an H100/H200 (sm_90) on a machine without a GPU and print
what decides its speed before any device time is spent: registers and spills per thread, shared
memory, layout conversions, and the instruction mix of each loop (SASS from the ptxas and cuobjdump
that Triton ships).

    PYTHONPATH=src python3 bench/inspect_kernel.py fast --bits 8 --block-n 32 --warps 1 [--write]
    PYTHONPATH=src python3 bench/inspect_kernel.py dequant --bits 4 --block-n 64 --warps 4
    PYTHONPATH=src python3 bench/inspect_kernel.py dense --block-n 64 --warps 4
    PYTHONPATH=src python3 bench/inspect_kernel.py qlinear --bits 4 --block-n 128 --warps 4 [--rows 16]
    PYTHONPATH=src python3 bench/inspect_kernel.py gemv --bits 4 --block-n 64 --warps 2 [--pdl]
    PYTHONPATH=src python3 bench/inspect_kernel.py gemv16 --block-n 16 --block-k 256 --warps 4 [--pdl]

Shapes are Qwen3-8B's (32 query heads, 8 KV heads, head_dim 128). A loop is a backward branch in
the SASS; its count of instructions is per warp and iteration (attention: one block of slots;
qlinear: one group of 128 inputs for block-n outputs, bf16 inputs, `--rows` 1 on the CUDA cores,
more on tensor cores; gemv: the same for the packed one-row kernel; gemv16: one block of the 16-bit
one-row kernel). With --pdl the kernels wait for their predecessor (engine/kernels/launch.py); the listing
then shows which global loads are issued before that wait.
"""

import argparse
import os
import re
import subprocess
import tempfile
from collections import Counter

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from membudget.engine.kernels import attention, gemv, gemv16, gemv_tc, qlinear, quant_attention
from membudget.engine.kernels.gemv_tc import TC_LAUNCH

STRIDES = {
    "fast": "s_kng s_knh s_vng s_vnh s_qg s_qh s_cg s_ch s_cc s_og s_oh s_os s_lg s_lh s_sg s_sh s_rg s_rh s_rc "
    "s_outg s_outh",
    "split": "s_qg s_qh s_kg s_kh s_kc s_vg s_vh s_vc s_og s_oh s_os s_lg s_lh s_sg s_sh s_sc s_rg s_rh s_rc "
    "s_outg s_outh",
}


def source(
    kind: str, bits: int, block_n: int, write: bool, merge: bool, grouped: bool = False, head_dim: int = 128
) -> ASTSource:
    common = dict(
        SCALE=head_dim**-0.5,
        KV_HEADS=8,
        N_REP=4,
        SPLITS=3,
        BLOCK_N=block_n,
        D=head_dim,
        BLOCK_S=4,
        MERGE=merge,
    )
    if kind == "fast":
        fn, names = quant_attention._partial_quant_kernel, "Q KC KS KZ VC VS VZ KR VR KN VN"
        types = "*bf16 *u8 *fp16 *fp16 *u8 *fp16 *fp16 *bf16 *bf16 *bf16 *bf16"
        constants = dict(common, BITS=bits, WRITE=write, ASM=True, GROUPED_V=grouped)
        strides = STRIDES["fast"]
    else:
        fn, names = attention._partial_kernel, "Q K V KS KZ VS VZ KR VR"
        types = "*bf16 *u8 *u8 *fp16 *fp16 *fp16 *fp16 *bf16 *bf16" if bits else " ".join(["*bf16"] * 9)
        constants = dict(common, BLOCK_H=16, BLOCK_D=head_dim, BITS=bits)
        strides = STRIDES["split"]
    partial = "*fp16" if kind == "fast" else "*fp32"  # as the launchers allocate it
    names = names.split() + ["Lengths", "Partial", "LSE", "Out", "Tickets"]
    types = types.split() + ["*i64", partial, "*fp32", "*bf16", "*i32"]
    pointers = list(zip(names, types, strict=True))
    signature = (
        dict(pointers) | {name: "i32" for name in strides.split()} | dict.fromkeys(constants, "constexpr")
    )
    # pointers 16-byte aligned and strides multiples of 16 where the engine's tensors give that
    aligned = [
        i
        for i, name in enumerate(signature)
        if name not in ("s_lh", "s_sc") and i < len(signature) - len(constants)
    ]
    attrs = {(i,): [["tt.divisibility", 16]] for i in aligned}
    return ASTSource(fn, signature, constants, attrs)


def loops(sass: str) -> list[tuple[int, Counter]]:
    """(instruction count, opcode counts) of every backward-branch loop body."""
    code = [(int(a, 16), text.strip()) for a, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    found = []
    for address, text in code:
        target = re.search(r"BRA\s+0x([0-9a-f]+)", text)
        if target and int(target.group(1), 16) < address:
            body = [t for a, t in code if int(target.group(1), 16) <= a <= address]
            found.append((len(body), Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0] for t in body)))
    return found


def matrix_source(fn, pointers: str, ints: str, constants: dict, unaligned: tuple = ()) -> ASTSource:
    """A weight kernel's source for compilation: pointers 'name:type ...', i32 arguments 'name ...', all
    of them 16-byte divisible (as the engine's tensors and sizes are) except those in `unaligned`."""
    args = dict(p.split(":") for p in pointers.split()) | dict.fromkeys(ints.split(), "i32")
    signature = args | dict.fromkeys(constants, "constexpr")
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(args) if name not in unaligned}
    return ASTSource(fn, signature, constants, attrs)


QUANT = "x:*bf16 codes:*u8 scales:*fp16 zeros:*u8"  # a quantized product's first arguments


def qlinear_source(bits: int, block_n: int, rows: int) -> ASTSource:
    dot = rows > 1
    constants = dict(BITS=bits, BLOCK_M=16 if dot else 1, BLOCK_N=block_n, USE_DOT=dot, PRECISION="tf32")
    constants |= dict(CODES16=dot and bits == 4, BF16=True, ASM=True)
    ints = "M N K GROUPS GROUPS_PER_SPLIT s_xm s_os s_om"
    return matrix_source(
        qlinear._qlinear_kernel, QUANT + " out:*fp32", ints, constants, ("GROUPS_PER_SPLIT",)
    )


def gemv_source(bits: int, block_n: int, stages: int, pdl: bool) -> ASTSource:
    constants = dict(BITS=bits, BLOCK_N=block_n, BF16=True, ASM=True, STAGES=stages, PDL=pdl)
    ints = "N K ROW_WORDS GROUPS GROUPS_PER_SPLIT SPLITS s_ps"
    return matrix_source(
        gemv._gemv_kernel,
        QUANT + " y:*bf16 partial:*fp32",
        ints,
        constants,
        ("GROUPS_PER_SPLIT", "SPLITS"),
    )


def gemv_tc_source(tiles: int, at_once: int, pdl: bool) -> ASTSource:
    constants = dict(TILES=tiles, BF16=True, ASM=True, AT_ONCE=at_once, PDL=pdl)
    ints = "N ROW_WORDS GROUPS GROUPS_PER_SPLIT SPLITS s_ps"
    return matrix_source(
        gemv_tc._gemv_tc_kernel, QUANT + " y:*bf16 partial:*fp32", ints, constants,
        ("GROUPS_PER_SPLIT", "SPLITS"),
    )  # fmt: skip


def gemv16_source(block_n: int, block_k: int, stages: int, pdl: bool) -> ASTSource:
    constants = dict(BLOCK_N=block_n, BLOCK_K=block_k, STAGES=stages, PDL=pdl)
    return matrix_source(
        gemv16._gemv16_kernel, "x:*bf16 w:*bf16 partial:*fp32", "N K s_wn K_PER_SPLIT s_ps", constants
    )


def before_wait(sass: str) -> str:
    """How many global loads the SASS issues before its first griddepcontrol.wait (ACQBULK)."""
    head = sass.split("ACQBULK")[0] if "ACQBULK" in sass else None
    if head is None:
        return "no wait"
    return f"{len(re.findall(r'LDG', head))} global loads before the wait"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["fast", "dequant", "dense", "qlinear", "gemv", "gemv-tc", "gemv16"])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--block-n", type=int, default=32)
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="fast kernel: with the new token's code write")
    parser.add_argument("--merge", action="store_true", help="with the last program's merge (tickets)")
    parser.add_argument("--grouped", action="store_true", help="fast kernel: value codes grouped by 4 slots")
    parser.add_argument("--head-dim", type=int, default=128, help="fast, dequant, dense: the head size")
    parser.add_argument("--maxnreg", type=int, default=0, help="a register cap per thread")
    parser.add_argument("--rows", type=int, default=1, help="qlinear: rows of the input")
    parser.add_argument("--block-k", type=int, default=256, help="gemv16: inputs per block")
    parser.add_argument(
        "--tiles", type=int, default=TC_LAUNCH.tiles, help="gemv-tc: tiles of 16 rows per program"
    )
    parser.add_argument(
        "--at-once",
        type=int,
        default=TC_LAUNCH.at_once,
        help="gemv-tc: groups loaded together (1, 2, 4)",
    )
    parser.add_argument("--ttgir", action="store_true", help="print Triton's GPU IR (layouts)")
    parser.add_argument(
        "--pdl", action="store_true", help="gemv, gemv-tc, gemv16: with programmatic dependent launch"
    )
    args = parser.parse_args()
    bits = 0 if args.kind == "dense" else args.bits
    kind = "fast" if args.kind == "fast" else "split"
    options = dict(num_warps=args.warps, num_stages=args.stages) | (
        {"maxnreg": args.maxnreg} if args.maxnreg else {}
    )
    if args.kind == "qlinear":
        src = qlinear_source(args.bits, args.block_n, args.rows)
    elif args.kind == "gemv":
        src = gemv_source(args.bits, args.block_n, args.stages, args.pdl)
    elif args.kind == "gemv-tc":
        src = gemv_tc_source(args.tiles, args.at_once, args.pdl)
    elif args.kind == "gemv16":
        src = gemv16_source(args.block_n, args.block_k, args.stages, args.pdl)
    else:
        src = source(kind, bits, args.block_n, args.write, args.merge, args.grouped, args.head_dim)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(kernel.asm["cubin"])
        cubin.flush()
        usage = subprocess.run(
            [f"{tools}/cuobjdump", "--dump-resource-usage", cubin.name], capture_output=True, text=True
        ).stdout
        sass = subprocess.run(
            [f"{tools}/cuobjdump", "-sass", cubin.name], capture_output=True, text=True
        ).stdout
    print(" ".join(re.findall(r"(?:REG|STACK|LOCAL):\d+", usage)), f"shared {kernel.metadata.shared} B",
          f"layout conversions {kernel.asm['ttgir'].count('convert_layout')}")  # fmt: skip
    if args.pdl:
        print(before_wait(sass))
    if args.ttgir:
        print(kernel.asm["ttgir"])
    for count, ops in loops(sass):
        print(f"loop: {count} instructions;", ", ".join(f"{op} {n}" for op, n in ops.most_common(12)))


if __name__ == "__main__":
    main()
