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


@dataclass(frozen=True, eq=False)
class Symmetry:
    """A symmetry of a game's rules, as two gathers (index permutations) over a flat state.

    ``state_index`` [S] and ``action_index`` [A] read the transformed arrays from the original
    ones: ``g(state)[..., i] == state[..., state_index[i]]`` and a per-action vector (visits,
    priors, a legal mask) transforms as ``g(v)[..., j] == v[..., action_index[j]]``; so action
    ``a`` becomes ``g.action(a)``, the position of ``a`` in ``action_index``. A symmetry commutes
    with the rules: ``g(next_state(s, a)) == next_state(g(s), g.action(a))``, the legal mask of
    ``g(s)`` is ``g.policy(legal_mask(s))`` and the outcome is unchanged.
    """

    name: str
    state_index: np.ndarray  # int64 [S], a permutation of range(S)
    action_index: np.ndarray  # int64 [A], a permutation of range(A)

    def __post_init__(self) -> None:
        for field_name in ("state_index", "action_index"):
            v = np.asarray(getattr(self, field_name), dtype=np.int64)
            if v.ndim != 1 or not np.array_equal(np.sort(v), np.arange(v.size)):
                raise ValueError(f"Symmetry {self.name!r}: {field_name} is not a permutation")
            v.setflags(write=False)
            object.__setattr__(self, field_name, v)
        inverse = np.empty_like(self.action_index)
        inverse[self.action_index] = np.arange(self.action_index.size)
        inverse.setflags(write=False)
        object.__setattr__(self, "_action_map", inverse)

    def state(self, state: np.ndarray) -> np.ndarray:
        """The transformed state (a new array): [..., S] -> [..., S]."""
        return np.asarray(state)[..., self.state_index]

    def policy(self, values: np.ndarray) -> np.ndarray:
        """A per-action vector (visits, priors, legal mask) transformed: [..., A] -> [..., A]."""
        return np.asarray(values)[..., self.action_index]

    def action(self, action):
        """The index (or int64 array of indices) an action takes under the symmetry."""
        mapped = self._action_map[np.asarray(action, dtype=np.int64)]
        return int(mapped) if np.ndim(mapped) == 0 else mapped

    def compose(self, first: Symmetry) -> Symmetry:
        """``self`` after ``first``: ``(g.compose(h)).state(s) == g.state(h.state(s))``."""
        return Symmetry(f"{self.name}*{first.name}", first.state_index[self.state_index],
                        first.action_index[self.action_index])

    def inverse(self) -> Symmetry:
        s_inv = np.empty_like(self.state_index)
        s_inv[self.state_index] = np.arange(self.state_index.size)
        return Symmetry(f"{self.name}^-1", s_inv, self._action_map.copy())

    def same_as(self, other: Symmetry) -> bool:
        return bool(np.array_equal(self.state_index, other.state_index)
                    and np.array_equal(self.action_index, other.action_index))


@runtime_checkable
class SymmetricGame(Protocol):
    """A ``Game`` that declares the symmetries of its rules (optional; identity first)."""

    def symmetries(self) -> list[Symmetry]: ...


def identity_symmetry(game: Game) -> Symmetry:
    size = int(np.prod(game.state_shape))
    return Symmetry("identity", np.arange(size), np.arange(game.num_actions))


def symmetries_of(game: Game) -> list[Symmetry]:
    """The symmetries ``game`` declares, or just the identity when it declares none."""
    declared = getattr(game, "symmetries", None)
    return list(declared()) if callable(declared) else [identity_symmetry(game)]


def legal_actions(game: Game, state: np.ndarray) -> np.ndarray:
    """Indices of the legal actions in ``state`` (int64, ascending)."""
    return np.flatnonzero(game.legal_mask(state))


def legal_action_texts(game: Game, state: np.ndarray) -> list[str]:
    return [game.action_to_text(int(a)) for a in legal_actions(game, state)]
