#!/usr/bin/env python3
"""PyTorch CPU anchor for the wasm benchmark: SD-1.5's UNet in plain torch, timed like bench/run-bench.ts.

diffusers cannot be installed offline here, so the UNet is written out below in plain torch, module for module
as diffusers v0.30.3 builds SD-1.5's UNet2DConditionModel (ResnetBlock2D, Transformer2DModel with 1x1 proj_in/out,
BasicTransformerBlock with GEGLU, Downsample2D, Upsample2D), from test/fixtures/configs/sd15_unet.json. Attention
is diffusers' AttnProcessor for torch < 2 (baddbmm, softmax, bmm). Weights are random (timing does not depend on
their values). Two checks make it like-for-like with bench/bench.ts: the parameter count must be SD-1.5's
859,520,964, and the conv + linear MACs counted with forward hooks are printed beside bench/macs.ts's count.

Measured: one batch-2 forward (classifier-free guidance) and one batch-1 forward, wall and process-CPU seconds,
after a warm-up of each; then optionally a loop of `--steps` batch-2 steps with the same stand-in update
x <- x - 0.01 * eps as bench/run-bench.ts. Torch's thread count is set explicitly, and the BLAS/LAPACK and oneDNN
that torch reports, plus the BLAS library actually loaded (from /proc/self/maps), are printed with the figures.

  /usr/bin/python3 bench/pytorch-anchor.py [--threads 2] [--mkldnn on|off] [--height 128 --width 128] [--reps 2] [--steps 0] [--json]

Debian's python3-torch links libblas.so.3, i.e. whichever BLAS `update-alternatives` selects (the reference BLAS
unless OpenBLAS is installed). To try OpenBLAS without changing the system's choice:
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 bench/pytorch-anchor.py
"""
import argparse
import json
import math
import os
import platform
import re
import time

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, '..', 'test', 'fixtures', 'configs', 'sd15_unet.json')
SD15_PARAMS = 859_520_964


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, context=None):
        b, n, c = x.shape
        ctx = x if context is None else context
        h = self.heads

        def split(t):
            return t.reshape(b, -1, h, c // h).permute(0, 2, 1, 3).reshape(b * h, -1, c // h)

        q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
        # diffusers' AttnProcessor (torch < 2.0): baddbmm with beta 0, softmax, bmm.
        scores = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype), q, k.transpose(-1, -2),
                               beta=0, alpha=self.scale)
        out = torch.bmm(scores.softmax(dim=-1), v)
        out = out.reshape(b, h, n, c // h).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, dim, heads, context_dim, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(dim, heads, context_dim)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        h = h.reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class Downsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class Block(nn.Module):
    """A down or up block: resnets, a transformer after each resnet (cross-attention blocks), a resampler."""

    def __init__(self, resnets, attentions, sampler):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)
        self.samplers = nn.ModuleList([sampler] if sampler is not None else [])


