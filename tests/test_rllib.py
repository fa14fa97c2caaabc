"""RLlib interop: our games as MultiAgentEnvs, the PPO self-play recipe, RLlib checkpoints as
arena players (selfplay/adapters/rllib_*.py). Only the recipe test starts Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.games.players import RandomPlayer
from envs.registration import make_env
from selfplay.adapters.rllib_env import (
    AGENTS,
    GameMultiAgentEnv,
    game_for,
    make_rllib_env,
    observation_space_of,
    register_rllib_envs,
)
from selfplay.arena.match import play_match
from selfplay.errors import UserError

REPO = Path(__file__).resolve().parent.parent
GAMES = {"tictactoe": "selfplay/TicTacToe-v0", "connect_four": "selfplay/ConnectFour-v0"}


# ---- the env -------------------------------------------------------------------------------


def test_every_two_player_game_is_registered_with_tune():
    from ray.tune.registry import ENV_CREATOR, _global_registry  # where RLlib looks envs up

    names = register_rllib_envs()
    assert names == {f"selfplay_{g}": env_id for g, env_id in GAMES.items()}
    for name in names:
        env = _global_registry.get(ENV_CREATOR, name)({})
        assert isinstance(env, GameMultiAgentEnv) and f"selfplay_{env.game.name}" == name


@pytest.mark.parametrize("env_id", GAMES.values())
def test_rllib_env_checker_passes(env_id):
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    env = make_rllib_env({"env_id": env_id})
    check_multiagent_environments(env)
    obs, _ = env.reset(seed=0)
    assert list(obs) == ["player_0"] and env.observation_spaces["player_0"].contains(obs["player_0"])


def _native_planes(text: str, rows: int, mover: int) -> np.ndarray:
    """The mover-relative planes read off the native env's absolute text observation."""
    board = "".join(text.splitlines()[1:1 + rows])
    mine, theirs = "XO"[mover], "OX"[mover]
    return np.array([c == mine for c in board] + [c == theirs for c in board], dtype=np.float32)


@pytest.mark.parametrize("env_id", GAMES.values())
@pytest.mark.parametrize("seed", range(4))
def test_random_legal_episode_gives_the_native_result(env_id, seed):
    """The same random legal moves through both envs: the same masks, boards and result."""
    rng = np.random.default_rng(seed)
    native = make_env(env_id)
    text, info = native.reset(seed=seed)
    env = make_rllib_env({"env_id": env_id})
    obs, _ = env.reset(seed=seed)
    rows = len(env.game.board_lines(env.game.initial_state()))
    space = env.observation_spaces["player_0"]
    while True:
        (agent,) = obs
        mover = AGENTS.index(agent)
        assert mover == info["to_play"] and space.contains(obs[agent])
        assert np.flatnonzero(obs[agent]["action_mask"]).tolist() == info["legal_action_indices"]
        np.testing.assert_array_equal(obs[agent]["observations"], _native_planes(text, rows, mover))
        action = int(rng.choice(info["legal_action_indices"]))
        text, native_reward, native_done, _, info = native.step(native.unwrapped.game.action_to_text(action))
        obs, rewards, terminated, truncated, _ = env.step({agent: np.int64(action)})
        assert truncated == {"__all__": False}
        if native_done:
            break
        assert rewards == {} and terminated == {"__all__": False}
    value0 = native.unwrapped.outcome.value_for_player0
    assert rewards == {"player_0": value0, "player_1": -value0}
    assert rewards[agent] == native_reward  # the mover's reward, as the native env gives it
    assert terminated == {"player_0": True, "player_1": True, "__all__": True}
    for p, a in enumerate(AGENTS):  # each side's last observation is from its own view
        np.testing.assert_array_equal(obs[a]["observations"], _native_planes(text, rows, p))
        assert not obs[a]["action_mask"].any()


WHOLE_ACTIONS = {"no action for the mover": {}, "no dict": None}


