#!/usr/bin/python3
"""PyTorch eager peer for bench_decode: the same Llama-shaped model, the same weights (read from
the model.safetensors / config.json that bench_decode wrote), greedy decoding with a KV cache,
batch 1, on the CPU with the same thread count. Plain PyTorch only (no transformers), so it runs
with Debian's python3-torch (1.13).

Prints one JSON object on stdout:
  {"threads", "torch", "prompt_len", "new_tokens", "prefill_tok_s", "decode_tok_s_best",
   "decode_tok_s_median", "ids": [generated ids of the first repetition]}

With --serve it loads the model, warms up, prints {"ready": true, "torch": ..., "threads": ...}
and then runs one repetition per "run" line read from stdin, answering with one JSON line
{"prefill_tok_s", "decode_tok_s", "ids"}, so that bench_decode can interleave its own
repetitions with the peer's (both sides then see the same machine load).
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time

import torch


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} has dtype {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a : base + b]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"])
    return out


class Llama:
    """Llama forward with a preallocated KV cache: k/v [layers][1, Hkv, max_len, hd]."""

    def __init__(self, cfg, w, max_len):
        self.cfg = cfg
        self.w = w
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg.get("num_key_value_heads", self.H)
        self.d = cfg["hidden_size"]
        self.hd = cfg.get("head_dim", self.d // self.H)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta", 10000.0)
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        pos = torch.arange(max_len, dtype=torch.float32)
        f = torch.outer(pos, inv)
        emb = torch.cat([f, f], dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.k = [torch.zeros(1, self.Hkv, max_len, self.hd) for _ in range(self.L)]
        self.v = [torch.zeros(1, self.Hkv, max_len, self.hd) for _ in range(self.L)]
        self.lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        self.pos = 0

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def rope(self, x, p0):
        T = x.shape[2]
        cos, sin = self.cos[p0 : p0 + T], self.sin[p0 : p0 + T]
        h = self.hd // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def forward(self, ids):
        w, T, p0 = self.w, ids.shape[1], self.pos
        x = w["model.embed_tokens.weight"][ids]
        rep = self.H // self.Hkv
        for i in range(self.L):
            pre = f"model.layers.{i}."
            h = self.rms(x, w[pre + "input_layernorm.weight"])
            q = (h @ w[pre + "self_attn.q_proj.weight"].t()).view(1, T, self.H, self.hd).transpose(1, 2)
            k = (h @ w[pre + "self_attn.k_proj.weight"].t()).view(1, T, self.Hkv, self.hd).transpose(1, 2)
            v = (h @ w[pre + "self_attn.v_proj.weight"].t()).view(1, T, self.Hkv, self.hd).transpose(1, 2)
            q, k = self.rope(q, p0), self.rope(k, p0)
            self.k[i][:, :, p0 : p0 + T] = k
            self.v[i][:, :, p0 : p0 + T] = v
            K = self.k[i][:, :, : p0 + T].repeat_interleave(rep, dim=1)
            V = self.v[i][:, :, : p0 + T].repeat_interleave(rep, dim=1)
            s = (q @ K.transpose(-1, -2)) / math.sqrt(self.hd)
            if T > 1:
                mask = torch.full((T, p0 + T), float("-inf")).triu(p0 + 1)
                s = s + mask
            a = torch.softmax(s, dim=-1) @ V
            a = a.transpose(1, 2).reshape(1, T, self.H * self.hd)
            x = x + a @ w[pre + "self_attn.o_proj.weight"].t()
            h = self.rms(x, w[pre + "post_attention_layernorm.weight"])
            g = h @ w[pre + "mlp.gate_proj.weight"].t()
            u = h @ w[pre + "mlp.up_proj.weight"].t()
            x = x + (torch.nn.functional.silu(g) * u) @ w[pre + "mlp.down_proj.weight"].t()
        x = self.rms(x, w["model.norm.weight"])
        self.pos += T
        return x[:, -1] @ self.lm_head.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="directory with config.json + model.safetensors")
    ap.add_argument("--prompt", required=True, help="comma-separated prompt ids")
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model + "/config.json"))
    w = load_safetensors(a.model + "/model.safetensors")
    prompt = [int(x) for x in a.prompt.split(",")]
    S = len(prompt)

    def one_rep():
        m = Llama(cfg, w, S + a.new)
        t0 = time.perf_counter()
        logits = m.forward(torch.tensor([prompt]))
        t1 = time.perf_counter()
        ids = [int(logits.argmax(-1))]
        for _ in range(a.new - 1):
            logits = m.forward(torch.tensor([[ids[-1]]]))
            ids.append(int(logits.argmax(-1)))
        t2 = time.perf_counter()
        return S / (t1 - t0), (a.new - 1) / (t2 - t1), ids

    if a.serve:
        with torch.inference_mode():
            one_rep()  # warm-up
            print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
            for line in sys.stdin:
                if line.strip() != "run":
                    break
                p, d, ids = one_rep()
                print(json.dumps({"prefill_tok_s": p, "decode_tok_s": d, "ids": ids}), flush=True)
        return
    decode, prefill, first_ids = [], [], None
    with torch.inference_mode():
        for rep in range(a.reps + 1):  # repetition 0 warms up
            m = Llama(cfg, w, S + a.new)
            t0 = time.perf_counter()
            logits = m.forward(torch.tensor([prompt]))
            t1 = time.perf_counter()
            ids = [int(logits.argmax(-1))]
            for _ in range(a.new - 1):
                logits = m.forward(torch.tensor([[ids[-1]]]))
                ids.append(int(logits.argmax(-1)))
            t2 = time.perf_counter()
            if rep == 0:
                first_ids = ids
                continue
            prefill.append(S / (t1 - t0))
            decode.append((a.new - 1) / (t2 - t1))
    json.dump(
        {
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "prompt_len": S,
            "new_tokens": a.new,
            "prefill_tok_s": max(prefill),
            "decode_tok_s_best": max(decode),
            "decode_tok_s_median": statistics.median(decode),
            "ids": first_ids,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
