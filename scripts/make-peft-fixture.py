#!/usr/bin/env python3
"""Writes test/fixtures/peft-lora/: a LoRA adapter laid out as HF PEFT saves one, built from PEFT's
documented format (no PEFT needed), with the base weights and the expected layer outputs.

- adapter_model.safetensors: keys 'base_model.model.<module path>.lora_A.weight' [r, n] and
  '.lora_B.weight' [m, r]; q_proj tensors stored as F16, v_proj tensors as BF16 (the dtypes a
  model in half precision saves), so loading must widen both.
- adapter_config.json: the fields PEFT's LoraConfig writes, target_modules as short names
  (["q_proj", "v_proj"]) that PEFT matches against the end of each module path.
- expected.json: per module, W0 [m, n] and x [T, n] (f32 values), and y = x W0^T + s x A^T B^T in
  float64 from the stored (rounded) A and B, with s = lora_alpha / r.

Run: python3 scripts/make-peft-fixture.py   (standard library only; deterministic)
"""
import json
import os
import random
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'peft-lora')
T, N, M, R, ALPHA = 3, 10, 6, 2, 8
MODULES = {
    'model.layers.0.self_attn.q_proj': 'F16',
    'model.layers.0.self_attn.v_proj': 'BF16',
    'model.layers.1.self_attn.q_proj': 'F16',
}

rng = random.Random(20261204)


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


def f16_bytes(values):
    return b''.join(struct.pack('<e', v) for v in values)


def f16_round(values):
    return [struct.unpack('<e', struct.pack('<e', v))[0] for v in values]


def bf16_bits(v):
    (bits,) = struct.unpack('<I', struct.pack('<f', v))
    # Round to nearest, ties to even, on the dropped 16 bits.
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def bf16_bytes(values):
    return b''.join(struct.pack('<H', bf16_bits(v)) for v in values)


def bf16_round(values):
    return [struct.unpack('<f', struct.pack('<I', bf16_bits(v) << 16))[0] for v in values]


def uniform(count, bound):
    return [f32(rng.uniform(-bound, bound)) for _ in range(count)]


tensors = []  # (key, dtype, shape, bytes)
expected = {}
for module, dtype in MODULES.items():
    a = uniform(R * N, 0.5)
    b = uniform(M * R, 0.5)
    enc, rnd = (f16_bytes, f16_round) if dtype == 'F16' else (bf16_bytes, bf16_round)
    tensors.append((f'base_model.model.{module}.lora_A.weight', dtype, [R, N], enc(a)))
    tensors.append((f'base_model.model.{module}.lora_B.weight', dtype, [M, R], enc(b)))
    a, b = rnd(a), rnd(b)
    w0 = uniform(M * N, 0.5)
    x = uniform(T * N, 1.0)
    s = ALPHA / R
    y = []
    for t in range(T):
        z = [sum(x[t * N + k] * a[q * N + k] for k in range(N)) for q in range(R)]
        for i in range(M):
            base = sum(x[t * N + k] * w0[i * N + k] for k in range(N))
            y.append(base + s * sum(z[q] * b[i * R + q] for q in range(R)))
    expected[module] = {'n': N, 'm': M, 'T': T, 'w0': w0, 'x': x, 'y': y}

# safetensors: u64 little-endian header length, JSON header (padded with spaces to 8 bytes), data.
header = {'__metadata__': {'format': 'pt'}}
offset = 0
for key, dtype, shape, data in sorted(tensors):
    header[key] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(data)]}
    offset += len(data)
text = json.dumps(header, separators=(',', ':')).encode()
text += b' ' * (-len(text) % 8)
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, 'adapter_model.safetensors'), 'wb') as f:
    f.write(struct.pack('<Q', len(text)))
    f.write(text)
    for _key, _dtype, _shape, data in sorted(tensors):
        f.write(data)

config = {
    'alpha_pattern': {},
    'auto_mapping': None,
    'base_model_name_or_path': 'example-org/tiny-llama',
    'bias': 'none',
    'fan_in_fan_out': False,
    'inference_mode': True,
    'init_lora_weights': True,
    'layers_pattern': None,
    'layers_to_transform': None,
    'lora_alpha': ALPHA,
    'lora_dropout': 0.05,
    'modules_to_save': None,
    'peft_type': 'LORA',
    'r': R,
    'rank_pattern': {},
    'revision': None,
    'target_modules': ['q_proj', 'v_proj'],
    'task_type': 'CAUSAL_LM',
    'use_dora': False,
    'use_rslora': False,
}
with open(os.path.join(OUT, 'adapter_config.json'), 'w') as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write('\n')
with open(os.path.join(OUT, 'expected.json'), 'w') as f:
    json.dump(expected, f)
    f.write('\n')
print(f'wrote {OUT}: {len(tensors)} tensors')
