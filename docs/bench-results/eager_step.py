#!/usr/bin/env python3
"""Eager PyTorch anchor for `bin/mora bench step` (issue 11): the same step in a plain eager loop.

A random Llama of the shape `bench step --random H,L,F,Q,KV` builds (byte vocabulary of 259 ids,
tied embeddings, RMSNorm eps 1e-5, RoPE theta 1e4, SiLU MLP, grouped-query attention), the same
random batch shape, adapters on all seven linear modules of every layer (LoRA r, alpha 2r; MoRA
rotation, the reference code's mora_type 6 with the spec's R rule), and full fine-tuning of those
modules. One step = forward, cross-entropy, backward, global-norm clip 1.0, torch.optim.AdamW
(lr 1e-4, no weight decay), zero_grad: what IncrementalTrainer.step does. Median of the timed
steps after the warm-up ones, printed as JSON lines with the fields bench step has in common.

Usage (Debian's python3-torch 1.13; it calls BLAS through the libblas.so.3 alternative, which is the
reference BLAS, ~5 GFLOP/s, unless OpenBLAS is installed; /usr/bin/python3, not a pyenv shim):
  apt-get install -y python3-torch libopenblas0-pthread
  /usr/bin/python3 docs/bench-results/eager_step.py --random 1024,8,2816,16,4 --batch-size 4 --seq-len 128 \
      --methods lora,rotation,full --warmup 1 --steps 5
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Lora(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.a), self.b) * self.scale


class MoraRotation(nn.Module):
    """The reference code's mora_type 6: wrap-pad, blocks of R, RoPE-style rotation, one R x R M."""

    def __init__(self, base, r):
        super().__init__()
        self.base = base
        d_in, d_out = base.in_features, base.out_features
        big_r = int(math.floor(math.sqrt((d_in + d_out) * r) + 0.5)) // 2 * 2
        self.big_r, self.d_in, self.d_out = big_r, d_in, d_out
        self.m = nn.Parameter(torch.zeros(big_r, big_r))
        self.blocks = -(-d_in // big_r)
        self.pad = self.blocks * big_r - d_in
        inv_freq = 1.0 / (10000 ** (torch.arange(0, big_r, 2).float() / big_r))
        freqs = torch.outer(torch.arange(self.blocks).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos().unsqueeze(0))
        self.register_buffer("sin", emb.sin().unsqueeze(0))

    def forward(self, x):
        r = self.big_r
        xp = torch.cat([x, x[..., :self.pad]], dim=-1) if self.pad else x
        b = xp.view(*x.shape[:-1], self.blocks, r)
        rh = torch.cat((-b[..., r // 2:], b[..., :r // 2]), dim=-1)
        a = b * self.cos + rh * self.sin
        z = F.linear(a, self.m).reshape(*x.shape[:-1], -1)
        if z.shape[-1] < self.d_out:
            z = torch.cat([z] * (-(-self.d_out // z.shape[-1])), dim=-1)
        return self.base(x) + z[..., :self.d_out]


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, d, ffn, heads, kv_heads):
        super().__init__()
        hd = d // heads
        self.heads, self.kv_heads, self.hd = heads, kv_heads, hd
        self.q_proj = nn.Linear(d, heads * hd, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(heads * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)
        self.ln1 = nn.Parameter(torch.ones(d))
        self.ln2 = nn.Parameter(torch.ones(d))

    def forward(self, x, cos, sin, mask):
        bsz, t, _ = x.shape
        h = rms_norm(x, self.ln1)
        q = self.q_proj(h).view(bsz, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(bsz, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(bsz, t, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.heads // self.kv_heads
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(bsz, t, -1)
        x = x + self.o_proj(o)
        h = rms_norm(x, self.ln2)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, d, layers, ffn, heads, kv_heads, vocab, max_t):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = nn.ModuleList(Block(d, ffn, heads, kv_heads) for _ in range(layers))
        self.norm = nn.Parameter(torch.ones(d))
        hd = d // heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(max_t).float(), inv)
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embed(ids)
        mask = torch.full((t, t), float("-inf")).triu(1)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(rms_norm(x, self.norm), self.embed.weight)


MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(args, method):
    d, layers, ffn, heads, kv = (int(v) for v in args.random.split(","))
    torch.manual_seed(1)
    model = Llama(d, layers, ffn, heads, kv, 259, max(256, args.seq_len))
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = []
    for layer in model.layers:
        for name in MODULES:
            base = getattr(layer, name)
            if method == "full":
                base.weight.requires_grad_(True)
                trainable.append(base.weight)
                continue
            wrapped = Lora(base, args.rank, 2.0 * args.rank) if method == "lora" else MoraRotation(base, args.rank)
            setattr(layer, name, wrapped)
            trainable += [p for n, p in wrapped.named_parameters() if not n.startswith("base.")]
    return model, trainable


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", default="1024,8,2816,16,4")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--methods", default="lora,rotation,full")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="intra-op threads (Debian's build starts with 1; bench step uses every core)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(0, 256, (args.batch_size, args.seq_len + 1), generator=g)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    for method in args.methods.split(","):
        model, trainable = build(args, method)
        opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
        times = []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=False)
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(json.dumps({"method": method if method != "rotation" else "mora",
                          "variant": "rotation" if method == "rotation" else "",
                          "trainable_params": sum(p.numel() for p in trainable),
                          "ms_per_step": times[len(times) // 2],
                          "engine": "pytorch-eager " + torch.__version__,
                          "threads": torch.get_num_threads()}), flush=True)
        del model, opt


if __name__ == "__main__":
    main()
