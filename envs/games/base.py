"""What the built-in board games share: the ``BoardGame`` base and the generic gymnasium env.

``BoardGame`` implements the ``Game`` protocol (envs/protocol.py) for games whose state is a flat
int8 array with a move counter and a status cell; a concrete game supplies its numba kernels.
Its text comes in three views (``BoardView``, chosen per game instance; the default is the
original absolute text), so that a policy can read the board relative to the player to move.
``TwoPlayerGameEnv`` wraps *any* ``Game`` into a text-in, text-out ``gymnasium.Env``.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.protocol import (
    Game,
    GameOutcome,
    IllegalActionError,
    IllegalActionMode,
    legal_action_texts,
    legal_actions,
)

# Status cell values, shared by every built-in game's kernels.
STATUS_PLAYING = 0
STATUS_P0_WON = 1
STATUS_P1_WON = 2
STATUS_DRAW = 3

# What an observation may contain: printable ASCII and newlines (the LM's byte vocabulary).
OBS_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"
# The longest observation of a game that declares no bound (``max_render_length``). This is a
# bound on the text, not the policy's context: that is ``policy.max_seq_len``, checked where a
# state meets the policy (selfplay/policy/priors.py), in tokens.
OBS_MAX_LENGTH = 4096


def action_space_of(game: Game) -> spaces.Text:
    """The Text space of the game's own moves: their characters and their longest spelling."""
    texts = [game.action_to_text(a) for a in range(int(game.num_actions))]
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError(f"{game.name}: action_to_text must give a non-empty str for each of "
                         f"the {game.num_actions} actions")
    charset = "".join(sorted(set("".join(texts))))
    return spaces.Text(max(map(len, texts)), min_length=min(map(len, texts)), charset=charset)


def observation_space_of(game: Game) -> spaces.Text:
    """Printable-ASCII text up to the bound the game declares (``max_render_length``), else
    ``OBS_MAX_LENGTH``; never shorter than the game's first rendering."""
    first = len(game.render_text(game.initial_state()))
    bound = int(getattr(game, "max_render_length", None) or OBS_MAX_LENGTH)
    return spaces.Text(max(bound, first), min_length=1, charset=OBS_CHARSET)


class BoardView(str, enum.Enum):
    """How ``BoardGame.render_text`` draws a position (what the policy reads)."""

    ABSOLUTE = "absolute"  # 'X' / 'O' by colour under "X to move" (the original text)
    MOVER = "mover"  # 'x' the player to move's pieces, 'o' the opponent's, under "x to move"
    MOVER_SHORT = "mover_short"  # the mover's view, board rows only while in play (no header,
    # no footer): fewer tokens per leaf evaluation; a finished game keeps its status line


# Per player to move: 'X'/'O' of the absolute board lines -> the mover-relative marks.
_MOVER_MARKS = (str.maketrans("XO", "xo"), str.maketrans("XO", "ox"))


def parse_view(view: str | BoardView) -> BoardView:
    try:
        return BoardView(view)
    except ValueError:
        valid = ", ".join(repr(v.value) for v in BoardView)
        raise ValueError(f"view={view!r}; expected one of {valid}") from None


class BoardGame:
    """A ``Game`` over a flat int8 state with a move counter and a status cell.

    Subclasses set the class attributes and implement ``initial_state``, ``legal_mask``,
    ``_apply`` (the in-place numba kernel) and ``board_lines`` (with '.', 'X', 'O' marks, which
    the mover-relative views translate).

    ``view`` chooses the text (``BoardView``): "absolute" (default, the original rendering),
    "mover" or "mover_short". Two positions with the same stones in swapped colours and the
    other side to move read the same in the mover views.
    """

    view: BoardView = BoardView.ABSOLUTE

    def __init__(self, view: str | BoardView = BoardView.ABSOLUTE):
        self.view = parse_view(view)

    name: ClassVar[str]
    num_actions: ClassVar[int]
    state_shape: ClassVar[tuple[int, ...]]
    kernel_id: ClassVar[int]  # selects this game's kernels in envs.games.kernels
    _status_index: ClassVar[int]
    _count_index: ClassVar[int]
    footer: ClassVar[str] = ""  # printed under the board (e.g. column numbers)

    def initial_state(self) -> np.ndarray:
        raise NotImplementedError

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _apply(self, state: np.ndarray, action: int) -> int:
        raise NotImplementedError

    def board_lines(self, state: np.ndarray) -> list[str]:
        raise NotImplementedError

    # -- the rest of the protocol, in terms of the above --------------------------------------

    def to_play(self, state: np.ndarray) -> int:
        return int(state[self._count_index]) % 2

    def status(self, state: np.ndarray) -> int:
        return int(state[self._status_index])

    def next_state(self, state: np.ndarray, action: int) -> np.ndarray:
        action = int(action)
        if not (0 <= action < self.num_actions) or not self.legal_mask(state)[action]:
            raise IllegalActionError(action, legal_action_texts(self, state))
        new = state.copy()
        self._apply(new, action)
        return new

    def forfeit(self, state: np.ndarray) -> np.ndarray:
        """A copy of ``state`` ended as a loss for the player to move (after an illegal move)."""
        new = state.copy()
        new[self._status_index] = STATUS_P1_WON if self.to_play(state) == 0 else STATUS_P0_WON
        return new

    def outcome(self, state: np.ndarray) -> GameOutcome | None:
        st = self.status(state)
        if st == STATUS_PLAYING:
            return None
        return GameOutcome({STATUS_P0_WON: 1.0, STATUS_P1_WON: -1.0}.get(st, 0.0))

    def action_to_text(self, action: int) -> str:
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"{self.name}: action {action} outside 0..{self.num_actions - 1}")
        return str(int(action) + 1)

    def text_to_action(self, text: str) -> int | None:
        if not isinstance(text, str):
            return None
        t = text.strip()
        # Only the exact ASCII digit strings: int() would also take '０', '+3' or '03'.
        if len(t) == 1 and "1" <= t <= "9" and int(t) <= self.num_actions:
            return int(t) - 1
        return None

    def render_text(self, state: np.ndarray) -> str:
        if self.view is not BoardView.ABSOLUTE:
            return self._render_for_mover(state)
        st = self.status(state)
        header = {
            STATUS_PLAYING: f"{'XO'[self.to_play(state)]} to move",
            STATUS_P0_WON: "X won",
            STATUS_P1_WON: "O won",
            STATUS_DRAW: "draw",
        }[st]
        lines = [header, *self.board_lines(state)]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines) + "\n"

    def _render_for_mover(self, state: np.ndarray) -> str:
        """The board from the view of the player to move: 'x' theirs, 'o' the opponent's."""
        mover = self.to_play(state)
        board = [line.translate(_MOVER_MARKS[mover]) for line in self.board_lines(state)]
        st = self.status(state)
        if st == STATUS_PLAYING:
            header = "x to move"
        elif st == STATUS_DRAW:
            header = "draw"
        else:  # after a win (or a forfeit) the player to move is usually the loser: "o won"
            header = "x won" if st == mover + 1 else "o won"
        if self.view is BoardView.MOVER_SHORT:
            lines = board if st == STATUS_PLAYING else [header, *board]
        else:
            lines = [header, *board, *([self.footer] if self.footer else [])]
        return "\n".join(lines) + "\n"