class UNetSD15(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        expected = (['CrossAttnDownBlock2D'] * 3 + ['DownBlock2D'], ['UpBlock2D'] + ['CrossAttnUpBlock2D'] * 3)
        if (cfg['down_block_types'], cfg['up_block_types']) != expected or cfg['use_linear_projection']:
            raise SystemExit('pytorch-anchor.py builds SD-1.5\'s UNet layout only (see the module docstring)')
        ch = cfg['block_out_channels']
        temb = ch[0] * 4
        g, eps = cfg['norm_num_groups'], cfg['norm_eps']
        heads = cfg['attention_head_dim']  # diffusers' SD-1.5 config names the head count this way
        ctx = cfg['cross_attention_dim']
        layers = cfg['layers_per_block']
        self.time_dim = ch[0]
        self.time_embedding = nn.Sequential(nn.Linear(ch[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg['in_channels'], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cin = ch[0]
        for i, cout in enumerate(ch):
            last = i == len(ch) - 1
            resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, temb, g, eps) for j in range(layers)]
            attns = [] if last else [Transformer2DModel(cout, heads, ctx, g) for _ in range(layers)]
            self.down_blocks.append(Block(resnets, attns, None if last else Downsample2D(cout)))
            cin = cout
        self.mid_resnets = nn.ModuleList([ResnetBlock2D(ch[-1], ch[-1], temb, g, eps) for _ in range(2)])
        self.mid_attention = Transformer2DModel(ch[-1], heads, ctx, g)
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        prev = rev[0]
        for i, cout in enumerate(rev):
            last = i == len(rev) - 1
            cskip_in = rev[min(i + 1, len(rev) - 1)]
            resnets = []
            for j in range(layers + 1):
                skip = cskip_in if j == layers else cout
                resnets.append(ResnetBlock2D((prev if j == 0 else cout) + skip, cout, temb, g, eps))
            attns = [] if i == 0 else [Transformer2DModel(cout, heads, ctx, g) for _ in range(layers + 1)]
            self.up_blocks.append(Block(resnets, attns, None if last else Upsample2D(cout)))
            prev = cout
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg['out_channels'], 3, padding=1)

    def timestep_embedding(self, t, batch):
        # diffusers Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin].
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = torch.full((batch,), float(t))[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, context):
        temb = self.time_embedding(self.timestep_embedding(t, x.shape[0]))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(h, temb)
                if len(blk.attentions):
                    h = blk.attentions[j](h, context)
                skips.append(h)
            for s in blk.samplers:
                h = s(h)
                skips.append(h)
        h = self.mid_resnets[0](h, temb)
        h = self.mid_attention(h, context)
        h = self.mid_resnets[1](h, temb)
        for blk in self.up_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), temb)
                if len(blk.attentions):
                    h = blk.attentions[j](h, context)
            for s in blk.samplers:
                h = s(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def count_macs(model, run):
    """Conv2d and Linear MACs of one call of `run` (thop's convention, as bench/macs.ts)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    run()
    for h in hs:
        h.remove()
    return total[0]


def build_info():
    """What torch says it was built with: BLAS, LAPACK, oneDNN, OpenMP (torch.__config__.show())."""
    show = torch.__config__.show()
    lines = [ln.strip(' -') for ln in show.splitlines() if re.match(r'\s*- (Intel|OpenMP|LAPACK|CPU capability)', ln)]
    keys = dict(re.findall(r'(BLAS_INFO|LAPACK_INFO|USE_MKLDNN|USE_OPENMP)=([^,\s]+)', show))
    return lines + [f'{k}={v}' for k, v in keys.items()]


def loaded_libraries():
    """BLAS, LAPACK, OpenMP and oneDNN libraries mapped into this process."""
    libs = set()
    with open('/proc/self/maps') as f:
        for line in f:
            p = line.split()[-1]
            if re.search(r'blas|lapack|mkl|gomp|omp|dnnl|mkldnn', os.path.basename(p)):
                libs.add(os.path.realpath(p))
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--mkldnn', choices=['on', 'off'], default='on')
    ap.add_argument('--height', type=int, default=128)
    ap.add_argument('--width', type=int, default=128)
    ap.add_argument('--reps', type=int, default=2)
    ap.add_argument('--steps', type=int, default=0, help='batch-2 loop steps after the forwards (0: none)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    if a.height % 64 or a.width % 64:
        raise SystemExit('--height/--width must be multiples of 64 (SD-1.5 downsamples the latent 3 times)')

    torch.set_num_threads(a.threads)
    torch.backends.mkldnn.enabled = a.mkldnn == 'on'
    torch.manual_seed(a.seed)
    with open(CONFIG) as f:
        cfg = json.load(f)
    model = UNetSD15(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    if params != SD15_PARAMS:
        raise SystemExit(f'built {params} parameters, SD-1.5 has {SD15_PARAMS}: the architecture does not match')
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)

    lh, lw = a.height // 8, a.width // 8
    x0 = torch.randn(1, 4, lh, lw)
    text = torch.randn(2, 77, cfg['cross_attention_dim'])
    log = (lambda s: None) if a.json else print

    def eps(x, t, batch):
        if batch == 1:
            return model(x, t, text[:1])
        u, c = model(torch.cat([x, x]), t, text).chunk(2)
        return u + 7.5 * (c - u)

    def timed(fn):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0

    result = {
        'torch': torch.__version__, 'python': platform.python_version(), 'machine': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(), 'threads': torch.get_num_threads(), 'interopThreads': torch.get_num_interop_threads(),
        'mkldnnEnabled': torch.backends.mkldnn.enabled, 'mkldnnAvailable': torch.backends.mkldnn.is_available(),
        'blasInfo': build_info(),
        'height': a.height, 'width': a.width, 'params': params, 'loadAverageBefore': os.getloadavg()[0],
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    with torch.no_grad():
        result['macsPerSample'] = count_macs(model, lambda: model(x0, 999, text[:1]))
        result['libraries'] = loaded_libraries()
        log(f"torch {result['torch']}, {result['threads']} threads, mkldnn {'on' if result['mkldnnEnabled'] else 'off'}")
        for ln in result['blasInfo']:
            log(f'  {ln}')
        log(f"  loaded: {', '.join(result['libraries'])}")
        log(f"SD-1.5 UNet, {params} parameters; {result['macsPerSample'] / 1e9:.3f} GMACs per sample at {a.height}x{a.width}")
        for batch in (2, 1):
            timed(lambda: eps(x0, 999, batch))  # warm-up
            runs = [timed(lambda: eps(x0, 999, batch)) for _ in range(a.reps)]
            result[f'forwardSecondsBatch{batch}All'] = [w for w, _ in runs]
            result[f'forwardCpuSecondsBatch{batch}All'] = [c for _, c in runs]
            log(f"forward batch {batch}: {', '.join(f'{w:.2f} s wall ({c:.2f} CPU)' for w, c in runs)}")
        if a.steps > 0:
            state = {'x': x0.clone()}

            def loop():
                for i in range(a.steps):
                    state['x'] = state['x'] - 0.01 * eps(state['x'], round(999 - i * 1000 / a.steps), 2)

            w, c = timed(loop)
            result.update(loopSteps=a.steps, baselineSeconds=w, baselineCpuSeconds=c, baselineSecondsPerStep=w / a.steps)
            log(f'{a.steps}-step batch-2 loop: {w:.2f} s wall ({c:.2f} CPU), {w / a.steps:.2f} s a step')
    result['loadAverageAfter'] = os.getloadavg()[0]
    if a.json:
        print(json.dumps(result))


if __name__ == '__main__':
    main()
