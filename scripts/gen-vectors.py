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


# ---------------------------------------------------------------------------------------- LoRA

def lora_case(name, seed, T, n, m, r, s):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    a, b = d.uniform((r, n), 1 / math.sqrt(n)), d.uniform((m, r), 0.5)
    y, merged, g = run_layer(x, w0, dy, lambda a, b: w0 + s * (b @ a), {'a': a, 'b': b})
    return {
        'name': name,
        'params': base('lora', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }


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


def bora_case(name, seed, T, n, m, r, s, blocks, transform, sigma=None):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
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
    return {
        'name': name,
        'params': base('bora', T, n, m, r, s, blocks=blocks, sigmaTransform=transform),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy),
                   ('sigma_raw' if raw else 'sigma'): tensor(sigma)},
        'outputs': outputs,
    }


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


def sbora_fa_case(name, seed, T, n, m, r, s):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    b = d.uniform((m, r), 0.5)
    index = d.distinct(r, n)
    a_fixed = one_hot_rows(index, n)
    y, merged, g = run_layer(x, w0, dy, lambda b: w0 + s * (b @ a_fixed), {'b': b})
    return {
        'name': name,
        'params': base('sbora-fa', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'b': tensor(b), 'index': integers(index), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }


def sbora_fb_case(name, seed, T, n, m, r, s):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
    a = d.uniform((r, n), 0.5)
    index = d.distinct(r, m)
    b_fixed = one_hot_rows(index, m).T
    y, merged, g = run_layer(x, w0, dy, lambda a: w0 + s * (b_fixed @ a), {'a': a})
    return {
        'name': name,
        'params': base('sbora-fb', T, n, m, r, s),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'index': integers(index), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }


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


def lorma_case(name, seed, T, n, m, r, s, inflation, order, at_init=False):
    d = Draw(seed)
    s = f32(s)
    x, w0, dy = d.uniform((T, n), 1.0), d.uniform((m, n), 1 / math.sqrt(n)), d.uniform((T, m), 1.0)
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
    return {
        'name': name,
        'params': base('lorma', T, n, m, r, s, inflation=inflation, order=order),
        'inputs': {'x': tensor(x), 'w0': tensor(w0), 'a': tensor(a), 'b': tensor(b), 'dy': tensor(dy)},
        'outputs': {'y': tensor(y), 'dx': tensor(g['dx']), 'da': tensor(g['da']), 'db': tensor(g['db']),
                    'delta_w': tensor(merged - w0), 'merged': tensor(merged)},
    }


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
