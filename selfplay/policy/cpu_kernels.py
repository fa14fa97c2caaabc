"""numba kernels for the CPU decode step: the work between the matmuls, fused.

A decode step on a CPU is a handful of matmuls (oneDNN, ``selfplay.policy.linear``) with small
pieces in between; as separate torch ops those pieces cost more than the matmuls (tens of
kernel launches per layer, each reading data another core just wrote). Here each piece is one
call:

- ``rms_norm_rows``: HF's ``LlamaRMSNorm`` over the rows of ``[B, H]``;
- ``decode_attention``: RoPE on the new query and key of every row, the key and value written
  into the row's cache slot, and attention of each query head over its slot's positions
  ``0..p`` (grouped-query heads read their shared key/value head);
- ``greedy_rows``: a greedy step's token and log-probability per row, in one pass.

Arrays are float32, or bfloat16 passed as its bits (``uint16``: torch's
``tensor.view(torch.uint16).numpy()``), so one kernel serves both engine dtypes; arithmetic is
float32 and a bfloat16 result is rounded to nearest even, as torch rounds. ``exp`` is a
float32 polynomial (about 2 ulp) that vectorises, where libm's ``expf`` would not.

Threads: ``decode_attention`` splits its rows over torch's own OpenMP team (a numba C callback
launched with libgomp's ``GOMP_parallel``, ``selfplay.policy.omp_team``). numba's parallel
layers were tried first: its OpenMP layer keeps a second OpenMP pool spinning beside torch's,
which made torch's own kernels tens of times slower (a bfloat16 prefill's attention went from
0.9 ms to 48 ms per layer), and its workqueue layer gained nothing over one thread. The norm is
too small to be worth a launch. Software prefetch of the next row's cache lines (an LLVM
intrinsic) measured the same as none.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic, overload

from selfplay.policy import omp_team

# fastmath without "nnan"/"ninf": reductions may be reordered (vectorised), but a NaN from broken
# weights still reaches the logits, where the engine reports it.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}

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
    """float32 -> bfloat16 bits, rounding to nearest even; any NaN -> the quiet NaN, as torch.
    Integer tests, so fastmath cannot fold the NaN case away."""
    bits = np.float32(value).view(np.uint32)
    if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16(0x7FC0)
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


@njit(fastmath=_FAST, inline="always")
def _exp_nonpositive(x):
    """exp(x) for x <= 0 in float32 (inputs below -87 give exp(-87), about 1.6e-38; NaN stays
    NaN)."""
    if x < np.float32(-87.0):  # noqa: PLR1730 (max() would turn NaN into -87)
        x = np.float32(-87.0)
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


@njit(fastmath=_FAST, nogil=True, cache=True)
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


@njit(fastmath=_FAST, nogil=True, cache=True)
def greedy_rows(logits, tokens, logprobs):
    """For each row of float32 logits [B, V]: the first index of its maximum into tokens [B]
    (torch.argmax's choice) and that token's log-softmax into logprobs [B] (NaN if the row has
    a NaN)."""
    rows, vocab = logits.shape
    for b in range(rows):
        best = 0
        top = logits[b, 0]
        for v in range(1, vocab):
            if logits[b, v] > top:
                top = logits[b, v]
                best = v
        total = np.float32(0.0)
        for v in range(vocab):
            total += _exp_nonpositive(logits[b, v] - top)
        tokens[b] = best
        logprobs[b] = -np.log(total)


def kernel_array(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor as the numpy array the kernels take (bfloat16 as its uint16 bits); shares
    memory with the tensor."""
    return t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def decode_attention(qkv, cos, sin_signed, positions, keys, values, num_heads, scale, out):
    """One decode step's attention for rows 0..B-1, on CPU tensors.

    qkv [B, (Hq + 2 Hkv) D]: the q/k/v projections of each row's new token; cos, sin_signed
    [L, D] float32: RoPE tables (sin with its first half negated, so rotate-half is a swap of
    halves); positions [B] int64: each row's position p (its slot holds keys/values < p);
    keys, values [slots, Hkv, L, D]: row b's cache is slot b, and its new key (rotated) and value
    are written at p; out [B, Hq D]: each query head's attention over positions 0..p (query
    head h reads kv head h // (Hq / Hkv)), scores scaled by ``scale``. qkv, keys, values and out
    share one dtype (float32 or bfloat16); all are C-contiguous.

    Rows are split over torch's OpenMP team (``selfplay.policy.omp_team``) when torch uses more
    than one thread, else run on the calling thread.
    """
    if not (qkv.dtype == keys.dtype == values.dtype == out.dtype
            and qkv.dtype in (torch.float32, torch.bfloat16)
            and cos.dtype == sin_signed.dtype == torch.float32 and positions.dtype == torch.int64):
        raise TypeError("decode_attention: qkv/keys/values/out float32 or bfloat16 alike, "
                        "cos/sin float32, positions int64")
    rows = positions.shape[0]
    threads = min(torch.get_num_threads(), rows)
    element = np.uint16 if qkv.dtype == torch.bfloat16 else np.float32
    worker = _attention_worker(element) if threads > 1 else None
    if worker is None:
        _attention_rows(kernel_array(qkv), cos.numpy(), sin_signed.numpy(), positions.numpy(),
                        kernel_array(keys), kernel_array(values), num_heads,
                        np.float32(scale), kernel_array(out), 0, rows)
        return
    for t in (qkv, cos, sin_signed, positions, keys, values, out):
        if not t.is_contiguous():
            raise ValueError("decode_attention: tensors must be contiguous")
    argv = np.array([
        qkv.data_ptr(), qkv.shape[0], qkv.shape[1],
        cos.data_ptr(), sin_signed.data_ptr(), cos.shape[0], cos.shape[1],
        positions.data_ptr(),
        keys.data_ptr(), values.data_ptr(), keys.shape[0], keys.shape[1], keys.shape[2],
        num_heads, int(np.float32(scale).view(np.int32)), out.data_ptr(),
    ], dtype=np.int64)
    omp_team.team().run(worker.address, argv, threads)


@functools.cache
def _attention_worker(element):
    """A C callback ``worker(argv)`` running ``_attention_rows`` on this OpenMP thread's share of
    the rows, for arrays of ``element`` (np.float32, or np.uint16 for bfloat16); None where
    torch's OpenMP team is not available."""
    team = omp_team.team()
    if team is None:
        return None
    thread_num, num_threads = team.thread_num, team.num_threads

    @cfunc(types.void(types.voidptr))  # not cached: it closes over ctypes functions
    def worker(data):
        a = carray(data, (16,), dtype=np.int64)
        rows, width, length, dim = a[1], a[2], a[5], a[6]
        slots, kv_heads, cached, num_heads = a[10], a[11], a[12], a[13]
        qkv = carray(_pointer(a[0]), (rows, width), dtype=element)
        cos = carray(_pointer(a[3]), (length, dim), dtype=np.float32)
        sin_signed = carray(_pointer(a[4]), (length, dim), dtype=np.float32)
        positions = carray(_pointer(a[7]), (rows,), dtype=np.int64)
        keys = carray(_pointer(a[8]), (slots, kv_heads, cached, dim), dtype=element)
        values = carray(_pointer(a[9]), (slots, kv_heads, cached, dim), dtype=element)
        out = carray(_pointer(a[15]), (rows, num_heads * dim), dtype=element)
        scale = np.int32(a[14]).view(np.float32)
        t, n = thread_num(), num_threads()
        _attention_rows(qkv, cos, sin_signed, positions, keys, values, num_heads, scale, out,
                        rows * t // n, rows * (t + 1) // n)

    return worker


@intrinsic
def _pointer(typingctx, address):
    """An int64 address as a void pointer (for ``carray``)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@njit(fastmath=_FAST, nogil=True, cache=True)
def _attention_rows(qkv, cos, sin_signed, positions, keys, values, num_heads, scale, out,
                    start, stop):
    """``decode_attention`` for rows start..stop-1."""
    kv_heads, length, dim = keys.shape[1], keys.shape[2], keys.shape[3]
    group = num_heads // kv_heads
    query = np.empty(dim, np.float32)
    scores = np.empty(length, np.float32)
    acc = np.empty(dim, np.float32)
    for b in range(start, stop):
        p = positions[b]
        for j in range(kv_heads):
            _rotate(qkv[b], (num_heads + j) * dim, cos, sin_signed, p, np.float32(1.0), query)
            for d in range(dim):
                put(keys, (b, j, p, d), query[d])
                values[b, j, p, d] = qkv[b, (num_heads + kv_heads + j) * dim + d]
            for g in range(group):
                q_at = (j * group + g) * dim
                _rotate(qkv[b], q_at, cos, sin_signed, p, scale, query)
                _scores(query, keys, b, j, p + 1, scores)
                _softmax(scores, p + 1)
                _weighted_sum(scores, values, b, j, p + 1, acc)
                for d in range(dim):
                    put(out, (b, q_at + d), acc[d])


@njit(fastmath=_FAST, inline="always")
def _rotate(row, at, cos, sin_signed, p, scale, dst):
    """dst = RoPE at position p of row[at : at + D], times scale (float32)."""
    half = dst.shape[0] // 2
    for d in range(half):
        lo = as_f32(row[at + d])
        hi = as_f32(row[at + d + half])
        dst[d] = (lo * cos[p, d] + hi * sin_signed[p, d]) * scale
        dst[d + half] = (hi * cos[p, d + half] + lo * sin_signed[p, d + half]) * scale


@njit(fastmath=_FAST, inline="always")
def _scores(query, keys, b, j, n, scores):
    """scores[s] = query . keys[b, j, s] for s < n, four keys per pass over the query (one
    reduction each) so the query is loaded once per four."""
    dim = query.shape[0]
    s = 0
    while s + 4 <= n:
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for d in range(dim):
            q = query[d]
            a0 += q * as_f32(keys[b, j, s, d])
            a1 += q * as_f32(keys[b, j, s + 1, d])
            a2 += q * as_f32(keys[b, j, s + 2, d])
            a3 += q * as_f32(keys[b, j, s + 3, d])
        scores[s] = a0
        scores[s + 1] = a1
        scores[s + 2] = a2
        scores[s + 3] = a3
        s += 4
    while s < n:
        a0 = np.float32(0.0)
        for d in range(dim):
            a0 += query[d] * as_f32(keys[b, j, s, d])
        scores[s] = a0
        s += 1


@njit(fastmath=_FAST, inline="always")
def _softmax(scores, n):
    """scores[:n] <- softmax(scores[:n]), in place."""
    top = scores[0]
    for s in range(1, n):
        top = max(top, scores[s])
    total = np.float32(0.0)
    for s in range(n):
        e = _exp_nonpositive(scores[s] - top)
        scores[s] = e
        total += e
    inv = np.float32(1.0) / total
    for s in range(n):
        scores[s] *= inv


@njit(fastmath=_FAST, inline="always")
def _weighted_sum(weights, values, b, j, n, acc):
    """acc = sum over s < n of weights[s] * values[b, j, s], four rows per pass over acc."""
    dim = acc.shape[0]
    for d in range(dim):
        acc[d] = 0.0
    s = 0
    while s + 4 <= n:
        w0, w1, w2, w3 = weights[s], weights[s + 1], weights[s + 2], weights[s + 3]
        for d in range(dim):
            acc[d] += (w0 * as_f32(values[b, j, s, d]) + w1 * as_f32(values[b, j, s + 1, d])
                       + w2 * as_f32(values[b, j, s + 2, d]) + w3 * as_f32(values[b, j, s + 3, d]))
        s += 4
    while s < n:
        w0 = weights[s]
        for d in range(dim):
            acc[d] += w0 * as_f32(values[b, j, s, d])
        s += 1


__all__ = ["decode_attention", "greedy_rows", "kernel_array", "rms_norm_rows"]
