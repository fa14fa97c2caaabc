"""What the learner trains on, beyond the AlphaZero defaults: playout-cap randomisation (targets
kept from full searches only), value targets that mix the outcome with the search's root value,
and the learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs.games.tictactoe import TicTacToe
from selfplay.errors import UserError
from selfplay.learner.batches import mixed_value_targets
from selfplay.learner.config import LearnerConfig, check_learner_config
from selfplay.learner.learner import Learner, warmup_schedule
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import action_log_priors, build_policy
from selfplay.replay.sampler import Batch, decisions_of
from selfplay.rollout.games import play_selfplay_games
from selfplay.search.config import SearchConfig, check_playout_cap
from selfplay.search.game_adapter import GameSearch, uniform_evaluator

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
        "intermediate_size": 64}


# ---- playout-cap randomisation ------------------------------------------------------------------


def test_playout_cap_keeps_targets_from_full_searches_only():
    game = TicTacToe()
    full = GameSearch(game, uniform_evaluator(game), num_simulations=24)
    fast = GameSearch(game, uniform_evaluator(game), num_simulations=3, dirichlet_fraction=0.0)
    episodes = play_selfplay_games(game, full, num_games=16, env_id="selfplay/TicTacToe-v0",
                                   policy_version=0, seed=3, fast_search=fast,
                                   full_search_prob=0.4)
    steps = [s for e in episodes for s in e.steps]
    searched = [s for s in steps if s.search is not None]
    assert searched and len(searched) < len(steps)  # both kinds of move were played
    assert {s.search.simulations for s in searched} == {24}  # every target is a full search's
    assert all(s.legal_actions for s in steps)  # a fast move still records what was legal
    for e in episodes:
        assert e.info["fast_moves"] == sum(s.search is None for s in e.steps)
    kept = [d for e in episodes for d in decisions_of(e, "searched")]
    assert len(kept) == len(searched)
    # 1.0 (the default) is the plain loop: every move a full search
    plain = play_selfplay_games(game, full, num_games=4, env_id="selfplay/TicTacToe-v0",
                                policy_version=0, seed=3, fast_search=fast, full_search_prob=1.0)
    assert all(s.search is not None for e in plain for s in e.steps)


@pytest.mark.parametrize("prob, fast, message", [
    (0.0, 8, "full_search_prob=0.0: must be in (0, 1]"),
    (0.25, 0, "0 < search.fast_simulations < search.num_simulations"),
    (0.25, 64, "0 < search.fast_simulations < search.num_simulations"),
])
def test_playout_cap_settings_that_cannot_run_name_the_key(prob, fast, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_playout_cap(SearchConfig(num_simulations=64, full_search_prob=prob,
                                       fast_simulations=fast))
    check_playout_cap(SearchConfig(num_simulations=64, full_search_prob=0.25, fast_simulations=16))


# ---- value targets: outcome and root value --------------------------------------------------------


def test_mixed_value_targets_hand_computed():
    outcomes = np.array([1.0, -1.0, 0.0, 1.0], np.float32)
    roots = np.array([0.2, 0.4, -0.6, np.nan], np.float32)
    np.testing.assert_allclose(mixed_value_targets(outcomes, roots, 0.25),
                               [0.8, -0.65, -0.15, 1.0], rtol=1e-6)
    np.testing.assert_allclose(mixed_value_targets(outcomes, roots, 0.0), outcomes)
    np.testing.assert_allclose(mixed_value_targets(outcomes, roots, 1.0), [0.2, 0.4, -0.6, 1.0],
                               rtol=1e-6)


def opening_batch(outcome: float, root_value: float, size: int = 4) -> Batch:
    game = TicTacToe()
    state = game.initial_state()
    obs = game.render_text(state)
    actions = [game.action_to_text(int(a)) for a in np.flatnonzero(game.legal_mask(state))]
    return Batch(
        observations=[obs] * size, actions=[actions] * size,
        target_visits=[np.full(len(actions), 1 / len(actions), np.float32)] * size,
        value_targets=np.full(size, outcome, np.float32),
        policy_versions=np.zeros(size, np.int64), chosen=[actions[0]] * size,
        players=np.zeros(size, np.int32), root_values=np.full(size, root_value, np.float32),
        keys=[("ep", i) for i in range(size)], probs=np.full(size, 1 / size))


@pytest.mark.parametrize("mix, expected_target", [(0.0, 1.0), (1.0, -0.5), (0.5, 0.25)])
def test_the_learner_regresses_the_value_on_the_mixed_target(mix, expected_target):
    model, tokenizer = build_policy(PolicyConfig(**TINY))
    batch = opening_batch(outcome=1.0, root_value=-0.5)
    with torch.no_grad():
        _, value = action_log_priors(model, tokenizer, batch.observations[:1], batch.actions[:1])
    learner = Learner(model, tokenizer, LearnerConfig(value_target_mix=mix), loss="alphazero")
    metrics = learner.train_step(batch).metrics
    assert metrics["loss/value_mse"] == pytest.approx((float(value[0]) - expected_target) ** 2,
                                                      rel=1e-4, abs=1e-6)


# ---- the learning-rate schedule -------------------------------------------------------------------


def test_constant_schedule_is_a_linear_warm_up_then_flat():
    f = warmup_schedule(4)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_schedule(0)(0) == 1.0


def test_cosine_schedule_hand_computed():
    f = warmup_schedule(2, "cosine", decay_steps=4, min_factor=0.2)
    assert f(0) == 0.5 and f(1) == 1.0  # warm-up
    # after the warm-up: 0.2 + 0.8 * (1 + cos(pi * k / 4)) / 2 for k = 1..4, then flat
    expected = [0.2 + 0.8 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3, 4)]
    assert [f(s) for s in (2, 3, 4, 5)] == pytest.approx(expected)
    assert f(5) == pytest.approx(0.2) and f(500) == pytest.approx(0.2)


def test_the_learner_follows_the_cosine_schedule():
    model, tokenizer = build_policy(PolicyConfig(**TINY))
    cfg = LearnerConfig(lr=1e-3, warmup_steps=1, lr_schedule="cosine", lr_decay_steps=2,
                        lr_min_factor=0.5)
    learner = Learner(model, tokenizer, cfg, loss="alphazero")
    lrs = [learner.train_step(opening_batch(1.0, 0.0)).metrics["learner/lr"] for _ in range(4)]
    assert lrs == pytest.approx([0.75e-3, 0.5e-3, 0.5e-3, 0.5e-3])


@pytest.mark.parametrize("overrides, message", [
    ({"lr_schedule": "linear"}, "learner.lr_schedule='linear': must be one of constant, cosine"),
    ({"lr_schedule": "cosine"}, "needs learner.lr_decay_steps > 0"),
    ({"lr_min_factor": 1.5}, "learner.lr_min_factor=1.5"),
    ({"value_target_mix": -0.1}, "learner.value_target_mix=-0.1"),
])
def test_learner_settings_that_cannot_run_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_learner_config(LearnerConfig(**overrides))


def test_text_decisions_reach_the_policy_as_their_prompt():
    from selfplay.textgen.rollout import prompt_of

    model, tokenizer = build_policy(PolicyConfig(**TINY))
    batch = opening_batch(1.0, 0.0)
    text = Learner(model, tokenizer, LearnerConfig(), loss="alphazero", text_decisions=True)
    game = Learner(model, tokenizer, LearnerConfig(), loss="alphazero")
    assert text.decisions_view(batch).observations == [prompt_of(o) for o in batch.observations]
    assert game.decisions_view(batch).observations == batch.observations


# ---- the prior over reasoning steps ---------------------------------------------------------------


def step_batch(size: int = 4) -> Batch:
    """A reasoning-step decision: the search put all its visits on the first of two siblings."""
    state = "12+30=?"
    actions = ["tens: 1+3=4, ones: 2+0=2", "Answer: 7"]
    return Batch(
        observations=[state] * size, actions=[actions] * size,
        target_visits=[np.array([1.0, 0.0], np.float32)] * size,
        value_targets=np.ones(size, np.float32), policy_versions=np.zeros(size, np.int64),
        chosen=[actions[0]] * size, players=np.zeros(size, np.int32),
        root_values=np.ones(size, np.float32), keys=[("ep", i) for i in range(size)],
        probs=np.full(size, 1 / size))


def sequence_log_prob(model, tokenizer, prompt: str, text: str) -> float:
    """log p(text | prompt) under the LM, token by token (an independent computation)."""
    from selfplay.policy.tokenizer import encode_continuation, encode_prompt

    p_ids, t_ids = encode_prompt(tokenizer, prompt), encode_continuation(tokenizer, text)
    ids = torch.tensor([p_ids + t_ids])
    with torch.no_grad():
        h = model.hidden(ids, torch.ones_like(ids))
        logp = torch.log_softmax(model.logits_of(h[0]), dim=-1)
    return float(sum(logp[len(p_ids) - 1 + k, tok] for k, tok in enumerate(t_ids)))


def test_step_priors_are_each_steps_own_probability_and_training_raises_the_visited_one():
    from selfplay.textgen.rollout import prompt_of

    torch.manual_seed(0)
    model, tokenizer = build_policy(PolicyConfig(**TINY))
    batch = step_batch()
    learner = Learner(model, tokenizer, LearnerConfig(lr=1e-2, warmup_steps=0), loss="alphazero",
                      text_decisions=True)
    view = learner.decisions_view(batch)
    assert view.actions[0] == [a + "\n" for a in batch.actions[0]]  # a step ends its line
    prompt = prompt_of(batch.observations[0])
    own = [sequence_log_prob(model, tokenizer, prompt, a) for a in view.actions[0]]
    # The cross-entropy the learner reports is -log p(visited step), not a softmax over the two.
    metrics = learner.train_step(batch).metrics
    assert metrics["loss/policy_ce"] == pytest.approx(-own[0], rel=1e-4)
    for _ in range(4):
        learner.train_step(batch)
    after = sequence_log_prob(model, tokenizer, prompt, view.actions[0][0])
    assert after > own[0] + 1.0  # the visited step became likelier, in absolute terms

    # step_prior=siblings is the softmax over the sampled siblings (as a game's legal moves).
    torch.manual_seed(0)
    model, tokenizer = build_policy(PolicyConfig(**TINY))
    siblings = Learner(model, tokenizer, LearnerConfig(step_prior="siblings"), loss="alphazero",
                       text_decisions=True)
    assert siblings.decisions_view(batch).actions == batch.actions
    bare = [sequence_log_prob(model, tokenizer, prompt, a) for a in batch.actions[0]]
    expected = -(bare[0] - np.logaddexp(*bare))
    assert siblings.train_step(batch).metrics["loss/policy_ce"] == pytest.approx(expected, rel=1e-4)


def test_an_unknown_step_prior_names_the_key():
    with pytest.raises(UserError, match="learner.step_prior='sibling'"):
        check_learner_config(LearnerConfig(step_prior="sibling"))


def test_token_losses_on_a_text_task_are_untouched_by_the_step_prior():
    # step_prior is for decision losses; a text task's token losses (sft here) build their own batch
    from selfplay.types import Episode, SampledTokens, Step

    model, tokenizer = build_policy(PolicyConfig(**TINY))
    learner = Learner(model, tokenizer, LearnerConfig(), loss="sft", text_decisions=True)
    ids = tokenizer("Answer: 4", add_special_tokens=False)["input_ids"]
    episode = Episode(episode_id="e", env_id="selfplay/Math-v0", seed=0, policy_version=0,
                      steps=[Step(observation="2+2=?", action="Answer: 4", player=0, reward=1.0,
                                  tokens=SampledTokens(list(ids), [0.0] * len(ids), 0))],
                      outcome=1.0, started_at=0.0, finished_at=0.0, actor="a")
    from selfplay.replay.sampler import ReplaySampler

    sampler = ReplaySampler(window=100, keep="sampled")
    sampler.add([episode])
    metrics = learner.train_step(sampler.sample(2, 0)).metrics
    assert math.isfinite(metrics["loss/nll"])
