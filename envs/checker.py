"""``check_text_env``: the text-environment contract, runnable on any env (ours or a user's).

    from envs.checker import check_text_env
    check_text_env(gymnasium.make("selfplay/TicTacToe-v0"))

It complements gymnasium's ``check_env`` with what our loop relies on: string observations, float
rewards, no crash on malformed actions (non-strings and a 1 MB string included), same-seed
determinism, and every observation (and, in a game, every legal move) inside the env's declared
``Text`` spaces (their charset and max_length: what gymnasium's own checker samples but never
compares with what the env returns). Games (envs whose info carries "legal_actions") are also checked for the legal-move
bookkeeping and the illegal-action rule. A text env with a ``reference_actions()`` method (MathEnv,
CodeEnv) is checked for its references: stepped from ``reset(seed)``, they are in the action space,
only the last one ends the episode, and it ends with reward 1.0 (the env's own reward,
``info["env_reward"]`` under a feedback wrapper). A ``ValueError`` from ``reference_actions()``
means this problem has no reference, which is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from envs.protocol import IllegalActionError, IllegalActionMode

GAME_MALFORMED: tuple[Any, ...] = ("garbage", None, "", "  99 ", "0", 3, b"1", "1 2")
TEXT_MALFORMED: tuple[Any, ...] = (
    "garbage", "", "\x00\n\t" * 3, "x" * 10_000, None, 42, b"Answer: 1", "9" * 1_000_000,
)


class TextEnvContractError(AssertionError):
    pass


def _fail(name: str, what: str) -> None:
    raise TextEnvContractError(f"{name}: {what}")


def _env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _check_in_space(env: gym.Env, name: str, where: str, obs: str, info: dict) -> None:
    """The observation and the legal moves lie inside the declared Text spaces."""
    obs_space, act_space = env.observation_space, env.action_space
    if isinstance(obs_space, gym.spaces.Text) and not obs_space.contains(obs):
        outside = sorted(set(obs) - set(obs_space.character_set))
        _fail(name, f"{where} observation ({len(obs)} characters) is outside the observation "
              f"space (max_length {obs_space.max_length}"
              + (f"; characters not in its charset: {''.join(outside)!r:.40}" if outside else "")
              + ")")
    if isinstance(act_space, gym.spaces.Text):
        for move in info.get("legal_actions") or ():
            if isinstance(move, str) and not act_space.contains(move):
                _fail(name, f"{where}: legal move {move!r:.40} is outside the action space "
                      f"(charset or max_length {act_space.max_length})")


def _check_reset(env: gym.Env, name: str, seed: int) -> dict[str, Any]:
    out = env.reset(seed=seed)
    if not (isinstance(out, tuple) and len(out) == 2):
        _fail(name, f"reset() must return (observation, info), got {type(out).__name__}")
    obs, info = out
    if not isinstance(obs, str):
        _fail(name, f"reset() observation must be str, got {type(obs).__name__}")
    if not isinstance(info, dict):
        _fail(name, f"reset() info must be a dict, got {type(info).__name__}")
    if "legal_actions" in info:
        _check_game_info(name, info, "reset()")
    _check_in_space(env, name, "reset()", obs, info)
    return info


def _check_game_info(name: str, info: dict[str, Any], where: str) -> None:
    legal = info["legal_actions"]
    if not (isinstance(legal, list) and all(isinstance(a, str) for a in legal)):
        _fail(name, f"{where}: info['legal_actions'] must be a list of str, got {legal!r}")
    if info.get("to_play") not in (0, 1):
        _fail(name, f"{where}: info['to_play'] must be 0 or 1, got {info.get('to_play')!r}")
    indices = info.get("legal_action_indices")
    if indices is not None and len(indices) != len(legal):
        _fail(name, f"{where}: legal_action_indices and legal_actions differ in length")


def _check_step(env: gym.Env, name: str, action: Any) -> tuple[str, float, bool, bool, dict]:
    out = env.step(action)
    if not (isinstance(out, tuple) and len(out) == 5):
        _fail(name, "step() must return (obs, reward, terminated, truncated, info)")
    obs, reward, terminated, truncated, info = out
    where = f"step({action!r:.40})"
    if not isinstance(obs, str):
        _fail(name, f"{where} observation must be str, got {type(obs).__name__}")
    if isinstance(reward, (bool, np.bool_)) or not isinstance(
        reward, (int, float, np.integer, np.floating)
    ):
        _fail(name, f"{where} reward must be a float, got {type(reward).__name__}")
    if not math.isfinite(float(reward)):
        _fail(name, f"{where} reward must be finite, got {reward!r}")
    if not isinstance(terminated, (bool, np.bool_)) or not isinstance(truncated, (bool, np.bool_)):
        _fail(name, f"{where} terminated/truncated must be bool")
    if not isinstance(info, dict):
        _fail(name, f"{where} info must be a dict")
    if "legal_actions" in info:
        _check_game_info(name, info, where)
    _check_in_space(env, name, where, obs, info)
    return obs, float(reward), bool(terminated), bool(truncated), info


def _trajectory(env: gym.Env, name: str, seed: int, max_steps: int) -> list[tuple]:
    """Play from reset(seed): random legal moves in a game, a fixed answer text otherwise."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    record: list[tuple] = [(obs,)]
    for _ in range(max_steps):
        legal = info.get("legal_actions")
        action = str(legal[rng.integers(len(legal))]) if legal else "42"
        obs, reward, terminated, truncated, info = _check_step(env, name, action)
        record.append((action, obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return record


def _check_reference_actions(env: gym.Env, name: str, seed: int) -> None:
    """Stepping ``reference_actions()`` from ``reset(seed)`` solves the problem (reward 1.0)."""
    try:
        reference_actions = env.get_wrapper_attr("reference_actions")
    except AttributeError:
        return  # the env offers no references
    env.reset(seed=seed)
    try:
        actions = reference_actions()
    except ValueError:
        return  # this problem has no reference
    if not (isinstance(actions, list) and actions and all(isinstance(a, str) for a in actions)):
        _fail(name, f"reference_actions() must return a non-empty list of str, got {actions!r:.80}")
    space = env.action_space
    for k, action in enumerate(actions):
        if isinstance(space, gym.spaces.Text) and not space.contains(action):
            _fail(name, f"reference action {k} ({action!r:.40}) is outside the action space "
                  "(its charset or max_length)")
        _, reward, terminated, truncated, info = _check_step(env, name, action)
        if (terminated or truncated) != (k == len(actions) - 1):
            _fail(name, f"reference action {k} of {len(actions)} "
                  f"{'ended' if terminated or truncated else 'did not end'} the episode")
    reward = float(info.get("env_reward", reward))
    if not terminated or reward != 1.0:
        _fail(name, f"reference_actions() from reset(seed={seed}) ended with reward {reward} "
              f"(terminated={terminated}); expected 1.0: the reference or the verifier is wrong")


def check_text_env(env: gym.Env, *, seed: int = 0, max_steps: int = 100) -> None:
    """Raise ``TextEnvContractError`` naming the env and the broken rule; return None if it holds.

    The env is reset several times; what it holds afterwards is unspecified.
    """
    name = _env_name(env)
    info = _check_reset(env, name, seed)
    is_game = "legal_actions" in info

    first = _trajectory(env, name, seed, max_steps)
    second = _trajectory(env, name, seed, max_steps)
    if first != second:
        step = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
        _fail(name, f"not deterministic: same seed and actions differ at step {step}")

    mode = getattr(env.unwrapped, "illegal_action", IllegalActionMode.LOSE)
    for bad in GAME_MALFORMED if is_game else TEXT_MALFORMED:
        env.reset(seed=seed)
        if is_game and mode == IllegalActionMode.RAISE:
            try:
                env.step(bad)
            except IllegalActionError:
                continue
            _fail(name, f"step({bad!r}) with illegal_action='raise' must raise IllegalActionError")
        try:
            _, reward, terminated, _, step_info = _check_step(env, name, bad)
        except TextEnvContractError:
            raise
        except Exception as err:  # noqa: BLE001  (any crash is the contract violation)
            _fail(name, f"step({bad!r:.40}) raised {type(err).__name__}: {err}")
        if is_game and not (terminated and reward == -1.0 and step_info.get("illegal_action")):
            _fail(name, f"step({bad!r}) must end the game as a loss (-1) marked illegal_action")

    if not is_game:
        _check_reference_actions(env, name, seed)
