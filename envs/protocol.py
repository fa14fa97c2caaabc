"""The environment contract: text in, text out.

Every environment is a ``gymnasium.Env`` whose observation is the text the policy reads and whose
action is the text the policy writes. Two kinds exist:

- single-agent text tasks (math, code): ``reset`` gives a problem, ``step(text)`` gives a reward
  from a verifier (or AI feedback) and ends the episode at a final answer or a step limit;
- two-player turn-based games: besides the gymnasium API they expose a ``Game`` — pure rules over a
  small numpy state — which is what search and batched self-play use. A game env is a thin shell
  around its ``Game``.

An illegal or malformed action never crashes a run: ``IllegalActionMode.LOSE`` ends the game as a
loss for the player who made it (the default in training), ``RAISE`` raises ``IllegalActionError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


class IllegalActionMode(str, enum.Enum):
    """What an environment does with an illegal or malformed action."""

    LOSE = "lose"  # the game ends; the player who made the move loses (reward -1)
    RAISE = "raise"  # IllegalActionError, the environment state unchanged


class IllegalActionError(ValueError):
    """An action that is not one of the legal actions; the message lists the legal ones."""

    def __init__(self, action: object, legal: Sequence[str]):
        self.action = action
        self.legal = list(legal)
        shown = repr(action) if len(repr(action)) <= 40 else repr(action)[:37] + "..."
        super().__init__(f"illegal action {shown}; legal actions: {', '.join(self.legal)}")


@dataclass(frozen=True)
class GameOutcome:
    """The result of a finished game, from player 0's perspective: +1 win, 0 draw, -1 loss."""

    value_for_player0: float
    reason: str = "rules"  # "rules" | "illegal_move" | "resign"

    def value_for(self, player: int) -> float:
        return self.value_for_player0 if player == 0 else -self.value_for_player0


@runtime_checkable
class Game(Protocol):
    """Pure rules of a two-player, zero-sum, alternating-move game.

    States are small numpy arrays (cheap to copy: this is the snapshot/clone for search). Actions
    are indices in ``range(num_actions)``; ``action_to_text``/``text_to_action`` convert them to the
    strings the policy reads and writes.
    """

    name: str
    num_actions: int  # size of the fixed action index space (e.g. 9 for tic-tac-toe)
    state_shape: tuple[int, ...]

    def initial_state(self) -> np.ndarray: ...
    def to_play(self, state: np.ndarray) -> int: ...  # 0 or 1
    def legal_mask(self, state: np.ndarray) -> np.ndarray: ...  # bool [num_actions]
    def next_state(self, state: np.ndarray, action: int) -> np.ndarray: ...  # a new array
    def outcome(self, state: np.ndarray) -> GameOutcome | None: ...  # None while in play
    def action_to_text(self, action: int) -> str: ...
    def text_to_action(self, text: str) -> int | None: ...  # None when malformed
    def render_text(self, state: np.ndarray) -> str: ...  # what the policy reads


def legal_actions(game: Game, state: np.ndarray) -> np.ndarray:
    """Indices of the legal actions in ``state`` (int64, ascending)."""
    return np.flatnonzero(game.legal_mask(state))


def legal_action_texts(game: Game, state: np.ndarray) -> list[str]:
    return [game.action_to_text(int(a)) for a in legal_actions(game, state)]
