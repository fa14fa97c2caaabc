"""The embedded torch engine against plain transformers forwards, and its contract details."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Engine, EngineInputError, SamplingParams
from selfplay.policy.factory import make_engine
from selfplay.policy.model import action_log_priors, build_policy
from selfplay.policy.tokenizer import build_char_tokenizer
from selfplay.policy.torch_engine import TorchEngine

CFG = PolicyConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   intermediate_size=128, max_seq_len=48, seed=1)
PROMPTS = ["hello", "a longer prompt here", "x"]


def make(max_batch_size=64, prefix_sharing=True, cfg=CFG):
    model, tok = build_policy(cfg)
    return TorchEngine(model, tok, EngineConfig(max_batch_size=max_batch_size,
                                               prefix_sharing=prefix_sharing))


@pytest.fixture(scope="module")
def engine():
    return make()


def reference_greedy(lm, ids, steps):
    """Greedy decoding by a full HF forward per step: (tokens, logprobs)."""
    ids, toks, lps = list(ids), [], []
    for _ in range(steps):
        logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0, -1].float(), -1)
        t = int(logp.argmax())
        toks.append(t), lps.append(float(logp[t])), ids.append(t)
    return toks, lps


def hf_score(lm, tok, prompt, cont):
    p, c = tok(prompt).input_ids, tok(cont, add_special_tokens=False).input_ids
    logp = torch.log_softmax(lm(torch.tensor([p + c])).logits[0].float(), -1)
    return sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(c))


def check_against_hf(engine, lm):
    out = engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
    with torch.no_grad():
        for prompt, [c] in zip(PROMPTS, out):
            toks, lps = reference_greedy(lm, engine.tokenizer(prompt).input_ids, 10)
            assert c.token_ids == toks
            np.testing.assert_allclose(c.logprobs, lps, atol=1e-4)
            assert c.finish_reason == "length"
        conts = ["abc", " 12", "x\ny"]
        ours = engine.score(PROMPTS, conts)
        theirs = [hf_score(lm, engine.tokenizer, p, c) for p, c in zip(PROMPTS, conts)]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_is_an_engine(engine):
    assert isinstance(engine, Engine)


def test_greedy_and_score_match_transformers_on_saved_checkpoint(engine, tmp_path):
    engine.model.save(str(tmp_path))
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    check_against_hf(engine, lm)


def test_qwen2_checkpoint_runs_through_engine(tmp_path):
    cfg = Qwen2Config(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                      tie_word_embeddings=True, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    build_char_tokenizer().save_pretrained(tmp_path)
    engine = make_engine(PolicyConfig(path=str(tmp_path)), EngineConfig())
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    check_against_hf(engine, lm)


def test_priors_over_legal_actions_match_action_log_priors(engine):
    states = ["board: x.o", "q"]
    actions = [["1", "5", "9"], ["ab", "c", "abc", "zz"]]  # the second needs the multi-token path
    evals = engine.evaluate(states, actions)
    with torch.no_grad():
        ref, values = action_log_priors(engine.model, engine.tokenizer, states, actions)
    for ev, acts, lp, v in zip(evals, actions, ref, values):
        assert ev.priors.dtype == np.float64 and ev.priors.shape == (len(acts),)
        assert abs(ev.priors.sum() - 1.0) < 1e-12
        np.testing.assert_allclose(ev.priors, lp.exp().numpy(), atol=1e-5)
        assert ev.value == pytest.approx(float(v), abs=1e-6) and ev.policy_version == 0


def test_prefix_sharing_gives_identical_samples():
    sampling = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=8, seed=5)
    shared, unshared = make(prefix_sharing=True), make(prefix_sharing=False)
    a = shared.generate(PROMPTS + ["hello"], sampling)
    b = unshared.generate(PROMPTS + ["hello"], sampling)
    for ca, cb in zip([c for r in a for c in r], [c for r in b for c in r]):
        assert ca.token_ids == cb.token_ids
        np.testing.assert_allclose(ca.logprobs, cb.logprobs, atol=1e-5)
    assert shared.stats.prefill_tokens < unshared.stats.prefill_tokens
    assert [c.token_ids for c in a[0]] == [c.token_ids for c in a[3]]  # same prompt, same seed


def test_seeded_request_independent_of_batch(engine):
    sampling = SamplingParams(n=2, temperature=0.8, top_k=20, max_tokens=12, seed=11)
    alone = engine.generate(["hello"], sampling)[0]
    crowded = engine.generate(["zzz", "q q", "hello", "another"], sampling)[2]
    assert [c.token_ids for c in alone] == [c.token_ids for c in crowded]
    assert alone[0].token_ids != alone[1].token_ids  # the n completions differ


def test_continuous_batching_matches_one_big_batch():
    sampling = SamplingParams(n=3, temperature=1.0, max_tokens=14, stop=("e", "a"), seed=2)
    prompts = [f"prompt {i}" for i in range(6)]
    small, big = make(max_batch_size=4), make(max_batch_size=64)
    a, b = small.generate(prompts, sampling), big.generate(prompts, sampling)
    assert [[c.token_ids for c in r] for r in a] == [[c.token_ids for c in r] for r in b]
    assert small.stats.max_active <= 4 < big.stats.max_active
    assert len({len(c.token_ids) for r in a for c in r}) > 1  # lengths differ: slots refilled


def test_stop_strings_end_and_are_kept(engine):
    out = engine.generate(["a"] * 1, SamplingParams(n=8, temperature=1.0, max_tokens=40,
                                                  stop=("e", "xy"), seed=3, ignore_eos=True))[0]
    stopped = [c for c in out if c.finish_reason == "stop"]
    assert stopped
    for c in stopped:
        assert c.text.endswith("e") or c.text.endswith("xy")
        assert "e" not in c.text[:-1]


def test_max_tokens_capped_by_context(engine):
    prompt = "p" * (CFG.max_seq_len - 4)  # + <bos> = context - 3
    [c] = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=20,
                                                   ignore_eos=True))[0]
    assert len(c.token_ids) == 3 and c.finish_reason == "length"


@pytest.mark.parametrize("call", [
    lambda e: e.generate(["ok", ""], SamplingParams()),
    lambda e: e.generate(["ok", "y" * 100], SamplingParams()),
    lambda e: e.score(["ok", "fine"], ["a", "é"]),
    lambda e: e.evaluate(["ok", "s"], [["1"], ["1", "é"]]),
    lambda e: e.evaluate(["ok", "s"], [["1"], []]),
])
def test_bad_input_names_the_request(engine, call):
    with pytest.raises(EngineInputError, match="request 1"):
        call(engine)


def test_bad_sampling_params(engine):
    with pytest.raises(EngineInputError, match="max_tokens"):
        engine.generate(["ok"], SamplingParams(max_tokens=0))


def test_nan_weights_raise_instead_of_hanging():
    e = make()
    bad = {"lm.lm_head.weight": torch.full_like(e.model.lm.lm_head.weight, float("nan"))}
    e.load_weights(bad, version=9)
    with pytest.raises(EngineInputError, match="request 0"):
        e.generate(["ok"], SamplingParams(max_tokens=4))
    with pytest.raises(EngineInputError, match="non-finite"):
        e.evaluate(["ok"], [["1", "2"]])


def test_load_weights_changes_outputs_and_version():
    e = make()
    before = e.evaluate(["state"], [["1", "2", "3"]])[0]
    sampling = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    gen_before = e.generate(["state"], sampling)[0][0]
    other, _ = build_policy(PolicyConfig(**{**CFG.__dict__, "seed": 99}))
    e.load_weights(other.state_dict(), version=7)
    after = e.evaluate(["state"], [["1", "2", "3"]])[0]
    gen_after = e.generate(["state"], sampling)[0][0]
    assert not np.allclose(before.priors, after.priors)
    assert gen_before.token_ids != gen_after.token_ids
    assert (before.policy_version, after.policy_version, gen_after.policy_version) == (0, 7, 7)
    # HF-style keys (the bare LM's state dict) load too.
    e.load_weights(other.lm.state_dict(), version=8)
    assert e.policy_version == 8


def test_vllm_kind_without_vllm_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install"):
            make_engine(PolicyConfig(path=str(tmp_path)), EngineConfig(kind="vllm"))
    else:
        pytest.skip("vllm installed")


def test_prefill_of_last_positions_matches_full_prefill(engine):
    """The engine's prefill runs the last layer at each prompt's last position only."""
    ids = torch.randint(4, 60, (5, 12))
    last = torch.tensor([11, 3, 7, 0, 9])
    with torch.inference_mode():
        full, kv_full = engine.decoder.prefill(ids)
        part, kv_part = engine.decoder.prefill(ids, last)
    torch.testing.assert_close(part, full[torch.arange(5), last], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kv_part, kv_full, atol=1e-5, rtol=1e-5)


def test_sample_is_row_independent_and_greedy_needs_no_uniforms():
    from selfplay.policy.sampling import sample

    logits = torch.randn(6, 50)
    u = torch.rand(6)
    greedy, _ = sample(logits, None, 0.0, 0, 1.0)
    assert greedy.tolist() == logits.argmax(-1).tolist()
    whole, lp = sample(logits, u, 0.8, 10, 0.9)
    rows = [sample(logits[i : i + 1], u[i : i + 1], 0.8, 10, 0.9)[0].item() for i in range(6)]
    assert whole.tolist() == rows
    torch.testing.assert_close(lp, torch.log_softmax(logits, -1)[torch.arange(6), whole])
    with pytest.raises(ValueError, match="uniform"):
        sample(logits, None, 1.0, 0, 1.0)


def test_stop_strings_checked_incrementally_match_full_decoding():
    """The character tokenizer's stop check grows the text by each token's piece; it must cut
    exactly where decoding the whole sequence at every token does."""
    fast, slow = make(), make()
    assert fast._pieces is not None
    slow._pieces = None  # the general path: decode the whole sequence at every token
    sampling = SamplingParams(n=6, temperature=1.0, max_tokens=30, stop=("e", "a b", "\n"),
                              seed=4, ignore_eos=True)
    a = fast.generate(PROMPTS, sampling)
    b = slow.generate(PROMPTS, sampling)
    got = [[(c.text, c.token_ids, c.finish_reason) for c in r] for r in a]
    assert got == [[(c.text, c.token_ids, c.finish_reason) for c in r] for r in b]
    assert any(c.finish_reason == "stop" for r in a for c in r)


def test_generic_decode_step_traces_as_one_graph():
    """The torch-op decode step (a GPU's, compiled there with CUDA graphs and fullgraph=True)
    must trace without graph breaks; here through dynamo + AOT autograd on the CPU."""
    e = make(max_batch_size=4)
    d = e.decoder
    d.cpu_kernels, d.packed = False, False
    d.refresh()  # plain matmul linears, as on a GPU
    cache = d.new_cache(4)
    tokens, positions = torch.tensor([5, 6, 7, 8]), torch.tensor([3, 5, 7, 9])
    with torch.inference_mode():
        ref = d.decode(cache.clone(), tokens, positions, CFG.max_seq_len)
        step = torch.compile(d.decode, fullgraph=True, dynamic=False, backend="aot_eager")
        out = step(cache.clone(), tokens, positions, CFG.max_seq_len)
    torch.testing.assert_close(out, ref)
