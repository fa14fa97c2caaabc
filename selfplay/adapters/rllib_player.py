"""An RLlib checkpoint as an arena player: ``player=rllib:PATH`` in `selfplay eval` / `play`.

PATH is what the RLlib recipe wrote (its ``out_dir``, or ``out_dir/checkpoint``), any
``Algorithm.save_to_path`` directory whose learner holds a module "main", or a single RLModule
directory (``RLModule.save_to_path``). Only the RLModule is loaded (``RLModule.from_checkpoint``),
so no Ray is started. A position is decided by the argmax of the module's inference logits over
the legal actions: the module masks its logits itself (rllib_module.py) and the player masks them
again with the game's own legal mask, so the arena never sees an illegal move from it.

An RLlib checkpoint is a set of pickles: loading one runs code from it, so load only checkpoints
you trust (as with ``torch.load``). A file that fails to load is one clear error, not a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.protocol import Game
from selfplay.errors import UserError

SPEC_PREFIX = "rllib:"
MODULE_ID = "main"
_LEARNER_MODULES = Path("learner_group") / "learner" / "rl_module"


@dataclass
class RllibPlayer:
    name: str
    module: Any  # an RLlib torch RLModule whose observations are rllib_env's Dict

    def choose_batch(self, game: Game, states: list[np.ndarray], rng: np.random.Generator) -> list[int]:
        import torch

        from selfplay.adapters.rllib_env import observation_of

        obs = [observation_of(game, s, int(game.to_play(s))) for s in states]
        batch = {"obs": {key: torch.from_numpy(np.stack([o[key] for o in obs]))
                         for key in ("observations", "action_mask")}}
        with torch.no_grad():
            logits = self.module.forward_inference(batch)["action_dist_inputs"].numpy()
        legal = np.stack([np.asarray(game.legal_mask(s), dtype=bool) for s in states])
        return [int(np.argmax(row)) for row in np.where(legal, logits, -np.inf)]

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        return self.choose_batch(game, [state], rng)[0]


def is_rllib_spec(name: str) -> bool:
    return isinstance(name, str) and name.startswith(SPEC_PREFIX)


def module_dir(path: Path, module_id: str = MODULE_ID) -> Path:
    """The RLModule directory inside what ``path`` names (see the module docstring)."""
    for candidate in (path / "checkpoint" / _LEARNER_MODULES / module_id,
                      path / _LEARNER_MODULES / module_id, path):
        if (candidate / "class_and_ctor_args.pkl").is_file():
            return candidate
    raise UserError(f"{path}: not an RLlib checkpoint (no {_LEARNER_MODULES / module_id} and no "
                    "RLModule files in it)")


def _player_name(path: Path) -> str:
    path = path.resolve()
    return SPEC_PREFIX + (path.parent.name if path.name == "checkpoint" else path.name)


def _check_game(module: Any, game: Game, where: Path) -> None:
    """The module's spaces must be the ones rllib_env gives ``game``."""
    from selfplay.adapters.rllib_env import observation_space_of

    expected = observation_space_of(game)
    space = getattr(module, "observation_space", None)
    try:
        shapes = {k: tuple(space[k].shape) for k in ("observations", "action_mask")}
    except (TypeError, KeyError):
        raise UserError(f"{where}: the module's observation space {space} is not the "
                        "Dict(observations, action_mask) of selfplay.adapters.rllib_env") from None
    want = {k: tuple(expected[k].shape) for k in shapes}
    if shapes != want:
        raise UserError(f"{where}: the module was trained on observations {shapes}, but "
                        f"{game.name} gives {want}: a checkpoint of another game?")


def rllib_player(path: str | Path, game: Game, module_id: str = MODULE_ID) -> RllibPlayer:
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such RLlib checkpoint")
    directory = module_dir(path, module_id)
    try:
        module = RLModule.from_checkpoint(str(directory.resolve()))
    except Exception as err:  # noqa: BLE001  (any failure to load is the file's fault)
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise UserError(f"{directory}: the RLModule does not load "
                        f"({type(err).__name__}: {first_line})") from None
    _check_game(module, game, directory)
    module.eval()
    return RllibPlayer(_player_name(path), module)


def rllib_player_from_spec(spec: str, game: Game) -> RllibPlayer:
    """``rllib:PATH`` -> the player of that checkpoint."""
    path = spec[len(SPEC_PREFIX):].strip()
    if not path:
        raise UserError(f"player={spec}: name a checkpoint after 'rllib:' (rllib:PATH)")
    return rllib_player(path, game)

