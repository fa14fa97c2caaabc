"""numba kernels for the CPU decode step: the work between the matmuls, fused.

A decode step on a CPU is a handful of matmuls (oneDNN, ``selfplay.policy.linear``) with small
pieces in between; as separate torch ops those pieces cost more than the matmuls (tens of
kernel launches per layer, each reading data another core just wrote). Here each piece is one
call:

- ``rms_norm_rows``: HF's ``LlamaRMSNorm`` over the rows of ``[B, H]``;
- ``decode_attention``: RoPE on the new query and key of every row, the key and value written
  into the row's cache slot, and attention of each query head over its slot's positions
  ``0..p`` (grouped-query heads read their shared key/value head).

Arrays are float32, or bfloat16 passed as its bits (``uint16``: torch's
``tensor.view(torch.uint16).numpy()``), so one kernel serves both engine dtypes; arithmetic is
float32 and a bfloat16 result is rounded to nearest even, as torch rounds. ``exp`` is a
float32 polynomial (about 2 ulp) that vectorises, where libm's ``expf`` would not.

The kernels run on the calling thread. Parallel numba was tried: its OpenMP layer keeps a second
OpenMP pool spinning beside torch's, which made torch's own kernels tens of times slower (a
bfloat16 prefill's attention went from 0.9 ms to 48 ms per layer), and its workqueue layer
gained nothing over one thread once launch latency was paid (engine_speed, 2 cores).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


def as_f32(value):
    """The float32 value of an array element (a float32, or the bits of a bfloat16)."""


def put(array, index, value):
    """array[index] = value (float32), rounded to bfloat16 where the array holds bf16 bits."""


def quantize_like(array, value):
    """``value`` rounded to the array's element type, returned as float32."""


@njit(inline="always")
def _bf16_bits(value):
    bits = np.float32(value).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return np.uint16(rounded >> np.uint32(16))


@njit(inline="always")
def _bf16_value(bits):
    return np.uint32(np.uint32(bits) << np.uint32(16)).view(np.float32)


@overload(as_f32, inline="always")
def _as_f32(value):
    if isinstance(value, types.Float):
        return lambda value: np.float32(value)
    if value == types.uint16:
        return lambda value: _bf16_value(value)
    raise TypeError(f"as_f32: unsupported element type {value}")


@overload(put, inline="always")
def _put(array, index, value):
    if array.dtype == types.uint16:
        def put_bf16(array, index, value):
            array[index] = _bf16_bits(value)
        return put_bf16

    def put_float(array, index, value):
        array[index] = value
    return put_float


@overload(quantize_like, inline="always")
def _quantize_like(array, value):
    if array.dtype == types.uint16:
        return lambda array, value: _bf16_value(_bf16_bits(value))
    return lambda array, value: np.float32(value)


@njit(fastmath=True, inline="always")
def _exp_nonpositive(x):
    """exp(x) for x <= 0 in float32 (inputs below -87 give exp(-87), about 1.6e-38)."""
    x = max(x, np.float32(-87.0))
    t = np.floor(x * _LOG2E + np.float32(0.5))
    r = x - t * _LN2_HI - t * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    scale = np.uint32(np.uint32(np.int32(t) + np.int32(127)) << np.uint32(23)).view(np.float32)
    return p * scale


@njit(fastmath=True, nogil=True, cache=True)
def rms_norm_rows(x, weight, eps, out):
    """out[b] = weight * (x[b] / rms(x[b])) for x, out [B, H], weight float32 [H]. As HF's
    LlamaRMSNorm: the normalised row is rounded to the array's type before the weight
    multiplies it (a no-op in float32)."""
    rows, width = x.shape
    for b in range(rows):
        total = np.float32(0.0)
        for i in range(width):
            v = as_f32(x[b, i])
            total += v * v
        inv = np.float32(1.0) / np.sqrt(total / np.float32(width) + eps)
        for i in range(width):
            put(out, (b, i), weight[i] * quantize_like(out, as_f32(x[b, i]) * inv))


def decode_attention(qkv, cos, sin_signed, positions, keys, values, num_heads, scale, out):
    """One decode step's attention for rows 0..B-1.

    qkv [B, (Hq + 2 Hkv) D]: the q/k/v projections of each row's new token; cos, sin_signed
    [L, D] float32: RoPE tables (sin with its first half negated, so rotate-half is a swap of
    halves); positions [B] int64: each row's position p (its slot holds keys/values < p);
    keys, values [slots, Hkv, L, D]: row b's cache is slot b, and its new key (rotated) and value
    are written at p; out [B, Hq D]: each query head's attention over positions 0..p (query
    head h reads kv head h // (Hq / Hkv)), scores scaled by ``scale``.
    """
    _decode_attention(qkv, cos, sin_signed, positions, keys, values, num_heads,
                      np.float32(scale), out)


@njit(fastmath=True, nogil=True, cache=True)
def _decode_attention(qkv, cos, sin_signed, positions, keys, values, num_heads, scale, out):
    rows = positions.shape[0]
    kv_heads, length, dim = keys.shape[1], keys.shape[2], keys.shape[3]
    half = dim // 2
    group = num_heads // kv_heads
    for item in range(rows * kv_heads):
        b = item // kv_heads
        j = item - b * kv_heads
        p = positions[b]
        k_at = (num_heads + j) * dim
        v_at = (num_heads + kv_heads + j) * dim
        for d in range(half):
            lo = as_f32(qkv[b, k_at + d])
            hi = as_f32(qkv[b, k_at + d + half])
            put(keys, (b, j, p, d), lo * cos[p, d] + hi * sin_signed[p, d])
            put(keys, (b, j, p, d + half), hi * cos[p, d + half] + lo * sin_signed[p, d + half])
        for d in range(dim):
            values[b, j, p, d] = qkv[b, v_at + d]
        query = np.empty(dim, np.float32)
        scores = np.empty(length, np.float32)
        acc = np.empty(dim, np.float32)
        for g in range(group):
            q_at = (j * group + g) * dim
            for d in range(half):
                lo = as_f32(qkv[b, q_at + d])
                hi = as_f32(qkv[b, q_at + d + half])
                query[d] = (lo * cos[p, d] + hi * sin_signed[p, d]) * scale
                query[d + half] = (hi * cos[p, d + half] + lo * sin_signed[p, d + half]) * scale
            top = np.float32(-3.0e38)
            for s in range(p + 1):
                dot = np.float32(0.0)
                for d in range(dim):
                    dot += query[d] * as_f32(keys[b, j, s, d])
                scores[s] = dot
                top = max(top, dot)
            total = np.float32(0.0)
            for s in range(p + 1):
                e = _exp_nonpositive(scores[s] - top)
                scores[s] = e
                total += e
            for d in range(dim):
                acc[d] = 0.0
            for s in range(p + 1):
                w = scores[s]
                for d in range(dim):
                    acc[d] += w * as_f32(values[b, j, s, d])
            inv = np.float32(1.0) / total
            for d in range(dim):
                put(out, (b, q_at + d), acc[d] * inv)


__all__ = ["decode_attention", "rms_norm_rows"]
