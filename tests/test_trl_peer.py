"""benchmarks/trl_peer.py: TRL's GRPOTrainer on a fresh tiny policy, saved and served again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.trl_peer import build_trainer, trl_grpo, verifier_rewards
from envs.math.tasks import generate
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import SamplingParams
from selfplay.policy.factory import make_engine
from selfplay.policy.model import VALUE_HEAD_FILE, PolicyModel, build_policy
from selfplay.policy.tokenizer import encode_prompts
from selfplay.textgen.rollout import prompt_of


def _problems(n: int = 16):
    problems = [generate("addition", 1, seed, "train") for seed in range(n)]
    return [prompt_of(p.question) for p in problems], [p.answer for p in problems]


@pytest.fixture(scope="module")
def start_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("start")
    model, tokenizer = build_policy(PolicyConfig())
    model.save(str(path), tokenizer)
    return str(path)


def test_trl_tokenizes_prompts_as_the_engine_does(start_dir, tmp_path):
    prompts, answers = _problems(4)
    trainer, _ = build_trainer(start_dir, str(tmp_path), prompts, answers,
                               num_generations=2, per_device_batch=4)
    ids, _, _ = trainer._tokenize_prompts(prompts)  # what TRL feeds generate
    assert [list(x) for x in ids] == encode_prompts(trainer.processing_class, prompts)
    assert ids[0][0] == trainer.processing_class.bos_token_id
    assert trainer.eos_token_ids[0] == trainer.processing_class.eos_token_id
    assert trainer.generation_config.temperature == 1.0


def test_verifier_rewards():
    completions = ["Answer: 12", "12", " 12 \n", "13", "so 12\nthen 12", "Answer: 13", ""]
    assert verifier_rewards(completions, ["12"] * len(completions)) == [1, 1, 1, 0, 0, 0, 0]


def _digit_share(completions, answers):
    """A reward a fresh policy earns sometimes (the verifier's it never does, so GRPO's
    advantages would all be 0 and the weights would not move)."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def test_trl_grpo_trains_saves_and_serves(start_dir, tmp_path):
    prompts, answers = _problems(16)
    out_dir = str(tmp_path / "out")
    result = trl_grpo(start_dir, out_dir, prompts, answers, 0.3, num_generations=4,
                      max_completion_length=24, per_device_batch=8, reward=_digit_share)
    assert result["steps"] > 0
    assert result["completions"] == 8 * result["steps"]
    assert 0 < result["reward_mean"] < 1
    assert 0 < result["seconds"] < 60
    assert os.path.exists(os.path.join(out_dir, VALUE_HEAD_FILE))

    before = PolicyModel.load(start_dir)
    after = PolicyModel.load(out_dir)
    changed = any(not (a == b).all() for a, b in
                  zip(before.lm.state_dict().values(), after.lm.state_dict().values()))
    assert changed, "GRPO left the weights as they were"

    engine = make_engine(PolicyConfig(path=out_dir), EngineConfig())
    out = engine.generate(prompts[:2], SamplingParams(n=2, max_tokens=8, seed=0))
    assert [len(group) for group in out] == [2, 2]
    assert all(isinstance(c.text, str) and c.token_ids for group in out for c in group)
