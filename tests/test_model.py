"""The policy model: shapes, HF save/load round trips, the shared action-prior function."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from selfplay.policy.config import PolicyConfig
from selfplay.policy.engine import EngineInputError
from selfplay.policy.model import PolicyModel, action_log_priors, build_policy
from selfplay.policy.priors import _multi_token, encode_decisions

CFG = PolicyConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   intermediate_size=128, max_seq_len=64, seed=3)


@pytest.fixture(scope="module")
def policy():
    return build_policy(CFG)


def test_forward_shapes_and_zero_value(policy):
    model, tok = policy
    ids = torch.tensor([tok("abc").input_ids, tok("xyz").input_ids])
    logits, values = model(ids, torch.ones_like(ids))
    assert logits.shape == (2, 4, len(tok)) and values.shape == (2, 4)
    assert torch.all(values == 0)  # zero-initialised head


def test_seeded_build_is_deterministic(policy):
    again, _ = build_policy(CFG)
    for a, b in zip(policy[0].parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_save_load_round_trip(policy, tmp_path):
    model, tok = policy
    with torch.no_grad():
        model.value_head.weight.normal_()
    model.save(str(tmp_path))
    ids = torch.tensor([tok("hello world").input_ids])
    ref_logits, ref_values = model(ids)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    assert torch.equal(hf(ids).logits, model.lm(ids).logits)
    loaded = PolicyModel.load(str(tmp_path))
    logits, values = loaded(ids)
    assert torch.equal(logits, ref_logits) and torch.allclose(values, ref_values)
    with torch.no_grad():
        model.value_head.weight.zero_()


def test_checkpoint_without_value_head_gets_zero_head(policy, tmp_path):
    model, tok = policy
    model.lm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = PolicyModel.load(str(tmp_path))
    assert torch.all(loaded.value_head.weight == 0) and torch.all(loaded.value_head.bias == 0)


def test_priors_are_a_distribution_and_paths_agree(policy):
    model, tok = policy
    states, actions = ["board 1", "x"], [["1", "2", "3"], ["4", "5"]]
    priors, values = action_log_priors(model, tok, states, actions)
    assert [len(p) for p in priors] == [3, 2] and values.shape == (2,)
    for p in priors:
        assert torch.isclose(p.exp().sum(), torch.tensor(1.0))
    # The multi-token path on single-token actions computes the same numbers.
    enc = encode_decisions(tok, states, actions, 64)
    slow, slow_values = _multi_token(model, enc, tok.pad_token_id)
    for a, b in zip(priors, slow):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(values, slow_values)


def test_multi_token_priors_match_sequence_logprobs(policy):
    model, tok = policy
    priors, _ = action_log_priors(model, tok, ["go:"], [["ab", "c", "abc"]])
    ids = tok("go:abc").input_ids
    logp = torch.log_softmax(model.lm(torch.tensor([ids])).logits[0], -1)
    n = len(tok("go:").input_ids)
    seq = lambda k: sum(logp[n - 1 + j, ids[n + j]] for j in range(k))
    c = logp[n - 1, tok("c", add_special_tokens=False).input_ids[0]]
    expected = torch.log_softmax(torch.stack([seq(2), c, seq(3)]), 0)
    assert torch.allclose(priors[0], expected, atol=1e-5)


def test_priors_are_differentiable(policy):
    model, tok = policy
    priors, values = action_log_priors(model, tok, ["s", "t"], [["1", "22"], ["3"]])
    (priors[0][0] + values.sum()).backward()
    assert model.lm.lm_head.weight.grad is not None and model.value_head.weight.grad is not None
    model.zero_grad()


@pytest.mark.parametrize("states,actions,where", [
    (["a"], [[]], "request 0"),
    (["a", "b"], [["1"], ["é"]], "request 1"),
    (["a"], [["1", ""]], "request 0"),
    ([""], [["1"]], "request 0"),
])
def test_bad_decisions_name_the_request(policy, states, actions, where):
    model, tok = policy
    with pytest.raises(EngineInputError, match=where):
        action_log_priors(model, tok, states, actions)

