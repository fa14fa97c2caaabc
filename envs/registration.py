"""One list of built-in environments and the helpers that put them in gymnasium's registry."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpecLine:
    id: str  # gymnasium id, "selfplay/<Name>-v<N>"
    entry_point: str  # "module:Class", imported only when the env is made
    summary: str  # one line for `selfplay envs`
    kwargs: dict[str, Any] = field(default_factory=dict)


BUILTIN_ENVS: list[EnvSpecLine] = [
    EnvSpecLine(
        "selfplay/TicTacToe-v0",
        "envs.games.tictactoe:TicTacToeEnv",
        "tic-tac-toe, 3x3, two players; actions '1'..'9'",
    ),
    EnvSpecLine(
        "selfplay/ConnectFour-v0",
        "envs.games.connect_four:ConnectFourEnv",
        "connect four, 6 rows x 7 columns, two players; actions '1'..'7' (columns)",
    ),
    # -- math (envs/math) ---------------------------------------------------------------------
    EnvSpecLine(
        "selfplay/MathArithmetic-v0",
        "envs.math.env:MathEnv",
        "procedural +, -, x with carries; one action = the whole solution; reward 1 if correct",
        {"source": "procedural", "families": ["addition", "subtraction", "multiplication"],
         "mode": "single_turn"},
    ),
    EnvSpecLine(
        "selfplay/MathSteps-v0",
        "envs.math.env:MathEnv",
        "procedural arithmetic, one reasoning step per action; ends at 'Answer:' or max_steps",
        {"source": "procedural", "families": ["addition", "subtraction", "multiplication"],
         "mode": "multi_step", "max_steps": 12},
    ),
    EnvSpecLine(
        "selfplay/MathLinear-v0",
        "envs.math.env:MathEnv",
        "linear equations a*x + b = c with an integer solution; single turn",
        {"source": "procedural", "families": ["linear"], "mode": "single_turn"},
    ),
    EnvSpecLine(
        "selfplay/MathJSONL-v0",
        "envs.math.env:MathEnv",
        "math problems from a JSONL file (GSM8K or MATH format); kwarg source=<path>",
        {"source": "gsm8k_sample.jsonl", "mode": "single_turn"},
    ),
    # -- code (envs/code) ---------------------------------------------------------------------
    EnvSpecLine(
        "selfplay/CodeSynth-v0",
        "envs.code.env:CodeEnv",
        "write a Python function from examples (procedural, levels 1-3); reward: sandboxed tests",
        {"source": "procedural"},
    ),
    EnvSpecLine(
        "selfplay/CodeSteps-v0",
        "envs.code.env:CodeEnv",
        "the same tasks, one line of the program per action; a blank line ends it (step search)",
        {"source": "procedural", "mode": "multi_step", "max_steps": 16},
    ),
    EnvSpecLine(
        "selfplay/CodeJSONL-v0",
        "envs.code.env:CodeEnv",
        "MBPP/HumanEval-style JSONL tasks (default: the MBPP sample); reward: sandboxed tests",
        {"source": "mbpp_sample.jsonl", "split": "all"},
    ),
]

# Summaries of environments registered by users through ``register_env``.
_USER_SUMMARIES: dict[str, str] = {}


def register_builtin_envs() -> None:
    for line in BUILTIN_ENVS:
        if line.id not in gym.registry:
            gym.register(id=line.id, entry_point=line.entry_point, kwargs=dict(line.kwargs))


def register_env(
    id: str, entry_point: Any, summary: str = "", **kwargs: Any
) -> None:
    """Register a user environment in gymnasium's registry (one call, from the user's module).

    ``entry_point`` is a class or a "module:Class" string; ``kwargs`` become the env's defaults.
    Registering the same id again replaces it (so re-imports and notebooks are harmless).
    """
    if not isinstance(id, str) or "/" not in id or "-v" not in id:
        raise ValueError(f"env id {id!r} must look like 'namespace/Name-v0'")
    if id in gym.registry:
        del gym.registry[id]
    gym.register(id=id, entry_point=entry_point, kwargs=kwargs)
    _USER_SUMMARIES[id] = summary


def env_summary(env_id: str) -> str:
    for line in BUILTIN_ENVS:
        if line.id == env_id:
            return line.summary
    return _USER_SUMMARIES.get(env_id, "")


def selfplay_env_ids() -> list[str]:
    """Every registered id that is ours or a user's (gymnasium's own envs left out)."""
    ours = {line.id for line in BUILTIN_ENVS} | set(_USER_SUMMARIES)
    return sorted(i for i in gym.registry if i in ours or i.startswith("selfplay/"))


class UnknownEnvError(KeyError):
    def __init__(self, env_id: str):
        self.env_id = env_id
        ids = "\n  ".join(selfplay_env_ids())
        super().__init__(f"unknown env id {env_id!r}; registered environments:\n  {ids}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@contextmanager
def user_directory_importable() -> Iterator[None]:
    """The current directory at the front of ``sys.path`` while a user's env module is imported.

    The ``selfplay`` console script, unlike ``python -m``, does not put the current directory on
    the path, so ``module: nim`` next to the user's ``nim.py`` would not be found. It is put back
    afterwards so the installed package's own later imports are never shadowed by the user's files.
    """
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


def import_env_module(module: str | None) -> None:
    """Import the user module that registers an environment (``env.module`` in the config)."""
    if not module:
        return
    try:
        with user_directory_importable():
            importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"env.module={module!r} could not be imported ({err}); it must be importable "
            "from the current directory or the Python path"
        ) from err


def make_env(env_id: str, module: str | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with our error for an unknown id and the user's module imported first."""
    import envs  # noqa: F401  (registers the built-ins)

    import_env_module(module)
    if env_id not in gym.registry:
        raise UnknownEnvError(env_id)
    # Text envs are checked by our own contract test; gymnasium's passive checker would warn on
    # every Text observation, so it is off here.
    return gym.make(env_id, disable_env_checker=True, **kwargs)
