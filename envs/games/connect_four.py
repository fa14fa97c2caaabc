"""Connect four (6 rows x 7 columns): numba kernels over a flat int8 state, a ``Game``, batch API
and the env.

State layout (int8 [44]): cells 0..41 as ``row * 7 + col`` with row 0 at the *bottom* (a piece
drops to the lowest empty row), 0 empty, 1 player 0 "X", 2 player 1 "O"; [42] moves played;
[43] status (0 in play, 1 player 0 won, 2 player 1 won, 3 draw).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.games.base import STATUS_DRAW, STATUS_PLAYING, BoardGame, TwoPlayerGameEnv
from envs.games.symmetry import mirror_columns
from envs.protocol import Symmetry

ROWS = 6
COLS = 7
NUM_CELLS = ROWS * COLS
NUM_ACTIONS = COLS
IDX_COUNT = NUM_CELLS
IDX_STATUS = NUM_CELLS + 1
STATE_SIZE = NUM_CELLS + 2

# Directions of a line through a cell: horizontal, vertical, two diagonals.
_DIRS = np.array([[0, 1], [1, 0], [1, 1], [1, -1]], dtype=np.int64)


def _all_windows() -> np.ndarray:
    """The 69 windows of four cells in a line (cell indices), for the heuristic."""
    out = []
    for r in range(ROWS):
        for c in range(COLS):
            for dr, dc in _DIRS:
                cells = [(r + k * dr, c + k * dc) for k in range(4)]
                if all(0 <= rr < ROWS and 0 <= cc < COLS for rr, cc in cells):
                    out.append([rr * COLS + cc for rr, cc in cells])
    return np.array(out, dtype=np.int64)


WINDOWS = _all_windows()
_WINDOW_WEIGHT = np.array([0, 0, 2, 8, 0], dtype=np.int64)  # by pieces in an open window


# ---- kernels (one board) ------------------------------------------------------------------


@njit(cache=True)
def initial_state() -> np.ndarray:
    return np.zeros(STATE_SIZE, dtype=np.int8)


@njit(cache=True)
def to_play(s: np.ndarray) -> int:
    return s[IDX_COUNT] % 2


@njit(cache=True)
def legal_moves_into(s: np.ndarray, out: np.ndarray) -> int:
    """Write the legal columns of ``s`` into ``out``; return how many (0 once the game is over)."""
    if s[IDX_STATUS] != STATUS_PLAYING:
        return 0
    n = 0
    for c in range(COLS):
        if s[(ROWS - 1) * COLS + c] == 0:  # the top cell of the column is free
            out[n] = c
            n += 1
    return n


@njit(cache=True)
def legal_mask(s: np.ndarray) -> np.ndarray:
    out = np.zeros(NUM_ACTIONS, dtype=np.bool_)
    if s[IDX_STATUS] == STATUS_PLAYING:
        for c in range(COLS):
            out[c] = s[(ROWS - 1) * COLS + c] == 0
    return out


@njit(cache=True)
def _run(s: np.ndarray, r: int, c: int, dr: int, dc: int, piece: int) -> int:
    n = 0
    r += dr
    c += dc
    while 0 <= r < ROWS and 0 <= c < COLS and s[r * COLS + c] == piece:
        n += 1
        r += dr
        c += dc
    return n


@njit(cache=True)
def makes_four(s: np.ndarray, r: int, c: int, piece: int) -> bool:
    """Whether ``piece`` at (r, c) lies on four in a line (only lines through it are checked)."""
    for k in range(4):
        dr = _DIRS[k, 0]
        dc = _DIRS[k, 1]
        if 1 + _run(s, r, c, dr, dc, piece) + _run(s, r, c, -dr, -dc, piece) >= 4:
            return True
    return False


@njit(cache=True)
def apply_move(s: np.ndarray, a: int) -> int:
    """Drop a piece in column ``a`` in place for the player to move; return the new status.

    An illegal action (full column, out of range, game over) ends the game as a loss for the
    mover: batched self-play must never stop on one bad move.
    """
    if s[IDX_STATUS] != STATUS_PLAYING:
        return s[IDX_STATUS]
    mover = s[IDX_COUNT] % 2
    if a < 0 or a >= COLS or s[(ROWS - 1) * COLS + a] != 0:
        s[IDX_STATUS] = 2 - mover  # the other player wins
        return s[IDX_STATUS]
    r = 0
    while s[r * COLS + a] != 0:
        r += 1
    piece = mover + 1
    s[r * COLS + a] = piece
    s[IDX_COUNT] += 1
    if makes_four(s, r, a, piece):
        s[IDX_STATUS] = piece
    elif s[IDX_COUNT] == NUM_CELLS:
        s[IDX_STATUS] = STATUS_DRAW
    return s[IDX_STATUS]


@njit(cache=True)
def winner(s: np.ndarray) -> int:
    """0 if no four in a line, else the piece (1 or 2) that has one (a full-board scan)."""
    for k in range(WINDOWS.shape[0]):
        p = s[WINDOWS[k, 0]]
        if p != 0 and p == s[WINDOWS[k, 1]] and p == s[WINDOWS[k, 2]] and p == s[WINDOWS[k, 3]]:
            return p
    return 0


@njit(cache=True)
def heuristic(s: np.ndarray) -> int:
    """Open twos and threes (windows of four with no opposing piece) plus centre-column pieces,
    for the player to move minus the opponent's."""
    me = s[IDX_COUNT] % 2 + 1
    score = 0
    for k in range(WINDOWS.shape[0]):
        mine = 0
        theirs = 0
        for j in range(4):
            v = s[WINDOWS[k, j]]
            if v == me:
                mine += 1
            elif v != 0:
                theirs += 1
        if theirs == 0:
            score += _WINDOW_WEIGHT[mine]
        elif mine == 0:
            score -= _WINDOW_WEIGHT[theirs]
    for r in range(ROWS):
        v = s[r * COLS + COLS // 2]
        if v == me:
            score += 3
        elif v != 0:
            score -= 3
    return score


# ---- kernels (batches) --------------------------------------------------------------------


@njit(cache=True)
def legal_mask_batch(states: np.ndarray) -> np.ndarray:
    """bool [N, 7] legal columns of each state [N, 44]."""
    n = states.shape[0]
    out = np.zeros((n, NUM_ACTIONS), dtype=np.bool_)
    for b in range(n):
        if states[b, IDX_STATUS] == STATUS_PLAYING:
            for c in range(COLS):
                out[b, c] = states[b, (ROWS - 1) * COLS + c] == 0
    return out


@njit(cache=True)
def step_batch(states: np.ndarray, actions: np.ndarray):
    """Apply ``actions[N]`` to copies of ``states[N, 44]``.

    Returns (new states [N, 44], done bool [N], reward float32 [N]); the reward is for the player
    who just moved (+1 win, -1 loss including an illegal move, 0 otherwise).
    """
    out = states.copy()
    n = out.shape[0]
    done = np.zeros(n, dtype=np.bool_)
    reward = np.zeros(n, dtype=np.float32)
    for b in range(n):
        mover = out[b, IDX_COUNT] % 2
        st = apply_move(out[b], actions[b])
        if st != STATUS_PLAYING:
            done[b] = True
            if st == mover + 1:
                reward[b] = 1.0
            elif st != STATUS_DRAW:
                reward[b] = -1.0
    return out, done, reward


@njit(cache=True)
def playout(s: np.ndarray) -> int:
    """Play uniformly random moves in place to the end; return the value for player 0."""
    moves = np.empty(NUM_ACTIONS, dtype=np.int64)
    while True:
        n = legal_moves_into(s, moves)
        if n == 0:
            break
        apply_move(s, moves[np.random.randint(0, n)])
    st = s[IDX_STATUS]
    return 1 if st == 1 else (-1 if st == 2 else 0)


@njit(cache=True)
def playouts_from(states: np.ndarray, seed: int) -> np.ndarray:
    """One random playout from each of ``states[N, 44]``; int8 [N] values for player 0."""
    np.random.seed(seed)
    n = states.shape[0]
    out = np.empty(n, dtype=np.int8)
    s = np.empty(STATE_SIZE, dtype=np.int8)
    for b in range(n):
        s[:] = states[b]
        out[b] = playout(s)
    return out


@njit(cache=True)
def random_playouts(num_games: int, seed: int) -> np.ndarray:
    """``num_games`` random games from the empty board; int8 [num_games] values for player 0."""
    np.random.seed(seed)
    out = np.empty(num_games, dtype=np.int8)
    s = np.empty(STATE_SIZE, dtype=np.int8)
    for b in range(num_games):
        s[:] = 0
        out[b] = playout(s)
    return out


# ---- the Game and the env -----------------------------------------------------------------

_MARKS = ".XO"
_SYMMETRIES = mirror_columns(ROWS, COLS, STATE_SIZE)


class ConnectFour(BoardGame):
    """Connect four as a ``Game``; actions '1'..'7' are the columns left to right."""

    name = "connect_four"
    num_actions = NUM_ACTIONS
    state_shape = (STATE_SIZE,)
    kernel_id = 1  # see envs.games.kernels
    footer = "1234567"
    _status_index = IDX_STATUS
    _count_index = IDX_COUNT

    def initial_state(self) -> np.ndarray:
        return initial_state()

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        return legal_mask(state)

    def symmetries(self) -> list[Symmetry]:
        """Identity and the left-right mirror (envs.games.symmetry)."""
        return list(_SYMMETRIES)

    def _apply(self, state: np.ndarray, action: int) -> int:
        return apply_move(state, action)

    def board_lines(self, state: np.ndarray) -> list[str]:
        # Top row first, as a person sees the board.
        return [
            "".join(_MARKS[int(state[r * COLS + c])] for c in range(COLS))
            for r in range(ROWS - 1, -1, -1)
        ]

    def state_from_board(self, rows: list[str]) -> np.ndarray:
        """A state from 6 rows of '.', 'X', 'O', top row first (tests and examples)."""
        if len(rows) != ROWS or any(len(r) != COLS for r in rows):
            raise ValueError(f"connect four needs {ROWS} rows of {COLS} cells, got {rows!r}")
        s = initial_state()
        for i, row in enumerate(rows):
            r = ROWS - 1 - i
            for c, ch in enumerate(row):
                s[r * COLS + c] = _MARKS.index(ch)
        s[IDX_COUNT] = int(np.count_nonzero(s[:NUM_CELLS]))
        w = winner(s)
        s[IDX_STATUS] = w if w else (STATUS_DRAW if s[IDX_COUNT] == NUM_CELLS else STATUS_PLAYING)
        return s


class ConnectFourEnv(TwoPlayerGameEnv):
    """``selfplay/ConnectFour-v0``."""

    def __init__(self, illegal_action: str = "lose", render_mode: str | None = None,
                 view: str = "absolute"):
        # view: the text the policy reads, "absolute" | "mover" | "mover_short" (BoardView)
        super().__init__(ConnectFour(view=view), illegal_action=illegal_action,
                         render_mode=render_mode)
