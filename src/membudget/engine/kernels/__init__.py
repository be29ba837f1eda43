"""The engine's GPU kernels (Triton, some inline PTX), one module per operation family. The engine
reaches them only on CUDA, through one entry point per operation, and imports them there: a CPU
installation never needs Triton. Each kernel is checked on the CPU under TRITON_INTERPRET=1 against
the torch reference named beside it (tests/kernels/) and on a GPU by tests/test_gpu.py.

  operation                         entry point (caller)                          kernels, reference
  matrix product with a weight      engine/linear.py `linear` (layer, model)      qlinear.py -> gemv_tc.py | gemv.py
                                                                                  | its own; gemv16.py; ref. F.linear
                                                                                  of wquant.dequantize
  decode attention, 16-bit cache    engine/attention.py `decode_attention`        attention.py + merge.py;
                                    (kvstore.DenseStore)                          ref. decode_attention_reference
  decode attention, quantized       quant_attention.py `split_kv_decode_quant`    quant_attention.py (8/4 bits) or
  cache, with the new token's write (kvstore.QuantStore)                          attention.py's dequantizing path,
                                                                                  kvwrite.py, merge.py;
                                                                                  ref. kvquant.quant_decode_attention_reference
  compaction after eviction         compact.py `compact_` (kvstore)               ref. a torch gather
  R-KV near-duplicate search        similarity.py `last_twins` (policies/rkv.py)  ref. rkv.last_twins_reference
  top-k sampling                    sample.py `sample_top_k` (engine/sampling.py) ref. sampling.sample's torch path

launch.py says how our kernels launch (programmatic dependent launch); ptx_*.py hold the inline PTX
that gemv.py, gemv_tc.py, qlinear.py and quant_attention.py use. Kernels import from the engine only
its storage formats (engine/wquant.py, engine/kvquant.py), never the model.

Where a comment says a launch setting or a design "measured" faster, it was chosen by A/B runs on an
H200, logged in bench/RESULTS.md (in git history); the current figures are in bench/BASELINE.md.
"""
