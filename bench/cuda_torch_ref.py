"""PyTorch timings for the shapes of bench_cuda_ops.c, on the same card in the same run.

Median of 5 timed batches after warm-up, CUDA events. Prints the same columns as the C bench.
Usage: python3 bench/cuda_torch_ref.py
"""
import torch
import torch.nn.functional as F


def timeit(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(5):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / 1e3 / iters)
    ts.sort()
    return ts[2]


def row(what, sec, flops=0.0, nbytes=0.0):
    s = f"{what:<58s} {sec * 1e3:9.3f} ms"
    if flops:
        s += f"  {flops / sec * 1e-12:8.1f} TFLOP/s"
    if nbytes:
        s += f"  {nbytes / sec * 1e-9:8.1f} GB/s"
    print(s, flush=True)


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = "cuda"
    print("torch", torch.__version__, "device:", torch.cuda.get_device_name())
    for dt, M, N, K, tb in [(torch.bfloat16, 8192, 8192, 8192, False),
                            (torch.bfloat16, 8192, 3072, 768, True),
                            (torch.float32, 4096, 4096, 4096, False)]:
        a = torch.rand(M, K, device=dev, dtype=dt) * 2 - 1
        b = torch.rand(N, K, device=dev, dtype=dt) * 2 - 1 if tb else torch.rand(K, N, device=dev, dtype=dt) * 2 - 1
        f = (lambda: a @ b.t()) if tb else (lambda: a @ b)
        row(f"torch matmul {str(dt)[6:]} {M}x{N}x{K}{' (B^T)' if tb else ''}", timeit(f, 10), 2.0 * M * N * K)

    for dt, B, T, H, hd in [(torch.bfloat16, 8, 1024, 12, 64), (torch.float32, 8, 1024, 12, 64),
                            (torch.bfloat16, 2, 1024, 16, 128)]:
        q, k, v = (torch.rand(B, H, T, hd, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        flops = 4.0 * B * H * T * T * hd / 2
        t = timeit(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 3)
        row(f"torch sdpa fwd {str(dt)[6:]} B={B} T={T} H={H} hd={hd} causal", t, flops)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        g = torch.rand_like(o)
        t = timeit(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True), 2)
        row(f"torch sdpa bwd {str(dt)[6:]} B={B} T={T} H={H} hd={hd} causal", t, 2.5 * flops)

    for dt in (torch.bfloat16, torch.float32):
        es = 2 if dt == torch.bfloat16 else 4
        R, D, V = 8192, 768, 50257
        x = torch.rand(R, D, device=dev, dtype=dt)
        w = torch.rand(D, device=dev, dtype=dt) + 0.5
        t = timeit(lambda: F.rms_norm(x, (D,), w, 1e-5), 20)
        row(f"torch rms_norm fwd {str(dt)[6:]} {R}x{D}", t, 0, 2.0 * R * D * es)
        y = torch.rand(R, D, device=dev, dtype=dt)
        t = timeit(lambda: torch.add(x, y, out=y), 20)
        row(f"torch add {str(dt)[6:]} {R * D} elements", t, 0, 3.0 * R * D * es)
        lg = (torch.rand(R, V, device=dev, dtype=dt) * 8 - 4).requires_grad_(True)
        tg = torch.zeros(R, dtype=torch.long, device=dev)
        t = timeit(lambda: F.cross_entropy(lg, tg), 5)
        row(f"torch cross_entropy fwd {str(dt)[6:]} {R}x{V}", t, 0, 1.0 * R * V * es)
        loss = F.cross_entropy(lg, tg)
        t = timeit(lambda: torch.autograd.grad(loss, lg, retain_graph=True), 5)
        row(f"torch cross_entropy bwd {str(dt)[6:]} {R}x{V}", t, 0, 1.0 * R * V * (es + es))

    n, nt = 124_000_000, 50
    ps = [torch.zeros(n // nt, device=dev, requires_grad=True) for _ in range(nt)]
    for p in ps:
        p.grad = torch.rand_like(p)
    for fused in (False, True):
        opt = torch.optim.AdamW(ps, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                foreach=not fused, fused=fused)
        t = timeit(opt.step, 5)
        row(f"torch AdamW {'fused' if fused else 'foreach'} f32, 124M params", t, 0, 28.0 * n)


if __name__ == "__main__":
    main()
