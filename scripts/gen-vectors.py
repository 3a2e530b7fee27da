#!/usr/bin/env python3
"""Writes test/vectors/cases.json: the package's own test vectors (format: docs/vectors.md).

Every expected output comes from PyTorch autograd in float64, written from the math in
docs/math.md and nothing else: each method is expressed as one dense adapted weight W' (or a dense
multiplier M), the layer as Y = X W'^T, and the gradients are whatever autograd finds for
L = sum(Y * dY). The GPU kernels never build W' and derive their gradients by hand, so agreement
between the two says something about both.

Inputs are drawn from a seeded generator per case and rounded to float32 before anything is
computed, so the float64 answers are exact for the very numbers the GPU receives. Run from the
repository root:

    python3 scripts/gen-vectors.py            # rewrite test/vectors/cases.json
    python3 scripts/gen-vectors.py --out F    # somewhere else

Needs only torch (Debian: apt-get install python3-torch).
"""

import argparse
import json
import math
import os
import sys

import torch

torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, '..', 'test', 'vectors', 'cases.json')


class Draw:
    """Seeded uniform draws, rounded to float32 so the file holds what the device will see."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def uniform(self, shape, bound):
        u = torch.rand(*shape, generator=self.gen, dtype=torch.float64)
        return ((2 * u - 1) * bound).float().double()

    def distinct(self, count, below):
        # Unsorted on purpose: the kernels must not rely on ordered index sets.
        return torch.randperm(below, generator=self.gen)[:count].tolist()


def f32(value):
    """A scalar parameter as the device holds it (the scale reaches the GPU as f32)."""
    return float(torch.tensor(value).float().double())


def tensor(t):
    return {'shape': list(t.shape), 'data': [float(v) for v in t.reshape(-1).tolist()]}


def integers(values):
    return {'shape': [len(values)], 'data': [int(v) for v in values]}


def run_layer(x, w0, dy, weight_of, trainable):
    """Y = X W'^T with W' = weight_of(); returns Y, W' and the autograd gradients of sum(Y * dY)."""
    x = x.clone().requires_grad_(True)
    leaves = {k: v.clone().requires_grad_(True) for k, v in trainable.items()}
    w = weight_of(**leaves)
    y = x @ w.T
    (y * dy).sum().backward()
    grads = {'dx': x.grad}
    for k, v in leaves.items():
        grads['d' + k] = v.grad
    return y.detach(), w.detach(), grads


def base(method, T, n, m, r, s, **extra):
    return {'method': method, 'T': T, 'inFeatures': n, 'outFeatures': m, 'rank': r, 'scale': s, **extra}


# ---------------------------------------------------------------------------------- base formats

# The 16 NF4 levels (QLoRA, bitsandbytes), code 0 to 15, as float32.
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)