@pytest.mark.parametrize("bad", [0, 99, -1, 2.0, None, "3", np.array([1, 2]), *WHOLE_ACTIONS])
def test_illegal_action_loses_for_the_mover_and_never_crashes(bad):
    env = make_rllib_env({"env_id": GAMES["tictactoe"]})
    env.reset()
    env.step({"player_0": 0})  # X takes cell 0; an action of 0 from O is now illegal too
    whole = isinstance(bad, str) and bad in WHOLE_ACTIONS
    action = WHOLE_ACTIONS[bad] if whole else {"player_1": bad}
    obs, rewards, terminated, _, infos = env.step(action)
    assert rewards == {"player_0": 1.0, "player_1": -1.0}
    assert terminated["__all__"] and infos["player_1"]["illegal_action"] is True
    assert set(obs) == set(AGENTS) and not any(o["action_mask"].any() for o in obs.values())
    native = make_env(GAMES["tictactoe"])  # the native env scores the same illegal move alike
    native.reset()
    native.step("1")
    _, reward, done, _, _ = native.step("1")
    assert (reward, done, native.unwrapped.outcome.value_for_player0) == (-1.0, True, 1.0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step({"player_0": 1})


def test_illegal_first_move_rewards_only_the_player_that_played():
    """player_1 never had an observation: RLlib must not get a reward for it."""
    env = make_rllib_env({"env_id": GAMES["connect_four"]})
    env.reset()
    obs, rewards, terminated, _, _ = env.step({"player_0": 7})  # no column 8
    assert rewards == {"player_0": -1.0} and set(obs) == {"player_0"} and terminated["__all__"]


class TakeAway:
    """A user's game without a board drawing: take 1 or 2 from 5; who takes the last one wins."""

    name, num_actions, state_shape = "take_away", 2, (2,)  # state: [left, player to move]

    def initial_state(self):
        return np.array([5, 0], dtype=np.int8)

    def to_play(self, state):
        return int(state[1])

    def legal_mask(self, state):
        return np.array([state[0] >= 1, state[0] >= 2])

    def next_state(self, state, action):
        return np.array([state[0] - action - 1, 1 - state[1]], dtype=np.int8)

    def outcome(self, state):
        from envs.protocol import GameOutcome

        return None if state[0] else GameOutcome(1.0 if state[1] == 1 else -1.0)

    def action_to_text(self, action):
        return str(action + 1)

    def text_to_action(self, text):
        return {"1": 0, "2": 1}.get(text)

    def render_text(self, state):
        return f"{state[0]} left\n"


def test_a_game_without_a_board_is_observed_by_its_state():
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    env = GameMultiAgentEnv(TakeAway())
    check_multiagent_environments(env)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["player_0"]["observations"], [5.0, 0.0])
    for agent, action in [("player_0", 1), ("player_1", 1), ("player_0", 0)]:  # 5 -> 3 -> 1 -> 0
        obs, rewards, terminated, _, _ = env.step({agent: action})
    assert rewards == {"player_0": 1.0, "player_1": -1.0} and terminated["__all__"]
    assert env.observation_spaces["player_1"].contains(obs["player_1"])


def test_env_config_and_non_game_envs_are_clear_errors():
    with pytest.raises(ValueError, match="needs 'env_id'.*unknown: envid"):
        make_rllib_env({"envid": GAMES["tictactoe"]})
    with pytest.raises(ValueError, match="not a two-player game"):
        game_for("selfplay/MathArithmetic-v0")


# ---- the masked module and the league mapping ------------------------------------------------


def _module(env_id: str, hiddens=(16,)):
    from selfplay.adapters.rllib_module import MaskedPPOTorchRLModule

    env = make_rllib_env({"env_id": env_id})
    return MaskedPPOTorchRLModule(observation_space=env.observation_spaces["player_0"],
                                  action_space=env.action_spaces["player_0"],
                                  model_config={"fcnet_hiddens": list(hiddens)})


