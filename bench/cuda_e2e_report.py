#!/usr/bin/env python3
"""Markdown tables from the logs of bench/run_cuda_e2e.sh (argv[1]: the log directory)."""
import json, os, sys

d = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(d, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None


gpu = open(os.path.join(d, "gpu.txt")).read().strip() if os.path.exists(os.path.join(d, "gpu.txt")) else "?"
print(f"GPU: {gpu}\n")
c, e, k = load("train_caramba.json"), load("train_torch_eager.json"), load("train_torch_compile.json")
if c:
    fpt, mm = c["flops_per_token"], c["matmul_tflops"]
    mm_t = (e or {}).get("matmul_tflops")
    print(f"small train step, bf16, B{c['batch']} x T{c['seq']}, {c['params'] / 1e6:.1f}M params; "
          f"bf16 matmul 8192^3: {mm:.0f} TFLOP/s (caramba GEMM) / {mm_t or 0:.0f} (torch); "
          f"MFU = tok/s x (6N + 6LdT) = tok/s x {fpt / 1e9:.3f} GFLOP over {mm:.0f}\n")
    print("| | tok/s | step ms | TFLOP/s | MFU (vs measured matmul) | vs caramba |")
    print("|---|---|---|---|---|---|")
    rows = [("caramba (bf16 AMP)", c["train_step_tok_s"])]
    if e: rows.append((f"PyTorch {e.get('torch', '')} eager (autocast bf16, fused AdamW)", e["train_step_tok_s"]))
    if k: rows.append((f"PyTorch {k.get('torch', '')} torch.compile", k["train_step_tok_s"]))
    for name, ts in rows:
        tf = ts * fpt / 1e12
        print(f"| {name} | {ts:,.0f} | {c['batch'] * c['seq'] / ts * 1e3:.1f} | {tf:.0f} | {100 * tf / mm:.1f}% | "
              f"{c['train_step_tok_s'] / ts:.2f}x |")
    print()
dc, hf = load("decode_caramba.json"), load("decode_hf.json")
if dc:
    print(f"small decode, batch 1, prompt {dc['prompt']}, {dc['new']} new tokens, greedy; caramba: "
          f"{dc['step_us']:.1f} us per decode step, batched prefill {dc['prefill_ms']:.2f} ms "
          f"(stepping through the prompt instead: {dc.get('prompt_stepped_ms', 0):.1f} ms)\n")
    print("| | decode tok/s | end-to-end tok/s | caramba / this (decode) | caramba / this (end to end) |")
    print("|---|---|---|---|---|")
    print(f"| caramba GPU decoder (bf16 weights, fp16 cache, CUDA graph per token) | {dc['decode_tok_s']:,.0f} | "
          f"{dc['e2e_tok_s']:,.0f} | 1.00x | 1.00x |")
    if hf:
        for cache in ("static", "dynamic"):
            if cache in hf:
                h = hf[cache]
                print(f"| HF transformers {hf['transformers']} generate, {cache} cache (bf16) | {h['decode_tok_s']:,.0f} | "
                      f"{h['e2e_tok_s']:,.0f} | {dc['decode_tok_s'] / h['decode_tok_s']:.2f}x | "
                      f"{dc['e2e_tok_s'] / h['e2e_tok_s']:.2f}x |")
    try:
        ours = [int(x) for x in open(os.path.join(d, "ours_ids.txt")).read().strip().split(",")]
        theirs = hf["static"]["ids"]
        same = 0
        while same < min(len(ours), len(theirs)) and ours[same] == theirs[same]:
            same += 1
        print(f"\ngreedy ids: the first {same} of {len(ours)} generated tokens agree with HF static")
    except Exception as ex:
        print(f"\n(ids not compared: {ex})")


def long_table(title, dc):
    print(f"\n{title}, long-context decode (copy bandwidth {dc['copy_gbs']:.0f} GB/s read+write)\n")
    print("| cache | context | step us | tok/s | MB read / step | of which KV | achieved GB/s | of copy BW | attention alone: of copy BW |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in dc["long"]:
        gbs = r["bytes"] / (r["step_us"] * 1e-6) / 1e9
        print(f"| {r['kv']} | {r['ctx']} | {r['step_us']:.1f} | {1e6 / r['step_us']:,.0f} | {r['bytes'] / 1e6:.0f} | "
              f"{r['kv_bytes'] / 1e6:.0f} | {gbs:.0f} | {100 * r['frac']:.0f}% | {100 * r['attn_frac']:.0f}% |")


if dc:
    long_table("small", dc)
d1 = load("decode_1b.json")
if d1:
    long_table("1b (Llama-3.2-1B shape, tied embeddings)", d1)