class TwoPlayerGameEnv(gym.Env):
    """A text gymnasium env around any ``Game``: the observation is ``game.render_text``, the
    action one of ``game.action_to_text``; the reward goes to the player who just moved."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, game: Game, illegal_action: str = "lose", render_mode: str | None = None):
        try:
            self.illegal_action = IllegalActionMode(illegal_action)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in IllegalActionMode)
            raise ValueError(
                f"{type(self).__name__}: illegal_action={illegal_action!r}; expected one of {valid}"
            ) from None
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}; supported: 'ansi' or None")
        self.game = game
        self.render_mode = render_mode
        self.observation_space, self.action_space = self.text_spaces()
        self._state = game.initial_state()
        self._outcome: GameOutcome | None = None

    # -- gymnasium API --------------------------------------------------------------------------

    def text_spaces(self) -> tuple[spaces.Text, spaces.Text]:
        """(observation space, action space), derived from the game. An adapter whose game cannot
        spell every action up front (OpenSpiel learns its move strings by playing) overrides it."""
        return observation_space_of(self.game), action_space_of(self.game)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.game.initial_state()
        self._outcome = None
        return self.game.render_text(self._state), self._info()

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._outcome is not None:
            raise RuntimeError(f"{self.game.name}: the game is over; call reset() first")
        mover = self.to_play
        index = self.game.text_to_action(action) if isinstance(action, str) else None
        if index is None or not self.game.legal_mask(self._state)[index]:
            if self.illegal_action is IllegalActionMode.RAISE:
                raise IllegalActionError(action, self.legal_actions())
            forfeit = getattr(self.game, "forfeit", None)
            if forfeit is not None:
                self._state = forfeit(self._state)
            self._outcome = GameOutcome(-1.0 if mover == 0 else 1.0, reason="illegal_move")
            info = self._info()
            info["illegal_action"] = True
            return self.game.render_text(self._state), -1.0, True, False, info
        self._state = self.game.next_state(self._state, index)
        self._outcome = self.game.outcome(self._state)
        reward = 0.0 if self._outcome is None else float(self._outcome.value_for(mover))
        info = self._info()
        info["illegal_action"] = False
        return self.game.render_text(self._state), reward, self._outcome is not None, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.game.render_text(self._state)
        gym.logger.warn("render() needs render_mode='ansi'")
        return None

    # -- what search and the arena use ---------------------------------------------------------

    @property
    def to_play(self) -> int:
        return int(self.game.to_play(self._state))

    @property
    def outcome(self) -> GameOutcome | None:
        return self._outcome

    def legal_actions(self) -> list[str]:
        if self._outcome is not None:
            return []
        return legal_action_texts(self.game, self._state)

    def get_state(self) -> np.ndarray:
        return self._state.copy()

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state)
        if state.shape != tuple(self.game.state_shape):
            raise ValueError(
                f"{self.game.name}: state shape {state.shape}, expected {self.game.state_shape}"
            )
        self._state = state.astype(self.game.initial_state().dtype, copy=True)
        self._outcome = self.game.outcome(self._state)

    def _info(self) -> dict[str, Any]:
        done = self._outcome is not None
        indices = [] if done else [int(a) for a in legal_actions(self.game, self._state)]
        return {
            "to_play": self.to_play,
            "legal_actions": [self.game.action_to_text(a) for a in indices],
            "legal_action_indices": indices,
        }
