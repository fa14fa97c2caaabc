"""The CPU decode path: numba kernels and oneDNN linears against plain torch, and the engine in
float32 and bfloat16 against transformers."""

import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.cpu_kernels import decode_attention, greedy_rows, kernel_array, rms_norm_rows
from selfplay.policy.engine import EngineInputError, SamplingParams
from selfplay.policy.linear import MatmulLinear, OneDnnLinear, onednn_supports
from selfplay.policy.model import build_policy
from selfplay.policy.torch_engine import TorchEngine

BF16 = onednn_supports(torch.device("cpu"), torch.bfloat16)
needs_bf16 = pytest.mark.skipif(not BF16, reason="no oneDNN bfloat16 kernels on this CPU")
DTYPES = [torch.float32, pytest.param(torch.bfloat16, marks=needs_bf16)]
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_rows_matches_hf(dtype):
    torch.manual_seed(0)
    hf = LlamaRMSNorm(48, eps=1e-5).to(dtype)
    with torch.no_grad():
        hf.weight.copy_(torch.rand(48) + 0.5)
    x = (torch.randn(7, 48) * 3).to(dtype)
    out = torch.empty_like(x)
    weight = hf.weight.detach().float().numpy()
    rms_norm_rows(kernel_array(x), weight, np.float32(1e-5), kernel_array(out))
    with torch.no_grad():
        ref = hf(x)
    # bfloat16: at most one rounding step apart (the float32 sum may be ordered differently)
    torch.testing.assert_close(out.float(), ref.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_bfloat16_rounding_matches_torch():
    """The kernels' float32 -> bfloat16 rounding equals torch's bit for bit (ties to even,
    infinities, signed zeros, subnormals, every NaN to the quiet NaN)."""
    from numba import njit

    from selfplay.policy.cpu_kernels import put

    @njit
    def round_all(values, out):
        for i in range(values.shape[0]):
            put(out, i, values[i])

    rng = np.random.default_rng(0)
    special = np.array([0x7F800001, 0xFFFF8000, 0xFFFFFFFF, 0x7FC00000, 0x7F800000, 0xFF800000,
                        0x80000000, 0x00000001, 0x3F808000, 0x3F818000, 0x7F7FFFFF],
                       dtype=np.uint32).view(np.float32)
    values = np.concatenate([special, rng.standard_normal(5000).astype(np.float32) * 1e3])
    ours = np.empty(values.shape, np.uint16)
    round_all(values, ours)
    ref = torch.from_numpy(values).bfloat16().view(torch.uint16).numpy()
    nan = np.isnan(values)
    assert (ours[~nan] == ref[~nan]).all()
    assert (ours[nan] == 0x7FC0).all()


def reference_attention(qkv, cos, sin, positions, keys, values, num_heads):
    """Plain torch: RoPE (HF's rotate-half), cache write at each row's position, masked softmax
    attention with grouped-query heads. keys/values are updated in place."""
    B = qkv.shape[0]
    Hkv, L, D = keys.shape[1:]
    q, k, v = qkv.float().split([num_heads * D, Hkv * D, Hkv * D], dim=-1)
    c, s = cos[positions][:, None], sin[positions][:, None]

    def rope(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        return x * c + torch.cat((-x2, x1), dim=-1) * s

    q, k = rope(q.view(B, num_heads, D)), rope(k.view(B, Hkv, D))
    rows = torch.arange(B)
    keys[rows, :, positions] = k.to(keys.dtype)
    values[rows, :, positions] = v.view(B, Hkv, D).to(values.dtype)
    kk = keys[:B].float().repeat_interleave(num_heads // Hkv, dim=1)  # [B, Hq, L, D]
    vv = values[:B].float().repeat_interleave(num_heads // Hkv, dim=1)
    scores = torch.einsum("bhd,bhsd->bhs", q, kk) * D**-0.5
    visible = torch.arange(L)[None, :] <= positions[:, None]
    scores = scores.masked_fill(~visible[:, None, :], float("-inf"))
    return torch.einsum("bhs,bhsd->bhd", scores.softmax(-1), vv).reshape(B, num_heads * D)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("num_heads,kv_heads,dim", [(4, 2, 16), (2, 2, 64), (6, 1, 32)])
def test_decode_attention_matches_torch(dtype, num_heads, kv_heads, dim):
    torch.manual_seed(1)
    B, slots, L = 5, 7, 40
    qkv = torch.randn(B, (num_heads + 2 * kv_heads) * dim).to(dtype)
    angles = torch.arange(L)[:, None] * torch.rand(dim // 2)[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    sin_signed = torch.cat((-sin[:, : dim // 2], sin[:, dim // 2 :]), dim=-1)
    keys = torch.randn(slots, kv_heads, L, dim).to(dtype)
    values = torch.randn(slots, kv_heads, L, dim).to(dtype)
    positions = torch.tensor([0, 39, 17, 3, 25])  # the first and last position included
    ref_k, ref_v = keys.clone(), values.clone()
    ref = reference_attention(qkv, cos, sin, positions, ref_k, ref_v, num_heads)
    out = torch.empty(B, num_heads * dim, dtype=dtype)
    decode_attention(qkv, cos, sin_signed, positions, keys, values, num_heads, dim**-0.5, out)
    torch.testing.assert_close(out.float(), ref, atol=TOL[dtype], rtol=TOL[dtype])
    # The new key/value went to each row's slot at its position, and nothing else changed.
    torch.testing.assert_close(keys.float(), ref_k.float(), atol=TOL[dtype], rtol=TOL[dtype])
    assert torch.equal(values, ref_v)


def test_decode_attention_on_torch_team_equals_one_thread():
    """Split over torch's OpenMP team (2 threads here), each row is computed as on one thread."""
    from selfplay.policy import omp_team
    from selfplay.policy.cpu_kernels import _attention_rows

    if glob.glob(str(Path(torch.__file__).parent / "lib" / "libgomp*")):
        assert omp_team.team() is not None  # a pip wheel's bundled libgomp must be found
    torch.manual_seed(4)
    B, Hq, Hkv, D, L = 9, 4, 2, 32, 24
    qkv, cos, sin = torch.randn(B, (Hq + 2 * Hkv) * D), torch.rand(L, D), torch.rand(L, D)
    keys, values = torch.randn(B, Hkv, L, D), torch.randn(B, Hkv, L, D)
    positions = torch.randint(0, L, (B,))
    k1, v1, k2, v2 = keys.clone(), values.clone(), keys.clone(), values.clone()
    out1, out2 = torch.empty(B, Hq * D), torch.empty(B, Hq * D)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        decode_attention(qkv, cos, sin, positions, k1, v1, Hq, 0.3, out1)
    finally:
        torch.set_num_threads(threads)
    _attention_rows(qkv.numpy(), cos.numpy(), sin.numpy(), positions.numpy(), k2.numpy(),
                    v2.numpy(), Hq, np.float32(0.3), out2.numpy(), 0, B)
    assert torch.equal(out1, out2) and torch.equal(k1, k2) and torch.equal(v1, v2)


def test_decode_attention_keeps_nan():
    """A NaN from broken weights must reach the output, where the engine reports it: in a query
    it spoils that head, in a key every head reading that kv head."""
    qkv = torch.randn(3, 4 * 16)  # 2 query heads, 1 kv head, D = 16
    qkv[1, 3] = float("nan")  # query head 0 of row 1
    qkv[2, 2 * 16 + 5] = float("nan")  # the key of row 2
    keys, values = torch.randn(3, 1, 8, 16), torch.randn(3, 1, 8, 16)
    cos, sin = torch.ones(8, 16), torch.zeros(8, 16)
    out = torch.empty(3, 2 * 16)
    decode_attention(qkv, cos, sin, torch.tensor([5, 5, 5]), keys, values, 2, 0.25, out)
    assert torch.isfinite(out[0]).all()
    assert torch.isnan(out[1, :16]).all() and torch.isfinite(out[1, 16:]).all()
    assert torch.isnan(out[2]).all()


def test_greedy_rows_is_argmax_and_log_softmax():
    torch.manual_seed(5)
    logits = torch.randn(6, 300) * 4
    logits[1, 7] = logits[1, 200] = logits[1].max() + 1  # a tie: the first index wins
    logits[2, :] = 0.0  # all tied
    logits[4, 17] = float("nan")
    tokens, logprobs = np.empty(6, np.int64), np.empty(6, np.float32)
    greedy_rows(logits.numpy(), tokens, logprobs)
    ok = [0, 1, 2, 3, 5]
    assert tokens[ok].tolist() == logits.argmax(-1)[ok].tolist() and tokens[1] == 7
    ref = torch.log_softmax(logits.double(), -1)[torch.arange(6), torch.from_numpy(tokens)]
    np.testing.assert_allclose(logprobs[ok], ref[ok].numpy(), atol=1e-6)
    assert np.isnan(logprobs[4])


@pytest.mark.skipif(not onednn_supports(torch.device("cpu"), torch.float32),
                    reason="no oneDNN in this torch build")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_onednn_linear_epilogues_match_matmul(dtype, with_bias):
    torch.manual_seed(2)
    w = (torch.randn(24, 40) * 0.2).to(dtype)
    b = torch.randn(24).to(dtype) if with_bias else None
    x, other = torch.randn(9, 40).to(dtype), torch.randn(9, 24).to(dtype)
    ours, plain = OneDnnLinear(w, b), MatmulLinear(w, b)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.05, "rtol": 0.02}
    with torch.inference_mode():
        for name, a, c in [("y", ours(x), plain(x)),
                           ("add", ours.add_to(x, other), plain.add_to(x, other)),
                           ("silu", ours.silu(x), plain.silu(x)),
                           ("mul", ours.mul(x, other), plain.mul(x, other)),
                           ("3-d", ours(x.view(3, 3, 40)), plain(x.view(3, 3, 40)))]:
            assert a.dtype == dtype, name
            torch.testing.assert_close(a.float(), c.float(), **tol, msg=name)


CFG = PolicyConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   intermediate_size=128, max_seq_len=48, seed=3)
PROMPTS = ["hello", "a longer prompt here", "x", "the same prompt", "the same prompt"]


def engine(dtype="float32", cpu_kernels=True, cfg=CFG):
    model, tok = build_policy(cfg)
    e = TorchEngine(model, tok, EngineConfig(dtype=dtype, max_batch_size=4))
    e.decoder.cpu_kernels = cpu_kernels
    return e


def test_kernel_decode_equals_the_torch_ops_decode():
    """The numba step and the torch-op step (what a GPU runs) decode the same tokens with the
    same log-probabilities, through continuous batching (4 slots for 10 sequences)."""
    fast, plain = engine(), engine(cpu_kernels=False)
    assert fast.decoder.cpu_kernels and not plain.decoder.cpu_kernels
    for sampling in (SamplingParams(temperature=0, max_tokens=20, ignore_eos=True),
                     SamplingParams(n=2, temperature=1.0, top_p=0.9, max_tokens=16, seed=7)):
        a, b = fast.generate(PROMPTS, sampling), plain.generate(PROMPTS, sampling)
        for ra, rb in zip(a, b):
            for ca, cb in zip(ra, rb):
                assert ca.token_ids == cb.token_ids
                np.testing.assert_allclose(ca.logprobs, cb.logprobs, atol=1e-5)


@needs_bf16
def test_bfloat16_engine_follows_transformers_in_bfloat16(tmp_path):
    """Teacher-forced on the engine's own greedy output, a bf16 transformers forward gives each
    generated token (nearly) the top log-probability and about the engine's log-probability:
    the two round differently, so exact token equality would be luck, not a property."""
    e = engine("bfloat16")
    e.model.save(str(tmp_path))
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True,
                                              dtype=torch.bfloat16)
    out = e.generate(PROMPTS[:3], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    for prompt, [c] in zip(PROMPTS, out):
        ids = e.tokenizer(prompt).input_ids
        with torch.no_grad():
            logits = lm(torch.tensor([ids + c.token_ids])).logits[0].float()
        logp = torch.log_softmax(logits[len(ids) - 1 : -1], dim=-1)  # predicts each new token
        chosen = logp[torch.arange(len(c.token_ids)), c.token_ids]
        assert (logp.max(-1).values - chosen).max() < 0.05
        np.testing.assert_allclose(c.logprobs, chosen.numpy(), atol=0.05)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_in_a_middle_layer_is_reported(dtype):
    e = engine(str(dtype).removeprefix("torch."))
    q = e.model.lm.model.layers[0].self_attn.q_proj.weight
    e.load_weights({"lm.model.layers.0.self_attn.q_proj.weight": torch.full_like(q, float("nan"))},
                   version=2)
    with pytest.raises(EngineInputError, match="non-finite"):
        e.generate(["ok"], SamplingParams(max_tokens=4))
