"""Every registered selfplay env satisfies gymnasium's checker and our text contract."""

from __future__ import annotations

import warnings

import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the built-ins)
from envs.checker import TextEnvContractError, check_text_env
from envs.registration import make_env, selfplay_env_ids

ENV_IDS = selfplay_env_ids()


def test_registry_has_the_games() -> None:
    assert {"selfplay/TicTacToe-v0", "selfplay/ConnectFour-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env(env_id: str) -> None:
    env = make_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Text-space advice is not a contract failure
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_text_contract(env_id: str) -> None:
    env = make_env(env_id)
    for seed in (0, 1):
        check_text_env(env, seed=seed)
    env.close()


@pytest.mark.parametrize("env_id", ["selfplay/TicTacToe-v0", "selfplay/ConnectFour-v0"])
def test_text_contract_raise_mode(env_id: str) -> None:
    check_text_env(make_env(env_id, illegal_action="raise"))


def test_checker_catches_a_crashing_env() -> None:
    env = make_env("selfplay/TicTacToe-v0")
    original = env.unwrapped.step

    def fragile_step(action):
        if not isinstance(action, str):
            raise TypeError("boom")
        return original(action)

    env.unwrapped.step = fragile_step
    with pytest.raises(TextEnvContractError, match="raised TypeError"):
        check_text_env(env)


def test_checker_catches_observations_and_moves_outside_the_declared_spaces() -> None:
    from gymnasium import spaces

    env = make_env("selfplay/TicTacToe-v0")
    check_text_env(env)  # as declared, it holds
    observation_space = env.unwrapped.observation_space
    env.unwrapped.observation_space = spaces.Text(8, charset=observation_space.character_set)
    with pytest.raises(TextEnvContractError, match="outside the observation space"):
        check_text_env(env)
    env.unwrapped.observation_space = observation_space
    env.unwrapped.action_space = spaces.Text(1, charset="abc")  # tic-tac-toe's moves are digits
    with pytest.raises(TextEnvContractError, match="legal move '.*' is outside the action space"):
        check_text_env(env)
