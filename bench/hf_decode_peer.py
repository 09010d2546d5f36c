#!/usr/bin/env python3
"""Hugging Face transformers peer for bench_cuda_decode: the same weights (the Hugging Face
directory bench_cuda_decode writes), loaded in bfloat16 on the GPU, greedy `generate` at batch 1
with the static cache (and, once, the default dynamic cache for reference).

Decode tokens/s = (new - 1) / (time(generate new tokens) - time(generate 1 token)), i.e. the
steps after the first token, as bench_cuda_decode counts them; end to end = new / time.
Prints one JSON object."""
import argparse, json, statistics, sys, time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt-file", required=True)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--no-dynamic", action="store_true")
a = ap.parse_args()

import transformers
torch.manual_seed(0)
try:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16)
except TypeError:  # transformers < 4.56 spells it torch_dtype
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16)
model = model.to("cuda").eval()
model.generation_config.eos_token_id = None
model.generation_config.pad_token_id = 0
prompt = [int(x) for x in open(a.prompt_file).read().strip().split(",")]
ids = torch.tensor([prompt], device="cuda")


def gen(n, cache):
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    if cache:
        kw["cache_implementation"] = cache
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out[0, len(prompt):].tolist()


res = {"torch": torch.__version__, "transformers": transformers.__version__,
       "device": torch.cuda.get_device_name(), "prompt": len(prompt), "new": a.new}
for cache in ["static"] + ([] if a.no_dynamic else ["dynamic"]):
    name = cache
    c = None if cache == "dynamic" else cache
    reps = a.reps if cache == "static" else 1
    for _ in range(2):  # warm-up (compilation for the static cache)
        gen(a.new, c)
        gen(1, c)
    full, one = [], []
    for _ in range(reps):
        t, toks = gen(a.new, c)
        full.append(t)
        one.append(gen(1, c)[0])
    tf, t1 = statistics.median(full), statistics.median(one)
    res[name] = {"decode_tok_s": (a.new - 1) / (tf - t1), "e2e_tok_s": a.new / tf,
                 "first_token_ms": t1 * 1e3, "ids": toks}
    print(f"{name}: decode {res[name]['decode_tok_s']:.0f} tok/s, end to end "
          f"{res[name]['e2e_tok_s']:.0f} tok/s, first token {t1 * 1e3:.1f} ms", file=sys.stderr)
print(json.dumps(res))