def nf4_quantize(w, block):
    """bitsandbytes' rule: absmax per block of `block` row-major values; code = the level nearest
    to value * (1/absmax), reciprocal and product in float32, a tie taking the lower code (argmin
    returns the first minimum); an all-zero block is code 7 (the level 0). Returns the packed
    bytes (value 2j in the high nibble of byte j), absmax and the dequantized float32 values."""
    flat = w.reshape(-1).float()
    count = flat.numel()
    nb = -(-count // block)
    padded = torch.zeros(nb * block, dtype=torch.float32)
    padded[:count] = flat
    blocks = padded.view(nb, block)
    absmax = blocks.abs().max(dim=1).values
    # 1/absmax in float64 rounded once to float32 is the correctly rounded float32 quotient.
    recip = (1.0 / absmax.double()).float()
    x = blocks * recip[:, None]
    codes = (x.double()[:, :, None] - NF4.double()[None, None, :]).abs().argmin(dim=2)
    codes[absmax == 0] = 7
    codes = codes.reshape(-1)[:count]
    hi = codes[0::2]
    lo = torch.zeros_like(hi)
    lo[:codes[1::2].numel()] = codes[1::2]
    packed = (hi * 16 + lo).tolist()
    deq = (NF4[codes] * absmax.repeat_interleave(block)[:count]).reshape(w.shape)
    return packed, absmax, deq.double()


def base_weight(w0, fmt, block):
    """W0 in a base format: the values the kernels see (f16-exact, or NF4 dequantized), the
    case's inputs that carry it, and its params."""
    if fmt is None:
        return w0, {'w0': tensor(w0)}, {}
    if fmt == 'f16':
        w = w0.half().double()
        return w, {'w0': tensor(w)}, {'baseFormat': 'f16'}
    packed, absmax, deq = nf4_quantize(w0, block)
    return deq, {'w0_codes': integers(packed), 'w0_absmax': tensor(absmax.double())}, {'baseFormat': 'nf4', 'blockSize': block}


def with_base(case, w0_inputs, params):
    """The case with its w0 input replaced by the base format's inputs (kept in the same place)."""
    inputs = {}
    for k, v in case['inputs'].items():
        if k == 'w0':
            inputs.update(w0_inputs)
        else:
            inputs[k] = v
    case['inputs'] = inputs
    case['params'].update(params)
    return case


def quantize_case(name, w, block):
    packed, absmax, deq = nf4_quantize(w, block)
    m, n = w.shape
    return {
        'name': name,
        'params': {'method': 'quantize-nf4', 'outFeatures': m, 'inFeatures': n, 'blockSize': block},
        'inputs': {'w0': tensor(w)},
        'outputs': {'w0_codes': integers(packed), 'w0_absmax': tensor(absmax.double()), 'w0_dequant': tensor(deq)},
    }


def f32_below(v):
    """The float32 just below a float32 v > 0 (or above, for v < 0: toward zero)."""
    t = torch.tensor([v], dtype=torch.float32)
    return float(torch.nextafter(t, torch.zeros(1, dtype=torch.float32))[0])


def f32_above(v):
    t = torch.tensor([v], dtype=torch.float32)
    return float(torch.nextafter(t, torch.full((1,), 2.0, dtype=torch.float32))[0])


def quantize_edges():
    """Blocks of 32 that pin the rule down: exact ties, the float32s either side of each
    midpoint, an all-zero block, blocks of one repeated value, scaled ties; 7 x 37 = 259 values,
    an odd count whose last block holds 3 values."""
    lv = NF4.double().tolist()
    mids = [(lv[k] + lv[k + 1]) / 2 for k in range(15)]
    exact = [mv for mv in mids if float(torch.tensor(mv, dtype=torch.float32)) == mv]
    vals = []
    # Block 0: absmax 1 (1/absmax = 1), every representable midpoint (a tie: lower code) and its
    # float32 neighbours.
    b = [1.0]
    for mv in exact:
        b += [mv, f32_above(mv) if mv > 0 else f32_below(mv)]
    vals += (b + [0.0] * 32)[:32]
    # Block 1: the float32s around the other midpoints (not representable: no tie, nearest wins).
    b = [-1.0]
    for mv in mids:
        if mv not in exact:
            f = float(torch.tensor(mv, dtype=torch.float32))
            b += [f32_below(f), f, f32_above(f)]
    vals += (b + [0.0] * 32)[:32]
    vals += [0.0] * 32                                  # block 2: all zero
    vals += [0.3] * 32                                  # block 3: one value (code 15)
    vals += [-2.5e-3] * 32                              # block 4: one value (code 0)
    vals += [v * 2.0 ** -20 for v in ([1.0] + exact * 6)[:32]]    # block 5: ties under absmax 2^-20
    g = torch.Generator().manual_seed(77)
    vals += ((torch.rand(32, generator=g, dtype=torch.float64) * 2 - 1) * 3.7).tolist()  # block 6
    vals += ((torch.rand(32, generator=g, dtype=torch.float64) * 2 - 1) * 1e-3).tolist()  # block 7
    vals += [0.1, -0.05, 0.2]                           # block 8: partial (3 values)
    return torch.tensor(vals, dtype=torch.float64).float().double().reshape(7, 37)


# ---------------------------------------------------------------------------------------- LoRA

def lora_case(name, seed, T, n, m, r, s, fmt=None, block=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    w0, w0_inputs, w0_params = base_weight(w0, fmt, block)
    a, b = d.uniform((r, n), 1 / math.sqrt(n)), d.uniform((m, r), 0.5)
    y, merged, g = run_layer(x, w0, dy, lambda a, b: w0 + s * (b @ a), {'a': a, 'b': b})
    return with_base({
        'name': name,
        'params': base('lora', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }, w0_inputs, w0_params)


# ---------------------------------------------------------------------------------------- BoRA

def sigma_transform(sigma, transform):
    # mu stays in the graph: the gradient with respect to sigma flows through the mean as well.
    if transform == 'raw':
        return sigma
    if transform == 'exp':
        return torch.exp(sigma)
    mu = sigma.abs().mean()
    if transform == 'mav':
        return sigma / mu
    if transform == 'exp-mav':
        return torch.exp(sigma / mu)
    raise ValueError(transform)


def bora_delta(a, b, big_sigma, blocks, s):
    """Delta W assembled block by block: block (j, k) is s * B_j diag(Sigma[j, k]) A_k."""
    m, r = b.shape
    n = a.shape[1]
    mb, nb = m // blocks, n // blocks
    rows = []
    for j in range(blocks):
        bj = b[j * mb:(j + 1) * mb, :]
        rows.append(torch.cat([s * (bj * big_sigma[j, k]) @ a[:, k * nb:(k + 1) * nb] for k in range(blocks)], dim=1))
    return torch.cat(rows, dim=0)


def bora_case(name, seed, T, n, m, r, s, blocks, transform, sigma=None, fmt=None, block=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    w0, w0_inputs, w0_params = base_weight(w0, fmt, block)
    a, b = d.uniform((r, n), 1 / math.sqrt(n)), d.uniform((m, r), 0.5)
    if sigma is None:
        sigma = d.uniform((blocks, blocks, r), 1.0)
    raw = transform == 'raw'

    def weight(a, b, sigma):
        return w0 + bora_delta(a, b, sigma_transform(sigma, transform), blocks, s)

    y, merged, g = run_layer(x, w0, dy, weight, {'a': a, 'b': b, 'sigma': sigma})
    outputs = {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']), 'db': tensor(g['db']),
               'sigma_eff': tensor(sigma_transform(sigma, transform)),
               'delta_w': tensor(merged - w0), 'merged': tensor(merged)}
    if not raw:
        outputs['dsigma'] = tensor(g['dsigma'])
    return with_base({
        'name': name,
        'params': base('bora', T, n, m, r, s, blocks=blocks, sigmaTransform=transform),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy),
                   ('sigma_raw' if raw else 'sigma'): tensor(sigma)},
        'outputs': outputs,
    }, w0_inputs, w0_params)


def melora_sigma(blocks, r):
    """Sigma that turns BoRA into MELoRA: identity on the diagonal blocks, zero elsewhere."""
    sig = torch.zeros(blocks, blocks, r)
    for j in range(blocks):
        sig[j, j, :] = 1
    return sig


# --------------------------------------------------------------------------------------- SBoRA

def one_hot_rows(index, size):
    """The frozen standard-basis factor as a dense [r, size] matrix: row q is e_{index[q]}."""
    e = torch.zeros(len(index), size)
    for q, i in enumerate(index):
        e[q, i] = 1
    return e


def sbora_fa_case(name, seed, T, n, m, r, s, fmt=None, block=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    w0, w0_inputs, w0_params = base_weight(w0, fmt, block)
    b = d.uniform((m, r), 0.5)
    index = d.distinct(r, n)
    a_fixed = one_hot_rows(index, n)
    y, merged, g = run_layer(x, w0, dy, lambda b: w0 + s * (b @ a_fixed), {'b': b})
    return with_base({
        'name': name,
        'params': base('sbora-fa', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'b': tensor(b), 'index': integers(index), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }, w0_inputs, w0_params)


def sbora_fb_case(name, seed, T, n, m, r, s, fmt=None, block=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    w0, w0_inputs, w0_params = base_weight(w0, fmt, block)
    a = d.uniform((r, n), 0.5)
    index = d.distinct(r, m)
    b_fixed = one_hot_rows(index, m).T
    y, merged, g = run_layer(x, w0, dy, lambda a: w0 + s * (b_fixed @ a), {'a': a})
    return with_base({
        'name': name,
        'params': base('sbora-fb', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'index': integers(index), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }, w0_inputs, w0_params)


# --------------------------------------------------------------------------------------- LoRMA

def rotate_rows(p):
    """pi(P)[i, c] = P[i, (c - i) mod d]: row i shifted right by i places, wrapping around."""
    d = p.shape[0]
    i = torch.arange(d).unsqueeze(1)
    c = torch.arange(d).unsqueeze(0)
    return torch.gather(p, 1, (c - i) % d)


def lorma_multiplier(a, b, s, inflation):
    p = b @ a
    if inflation == 'pi':
        return s * rotate_rows(p)
    if inflation == 'plus':
        return torch.eye(p.shape[0]) + s * p
    if inflation == 'none':
        return s * p
    raise ValueError(inflation)


def lorma_case(name, seed, T, n, m, r, s, inflation, order, at_init=False, fmt=None, block=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    w0, w0_inputs, w0_params = base_weight(w0, fmt, block)
    dim = m if order == 'pre' else n
    if at_init:
        # The pi init: B[:, 0] = 1, A = e_0 (scaled by 1/sqrt(s) each), so M = I up to rounding.
        b = d.uniform((dim, r), 1 / math.sqrt(r))
        b[:, 0] = 1
        a = torch.zeros(r, dim)
        a[0, 0] = 1
        root = math.sqrt(s)
        a, b = (a / root).float().double(), (b / root).float().double()
    else:
        a, b = d.uniform((r, dim), 1 / math.sqrt(dim)), d.uniform((dim, r), 1 / math.sqrt(r))

    def weight(a, b):
        mult = lorma_multiplier(a, b, s, inflation)
        return mult @ w0 if order == 'pre' else w0 @ mult

    y, merged, g = run_layer(x, w0, dy, weight, {'a': a, 'b': b})
    return with_base({
        'name': name,
        'params': base('lorma', T, n, m, r, s, inflation=inflation, order=order),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }, w0_inputs, w0_params)


# ------------------------------------------------------------------------------------- attention

def attention_case(name, seed, batch, T, heads, head_dim, causal, scale=None):
    """Multi-head attention on rows [batch*T, heads*headDim], by the textbook formula (a full
    T x T softmax per head, masked with -inf above the diagonal when causal); gradients of
    L = sum(Y * dY) by autograd."""
    g = Draw(seed)
    rows, cols = batch * T, heads * head_dim
    s = f32(scale if scale is not None else 1 / math.sqrt(head_dim))
    q, k, v = (g.uniform((rows, cols), 2.0 if i < 2 else 1.0) for i in range(3))
    dy = g.uniform((rows, cols), 1.0)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]

    def heads_of(t):  # [batch, heads, T, headDim]
        return t.reshape(batch, T, heads, head_dim).transpose(1, 2)

    qh, kh, vh = (heads_of(t) for t in leaves)
    scores = s * qh @ kh.transpose(-1, -2)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))
    y = (torch.softmax(scores, dim=-1) @ vh).transpose(1, 2).reshape(rows, cols)
    (y * dy).sum().backward()
    return {
        'name': name,
        'params': {'method': 'attention', 'batch': batch, 'T': T, 'heads': heads, 'headDim': head_dim, 'causal': causal, 'scale': s},
        'inputs': {'q': tensor(q), 'k': tensor(k), 'v': tensor(v), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y.detach()), 'dq': tensor(leaves[0].grad), 'dk': tensor(leaves[1].grad), 'dv': tensor(leaves[2].grad)},
    }


def attention_cases():
    # T = 1; heads*headDim no multiple of 4; batch 2; full and causal; the default and custom scales.
    return [
        attention_case('attention-t1', 80, 1, 1, 2, 16, True),
        attention_case('attention-causal', 81, 1, 13, 3, 17, True),
        attention_case('attention-full-b2', 82, 2, 9, 2, 24, False, 0.3),
        attention_case('attention-causal-b2', 83, 2, 11, 1, 33, True, 0.25),
    ]


# ----------------------------------------------------------------------------------------- cases

def cases():
    # Small odd sizes: no dimension is a multiple of any tile or workgroup size the kernels use.
    T, n, m, r = 3, 10, 7, 2
    out = [
        lora_case('lora', 1, T, n, m, r, 2.0),
        lora_case('lora-r3', 2, 5, 9, 11, 3, 0.75),
        sbora_fa_case('sbora-fa', 20, T, n, m, r, 2.0),
        sbora_fb_case('sbora-fb', 21, T, n, m, r, 2.0),
        sbora_fa_case('sbora-fa-r3', 22, 5, 9, 11, 3, 1.5),
        sbora_fb_case('sbora-fb-r3', 23, 5, 9, 11, 3, 1.5),
    ]
    # BoRA needs blocks | n and blocks | m.
    for i, transform in enumerate(['exp-mav', 'exp', 'mav', 'raw']):
        out.append(bora_case(f'bora-{transform}', 10 + i, T, n, 6, r, 2.0, 2, transform))
    out.append(bora_case('bora-exp-mav-b3', 14, 5, 9, 6, 3, 1.5, 3, 'exp-mav'))
    out.append(bora_case('bora-raw-melora', 15, T, n, 6, r, 2.0, 2, 'raw', sigma=melora_sigma(2, r)))
    seed = 30
    for inflation in ['plus', 'pi', 'none']:
        for order in ['pre', 'post']:
            out.append(lorma_case(f'lorma-{inflation}-{order}', seed, T, n, m, r, 1.5 if inflation == 'plus' else 2.0, inflation, order))
            seed += 1
    out.append(lorma_case('lorma-pi-pre-init', 40, T, n, m, r, 2.0, 'pi', 'pre', at_init=True))
    out.append(lorma_case('lorma-pi-post-init', 41, T, n, m, r, 2.0, 'pi', 'post', at_init=True))
    # Base formats: every family with an f16 and an NF4 W0. Element counts are no multiple of the
    # block size (the last block is partial) and mostly odd (a lone last code).
    out += [
        lora_case('lora-f16', 50, T, n, m, r, 2.0, fmt='f16'),
        lora_case('lora-nf4-b32', 51, T, 11, m, r, 2.0, fmt='nf4', block=32),            # 77 values
        lora_case('lora-nf4-b4096', 52, 3, 67, 71, 2, 1.5, fmt='nf4', block=4096),       # 4757: 2 blocks
        bora_case('bora-f16', 53, T, n, 6, r, 2.0, 2, 'exp-mav', fmt='f16'),
        bora_case('bora-nf4-b32', 54, 5, 9, 6, 3, 1.5, 3, 'exp-mav', fmt='nf4', block=32),  # 54 values
        bora_case('bora-raw-nf4-b64', 55, T, 14, 10, r, 2.0, 2, 'raw', fmt='nf4', block=64),  # 140
        sbora_fa_case('sbora-fa-f16', 56, T, n, m, r, 2.0, fmt='f16'),
        sbora_fa_case('sbora-fa-nf4-b64', 57, 5, 13, 11, 3, 1.5, fmt='nf4', block=64),    # 143
        sbora_fb_case('sbora-fb-f16', 58, T, n, m, r, 2.0, fmt='f16'),
        sbora_fb_case('sbora-fb-nf4-b32', 59, 5, 9, 11, 3, 1.5, fmt='nf4', block=32),     # 99
        lorma_case('lorma-pi-pre-f16', 60, T, n, m, r, 2.0, 'pi', 'pre', fmt='f16'),
        lorma_case('lorma-pi-post-nf4-b32', 61, T, 11, m, r, 2.0, 'pi', 'post', fmt='nf4', block=32),
        lorma_case('lorma-plus-pre-nf4-b64', 62, T, 13, 9, r, 1.5, 'plus', 'pre', fmt='nf4', block=64),  # 117
        lorma_case('lorma-none-post-f16', 63, T, n, m, r, 2.0, 'none', 'post', fmt='f16'),
    ]
    # The quantizer alone: its edge blocks, and random weights at block sizes 32 to 4096.
    g = Draw(70)
    out += [
        quantize_case('quantize-nf4-edges-b32', quantize_edges(), 32),
        quantize_case('quantize-nf4-b64', g.uniform((37, 29), 0.2), 64),          # 1073: last block 49
        quantize_case('quantize-nf4-b128', g.uniform((13, 50), 2.0), 128),        # 650: last block 10
        quantize_case('quantize-nf4-b4096', g.uniform((61, 71), 0.05), 4096),     # 4331: last block 235
    ]
    out += attention_cases()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help='where to write the vector file')
    args = parser.parse_args()
    doc = {'generator': f'scripts/gen-vectors.py, torch {torch.__version__}, float64 autograd', 'cases': cases()}
    # One case per line: small, and a regenerated file diffs case by case.
    lines = ',\n'.join('    ' + json.dumps(c, separators=(',', ':')) for c in doc['cases'])
    text = '{"generator":' + json.dumps(doc['generator']) + ',\n  "cases":[\n' + lines + '\n  ]}\n'
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'{len(doc["cases"])} cases, {len(text)} bytes -> {os.path.relpath(args.out)}', file=sys.stderr)


if __name__ == '__main__':
    main()