def test_masked_module_gives_illegal_actions_no_probability():
    from ray.rllib.core.columns import Columns

    torch.manual_seed(0)
    module = _module(GAMES["tictactoe"])
    mask = torch.zeros(256, 9)
    mask[torch.arange(256), torch.randint(0, 9, (256,))] = 1.0  # one legal action per row
    mask[:128, 4] = 1.0
    obs = {"observations": torch.rand(256, 18).round(), "action_mask": mask}
    for forward in (module.forward_exploration, module.forward_inference, module.forward_train):
        logits = forward({Columns.OBS: dict(obs)})[Columns.ACTION_DIST_INPUTS]
        probs = torch.softmax(logits, dim=-1)
        assert torch.isfinite(logits).all() and probs[mask == 0].max() == 0.0
        sampled = torch.distributions.Categorical(logits=logits).sample()
        assert mask[torch.arange(256), sampled].all()
    assert module.compute_values({Columns.OBS: dict(obs)}).shape == (256,)
    assert isinstance(module.observation_space, gym.spaces.Dict)  # snapshots rebuild the mask


def test_league_mapping_puts_main_on_each_side_against_the_pool():
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    from selfplay.adapters.rllib_league import LeagueMapping

    mapping = LeagueMapping(("main_v1", "main_v2", "main_v3"))
    sides, opponents = [], set()
    for _ in range(400):
        episode = MultiAgentEpisode()
        modules = [mapping(a, episode) for a in AGENTS]
        assert modules.count("main") == 1 and modules == [mapping(a, episode) for a in AGENTS]
        sides.append(modules.index("main"))
        opponents |= set(modules) - {"main"}
    assert 150 < sum(sides) < 250 and opponents == {"main_v1", "main_v2", "main_v3"}


# ---- the recipe config ---------------------------------------------------------------------


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from selfplay.adapters.rllib_train import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="rllib", overrides=overrides)


def test_recipe_config_composes_to_its_schema_and_rejects_mistakes():
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from selfplay.adapters.rllib_train import RllibRecipeConfig

    typed = OmegaConf.to_object(_compose(["env=connect_four", "iterations=3", "ppo.hiddens=[8]"]))
    assert isinstance(typed, RllibRecipeConfig)
    assert (typed.env.id, typed.iterations, typed.ppo.hiddens) == (GAMES["connect_four"], 3, [8])
    assert OmegaConf.to_object(_compose([])) == RllibRecipeConfig()  # the YAML repeats the defaults
    for bad in (["ppo.lrr=0.1"], ["iterations=many"]):
        with pytest.raises((ConfigCompositionException, ValidationError)):
            _compose(bad)


def test_every_recipe_key_is_documented_in_schema_and_yaml():
    import dataclasses
    import inspect

    from selfplay.adapters.rllib_train import CONF_DIR, RllibRecipeConfig

    yaml_lines = (CONF_DIR / "rllib.yaml").read_text().splitlines()
    missing = []

    def walk(cls, prefix=""):
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                if cls is RllibRecipeConfig and f.name in ("env", "ray"):
                    continue  # selfplay.config's groups, documented there (tests/test_config.py)
                walk(f.default_factory, prefix + f.name + ".")
                continue
            line = next((ln for ln in source.splitlines() if ln.strip().startswith(f"{f.name}:")), "")
            yaml = next((ln for ln in yaml_lines if ln.strip().startswith(f"{f.name}:")), "")
            if "#" not in line or "#" not in yaml:
                missing.append(prefix + f.name)

    walk(RllibRecipeConfig)
    assert not missing, f"recipe keys without a one-line doc (schema and conf/rllib.yaml): {missing}"


def test_recipe_refuses_configs_that_cannot_run(tmp_path):
    from omegaconf import OmegaConf

    from selfplay.adapters.rllib_train import build_ppo_config, check_config

    for overrides, message in [(["iterations=0"], "never stop"),
                               (["ppo.minibatch_size=4000"], "ppo.minibatch_size"),
                               (["league.pool_size=0"], "league.pool_size")]:
        with pytest.raises(UserError, match=message):
            check_config(OmegaConf.to_object(_compose(overrides)))
    with pytest.raises(UserError, match="not a two-player game"):
        build_ppo_config(OmegaConf.to_object(_compose(["env=math"])))


# ---- the recipe, end to end (the one test that starts Ray) ------------------------------------


