#!/usr/bin/env python3
"""PyTorch peer for bench_train / bench_prefill: the same Llama-shaped model in plain PyTorch
(no transformers), same config, batch, sequence and thread count. Prints one JSON object.

Works with Debian's torch 1.13 (manual causal attention) and torch >= 2 (SDPA)."""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--d-model", type=int, default=256)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv-heads", type=int, default=2)
p.add_argument("--d-ff", type=int, default=704)
p.add_argument("--vocab", type=int, default=4096)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--prefill", type=int, default=128)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--device", default="cpu")
p.add_argument("--dtype", default="float32")
p.add_argument("--compile", action="store_true")
p.add_argument("--no-prefill", action="store_true", help="skip the prefill timing (a recompile under --compile)")
p.add_argument("--matmul", type=int, default=0, help="also time an N^3 matmul in --dtype (TFLOP/s)")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
dev = torch.device(args.device)
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(hd, T, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Attention(nn.Module):
    def __init__(self, d, H, Hkv):
        super().__init__()
        self.H, self.Hkv, self.hd = H, Hkv, d // H
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, Hkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, Hkv * self.hd, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        q = q * cos[:T] + rotate_half(q) * sin[:T]
        k = k * cos[:T] + rotate_half(k) * sin[:T]
        g = self.H // self.Hkv
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            o = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, d, H, Hkv, ff):
        super().__init__()
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.attn = Attention(d, H, Hkv)
        self.gate = nn.Linear(d, ff, bias=False)
        self.up = nn.Linear(d, ff, bias=False)
        self.down = nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.n1(x), cos, sin)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(a.vocab, a.d_model)
        self.blocks = nn.ModuleList(Block(a.d_model, a.heads, a.kv_heads, a.d_ff) for _ in range(a.layers))
        self.norm = RMSNorm(a.d_model)
        self.head = nn.Linear(a.d_model, a.vocab, bias=False)
        cos, sin = rope_tables(a.d_model // a.heads, max(a.seq, a.prefill))
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        return self.head(self.norm(x))


dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
model = Llama(args).to(dev)
nparams = sum(p.numel() for p in model.parameters())
fwd = torch.compile(model) if args.compile else model
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1,
                        **({"fused": True} if args.device == "cuda" else {}))
ids = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=dev)
x, y = ids[:, :-1], ids[:, 1:]


def sync():
    if args.device == "cuda":
        torch.cuda.synchronize()


def amp():
    if dt == torch.float32:
        import contextlib
        return contextlib.nullcontext()
    return torch.autocast(args.device, dtype=dt)


def loss_fn():
    with amp():
        logits = fwd(x)
    return F.cross_entropy(logits.float().reshape(-1, args.vocab), y.reshape(-1))


def timed(fn, iters):
    fn()
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def fwd_bwd():
    model.zero_grad(set_to_none=True)
    loss_fn().backward()


def train_step():
    opt.zero_grad(set_to_none=True)
    loss_fn().backward()
    opt.step()


pids = torch.randint(0, args.vocab, (1, args.prefill), device=dev)


def prefill():
    with torch.no_grad(), amp():
        fwd(pids)


tok = args.batch * args.seq
res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "params": nparams,
       "sdpa": HAS_SDPA}
res["fwd_bwd_tok_s"] = tok / timed(fwd_bwd, args.iters)
res["train_step_tok_s"] = tok / timed(train_step, args.iters)
if not args.no_prefill:
    res["prefill_tok_s"] = args.prefill / timed(prefill, max(args.iters * 4, 10))
if args.matmul:
    n = args.matmul
    a_, b_ = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    res["matmul_tflops"] = 2 * n ** 3 / timed(lambda: a_ @ b_, 10) / 1e12
try:
    import resource
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
except Exception:
    pass
print(json.dumps(res))
