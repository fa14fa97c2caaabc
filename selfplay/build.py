"""Builders that turn config sections into components, with user-facing errors.

Commands (play, train, eval) call these so that a bad env id, a user module that fails to import,
a kwarg the env does not take, or a dataset that is missing or malformed is reported as one clear
message rather than a traceback.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from omegaconf import OmegaConf

from envs.protocol import Game
from envs.registration import UnknownEnvError, make_env
from selfplay.errors import UserError


def build_env(env_cfg: Any, **overrides: Any) -> gym.Env:
    raw = env_cfg.kwargs
    if not raw:
        kwargs = {}
    elif OmegaConf.is_config(raw):
        kwargs = OmegaConf.to_container(raw, resolve=True)
    else:  # a typed sub-config holds a plain dict
        kwargs = dict(raw)
    kwargs.update(overrides)
    # Each error keeps its cause (``from err``): the message is all a user sees, and
    # SELFPLAY_DEBUG=1 shows the traceback behind it (selfplay/cli.py).
    try:
        return make_env(env_cfg.id, env_cfg.module, **kwargs)
    except UserError:
        raise
    except UnknownEnvError as err:
        raise UserError(f"env.id: {err}") from err
    except ImportError as err:  # env.module, or the env's own entry point
        raise UserError(str(err)) from err
    except TypeError as err:  # a kwarg the env's constructor does not take
        raise UserError(f"env.kwargs for {env_cfg.id}: {err}") from err
    except (ValueError, OSError, gym.error.Error) as err:
        # What an env constructor raises on its input: a dataset that is missing or has a bad
        # line (the env's message names file and line), a kwarg value it does not accept.
        raise UserError(f"env {env_cfg.id}: {err}") from err


def game_of(env: gym.Env) -> Game | None:
    """The pure rules behind a two-player game env, or None for single-agent text tasks."""
    game = getattr(env.unwrapped, "game", None)
    return game if isinstance(game, Game) else None


def env_kind(env: gym.Env) -> str:
    """"game" for a two-player game, "text" for a single-agent text task."""
    return "game" if game_of(env) is not None else "text"