def test_two_iteration_ppo_self_play_run_writes_a_checkpoint_the_arena_plays(tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    out = tmp_path / "rllib"
    cmd = [sys.executable, "-m", "selfplay.adapters.rllib_train", "env=tictactoe", "iterations=2",
           f"out_dir={out}", "ppo.train_batch_size=64", "ppo.minibatch_size=32",
           "ppo.num_epochs=1", "ppo.hiddens=[16]", "checkpoint_every=1", "ray.num_cpus=1",
           # a snapshot every iteration, a league of one: both add_module and remove_module run
           "league.win_rate_threshold=-1", "league.pool_size=1"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and rows[-1]["env_steps"] >= 128
    assert [r["league_newest"] for r in rows] == ["main_v1", "main_v2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["modules"] == ["main", "main_v2"]  # main_v0 and main_v1 left the league
    modules = out / "checkpoint" / "learner_group" / "learner" / "rl_module"
    main, snapshot = (RLModule.from_checkpoint(str(modules / m)) for m in ("main", "main_v2"))
    weights, frozen = main.get_state(), snapshot.get_state()
    shared = set(weights) & set(frozen)  # a snapshot may be inference-only (no value network)
    assert any(k.startswith("pi.") for k in shared)
    assert all(np.array_equal(np.asarray(weights[k]), np.asarray(frozen[k])) for k in shared)
    # The checkpoint as an arena player, through the opponent registry of `selfplay eval`.
    from selfplay.play import resolve_opponent

    game = game_for(GAMES["tictactoe"])
    player = resolve_opponent(f"rllib:{out}", game, cfg=None)
    assert player.name == "rllib:rllib"
    _assert_plays_only_legal_moves(player, game, games=20)


# ---- the arena player ----------------------------------------------------------------------


class _Recorder:
    """Wraps a real player and keeps every (state, action) it chose."""

    def __init__(self, player):
        self.player, self.name, self.moves = player, player.name, []

    def choose_batch(self, game, states, rng):
        actions = self.player.choose_batch(game, states, rng)
        self.moves += list(zip((s.copy() for s in states), actions))
        return actions


def _assert_plays_only_legal_moves(player, game, games: int) -> None:
    recorder = _Recorder(player)
    result = play_match(game, recorder, RandomPlayer(), games, seed=3)
    assert result.games == games and result.illegal_moves_a == 0
    assert len(recorder.moves) >= 3 * games  # it played both sides, every game
    assert all(game.legal_mask(s)[a] for s, a in recorder.moves)


@pytest.mark.parametrize("name", GAMES)
def test_rllib_player_plays_only_legal_moves(tmp_path, name):
    from selfplay.play import resolve_opponent

    torch.manual_seed(0)
    _module(GAMES[name]).save_to_path(str(tmp_path / "module"))
    game = game_for(GAMES[name])
    player = resolve_opponent(f"rllib:{tmp_path / 'module'}", game, cfg=None)
    _assert_plays_only_legal_moves(player, game, games=20)


def test_rllib_player_errors_are_one_clear_message(tmp_path):
    from selfplay.adapters.rllib_player import rllib_player_from_spec

    ttt, c4 = game_for(GAMES["tictactoe"]), game_for(GAMES["connect_four"])
    _module(GAMES["tictactoe"]).save_to_path(str(tmp_path / "ttt"))
    with pytest.raises(UserError, match="another game"):
        rllib_player_from_spec(f"rllib:{tmp_path / 'ttt'}", c4)
    with pytest.raises(UserError, match="no such RLlib checkpoint"):
        rllib_player_from_spec(f"rllib:{tmp_path / 'nowhere'}", ttt)
    with pytest.raises(UserError, match="not an RLlib checkpoint"):
        rllib_player_from_spec(f"rllib:{tmp_path}", ttt)
    with pytest.raises(UserError, match="name a checkpoint"):
        rllib_player_from_spec("rllib:", ttt)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "class_and_ctor_args.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="does not load"):
        rllib_player_from_spec(f"rllib:{broken}", ttt)
    assert observation_space_of(ttt)["action_mask"].shape == (9,)
