"""rollout.reference_mix: sampled groups that also carry their problem's reference solution, for
the imitation losses (expert iteration, SFT), and one clear error for every other combination."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.factory import make_engine
from selfplay.replay.groups import group_outcomes
from selfplay.replay.sampler import decisions_of
from selfplay.rollout.config import RolloutConfig
from selfplay.rollout.modes import SampleGroups
from selfplay.textgen.config import TextSamplingConfig

MATH = EnvConfig(id="selfplay/MathArithmetic-v0", kwargs={"families": ["addition"], "level": 1})
K = 3


@pytest.fixture(scope="module")
def engine():
    cfg = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                       intermediate_size=64, max_seq_len=256, seed=0)  # fmt: skip
    return make_engine(cfg, EngineConfig(max_batch_size=64))


def sample_groups(engine, mix: float, env: EnvConfig = MATH, apart: int = 0) -> SampleGroups:
    cfg = SimpleNamespace(env=env, rollout=RolloutConfig(problems=16, reference_mix=mix,
                                                         reference_problems=apart),
                          sampling=TextSamplingConfig(k=K, max_tokens=12), feedback=None)
    return SampleGroups(cfg, engine)


def by_group(episodes):
    groups: dict[str, list] = {}
    for ep in episodes:
        groups.setdefault(ep.group_id, []).append(ep)
    return groups


def test_every_group_carries_its_reference_at_mix_one(engine):
    episodes = sample_groups(engine, 1.0).play(6, seed=3, actor="rollout-0")
    groups = by_group(episodes)
    assert len(groups) == 6
    outcomes = group_outcomes(episodes)
    for members in groups.values():
        sampled = [ep for ep in members if ep.info["termination"] != "reference"]
        written = [ep for ep in members if ep.info["termination"] == "reference"]
        assert len(sampled) == K and len(written) == 1
        ref = written[0]
        # the same problem as the group's samples, the env's verdict, tokens written not sampled
        assert ref.seed == sampled[0].seed and ref.outcome == 1.0
        assert all(lp == 0.0 for step in ref.steps for lp in step.tokens.logprobs)
        assert ref.steps[0].observation == sampled[0].steps[0].observation
        # expert iteration keeps the best of the group: the reference is among them (the
        # untrained policy's samples almost never match it), never a failed sample
        kept = {ep.episode_id for ep in members if decisions_of(ep, "best_of_group",
                                                                outcomes[ep.episode_id])}
        assert ref.episode_id in kept
        assert all(ep.outcome == 1.0 for ep in members if ep.episode_id in kept)


def test_mix_zero_adds_nothing_and_a_fraction_adds_about_that_share(engine):
    plain = sample_groups(engine, 0.0).play(8, seed=3, actor="r")
    assert len(plain) == 8 * K and all(ep.info["termination"] != "reference" for ep in plain)
    half = sample_groups(engine, 0.5)
    written = sum(ep.info["termination"] == "reference"
                  for seed in range(6) for ep in half.play(8, seed=seed, actor="r"))
    assert 10 <= written <= 38  # 48 groups at 0.5: a binomial's 4-sigma band


def test_references_of_a_set_of_their_own_are_groups_of_one(engine):
    episodes = sample_groups(engine, 1.0, apart=4).play(6, seed=3, actor="r")
    written = [ep for ep in episodes if ep.info["termination"] == "reference"]
    sampled = [ep for ep in episodes if ep.info["termination"] != "reference"]
    assert len(sampled) == 6 * K and len(written) == 6
    assert all(ep.seed < 4 and ep.outcome == 1.0 for ep in written)  # from problems 0..3 only
    groups = by_group(episodes)
    assert all(len(groups[ep.group_id]) == 1 for ep in written)  # apart from every sampled group
    assert len({ep.group_id for ep in sampled}) == 6


def test_an_env_without_references_is_one_clear_error(engine, monkeypatch):
    from envs.math.env import MathEnv

    monkeypatch.delattr(MathEnv, "reference_actions")  # an env that ships no solutions
    with pytest.raises(UserError, match="no reference solutions"):
        sample_groups(engine, 0.5)
    sample_groups(engine, 0.0)  # without the mix it needs none


@pytest.mark.parametrize("overrides, message", [
    (["env=math", "learner=grpo", "rollout.reference_mix=0.5"], "learner=expert_iteration"),
    (["env=math", "learner=expert_iteration", "rollout.reference_mix=1.5"], "in [0, 1]"),
    (["env=math", "learner=sft", "rollout.mode=reference", "rollout.problems=8",
      "rollout.reference_mix=0.5"], "rollout.mode=sample_groups"),
    (["env=tictactoe", "rollout.reference_mix=0.5"], "samples none"),
    (["env=math", "learner=expert_iteration", "rollout.reference_problems=8"],
     "rollout.reference_mix > 0"),
])
def test_wrong_combinations_are_one_clear_error_before_ray(tmp_path: Path, capsys, overrides,
                                                           message):
    import ray

    from selfplay.cli import main

    assert main(["train", *overrides, f"run.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "rollout.reference_mix" in err and "Traceback" not in err, err
    assert not ray.is_initialized()


def test_rollout_reward_mean_counts_samples_only(tmp_path: Path, engine):
    from selfplay.metrics import MetricsWriter
    from selfplay.view.scalars import ScalarReader

    episodes = sample_groups(engine, 1.0).play(4, seed=1, actor="r")
    metrics = MetricsWriter(tmp_path)
    metrics.episodes(episodes, step=1)
    metrics.writer.flush()
    scalars = ScalarReader(tmp_path).refresh()
    sampled = [ep.outcome for ep in episodes if ep.info["termination"] != "reference"]
    (logged,) = scalars["rollout/reward_mean"].values
    assert logged == pytest.approx(float(np.mean(sampled)))
    assert logged < 1.0  # the written references (reward 1 each) are not in it
