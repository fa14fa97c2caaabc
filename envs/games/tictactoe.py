"""Tic-tac-toe: rules as numba kernels over a flat int8 state, a ``Game``, batch API and the env.

State layout (int8 [11]): cells 0..8 row-major (0 empty, 1 player 0 "X", 2 player 1 "O"),
[9] number of moves played, [10] status (0 in play, 1 player 0 won, 2 player 1 won, 3 draw).
Keeping the status in the state makes ``outcome`` and batch ``done`` flags a single read.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.games.base import STATUS_DRAW, STATUS_PLAYING, BoardGame, TwoPlayerGameEnv
from envs.games.symmetry import dihedral_square
from envs.protocol import Symmetry

NUM_CELLS = 9
NUM_ACTIONS = 9
IDX_COUNT = 9
IDX_STATUS = 10
STATE_SIZE = 11

# The 8 lines; a module-level array is frozen into the compiled kernels as a constant.
LINES = np.array(
    [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]],
    dtype=np.int64,
)


# ---- kernels (one board) ------------------------------------------------------------------


@njit(cache=True)
def initial_state() -> np.ndarray:
    return np.zeros(STATE_SIZE, dtype=np.int8)


@njit(cache=True)
def to_play(s: np.ndarray) -> int:
    return s[IDX_COUNT] % 2


@njit(cache=True)
def winner(s: np.ndarray) -> int:
    """0 if no line is complete, else the piece (1 or 2) that completes one."""
    for k in range(LINES.shape[0]):
        p = s[LINES[k, 0]]
        if p != 0 and p == s[LINES[k, 1]] and p == s[LINES[k, 2]]:
            return p
    return 0


@njit(cache=True)
def legal_moves_into(s: np.ndarray, out: np.ndarray) -> int:
    """Write the legal actions of ``s`` into ``out``; return how many (0 once the game is over)."""
    if s[IDX_STATUS] != STATUS_PLAYING:
        return 0
    n = 0
    for i in range(NUM_CELLS):
        if s[i] == 0:
            out[n] = i
            n += 1
    return n


@njit(cache=True)
def legal_mask(s: np.ndarray) -> np.ndarray:
    out = np.zeros(NUM_ACTIONS, dtype=np.bool_)
    if s[IDX_STATUS] == STATUS_PLAYING:
        for i in range(NUM_CELLS):
            out[i] = s[i] == 0
    return out


@njit(cache=True)
def apply_move(s: np.ndarray, a: int) -> int:
    """Play ``a`` in place for the player to move and return the new status.

    An illegal action (occupied cell, out of range, game over) ends the game as a loss for the
    mover: batched self-play must never stop on one bad move.
    """
    if s[IDX_STATUS] != STATUS_PLAYING:
        return s[IDX_STATUS]
    mover = s[IDX_COUNT] % 2
    if a < 0 or a >= NUM_CELLS or s[a] != 0:
        s[IDX_STATUS] = 2 - mover  # the other player wins
        return s[IDX_STATUS]
    piece = mover + 1
    s[a] = piece
    s[IDX_COUNT] += 1
    # Only lines through the new piece can have been completed by it.
    r = a // 3
    c = a % 3
    won = (s[3 * r] == piece and s[3 * r + 1] == piece and s[3 * r + 2] == piece) or (
        s[c] == piece and s[c + 3] == piece and s[c + 6] == piece
    )
    if not won and r == c:
        won = s[0] == piece and s[4] == piece and s[8] == piece
    if not won and r + c == 2:
        won = s[2] == piece and s[4] == piece and s[6] == piece
    if won:
        s[IDX_STATUS] = piece
    elif s[IDX_COUNT] == NUM_CELLS:
        s[IDX_STATUS] = STATUS_DRAW
    return s[IDX_STATUS]


@njit(cache=True)
def heuristic(s: np.ndarray) -> int:
    """Open lines for the player to move minus the opponent's (used only by depth-limited search)."""
    me = s[IDX_COUNT] % 2 + 1
    score = 0
    for k in range(LINES.shape[0]):
        mine = 0
        theirs = 0
        for j in range(3):
            v = s[LINES[k, j]]
            if v == me:
                mine += 1
            elif v != 0:
                theirs += 1
        if theirs == 0:
            score += mine * mine
        elif mine == 0:
            score -= theirs * theirs
    return score


# ---- kernels (batches) --------------------------------------------------------------------


@njit(cache=True)
def legal_mask_batch(states: np.ndarray) -> np.ndarray:
    """bool [N, 9] legal actions of each state [N, 11]."""
    n = states.shape[0]
    out = np.zeros((n, NUM_ACTIONS), dtype=np.bool_)
    for b in range(n):
        if states[b, IDX_STATUS] == STATUS_PLAYING:
            for i in range(NUM_CELLS):
                out[b, i] = states[b, i] == 0
    return out


@njit(cache=True)
def step_batch(states: np.ndarray, actions: np.ndarray):
    """Apply ``actions[N]`` to copies of ``states[N, 11]``.

    Returns (new states [N, 11], done bool [N], reward float32 [N]); the reward is for the player
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
def _seed(seed: int) -> None:
    np.random.seed(seed)


@njit(cache=True)
def playouts_from(states: np.ndarray, seed: int) -> np.ndarray:
    """One random playout from each of ``states[N, 11]``; int8 [N] values for player 0."""
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
_SYMMETRIES = dihedral_square(3, STATE_SIZE)


class TicTacToe(BoardGame):
    """Tic-tac-toe as a ``Game``; actions '1'..'9' are the cells row-major."""

    name = "tictactoe"
    num_actions = NUM_ACTIONS
    state_shape = (STATE_SIZE,)
    kernel_id = 0  # see envs.games.kernels
    _status_index = IDX_STATUS
    _count_index = IDX_COUNT

    def initial_state(self) -> np.ndarray:
        return initial_state()

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        return legal_mask(state)

    def symmetries(self) -> list[Symmetry]:
        """The 8 rotations and reflections of the board (D4), identity first."""
        return list(_SYMMETRIES)

    def _apply(self, state: np.ndarray, action: int) -> int:
        return apply_move(state, action)

    def board_lines(self, state: np.ndarray) -> list[str]:
        return ["".join(_MARKS[int(state[3 * r + c])] for c in range(3)) for r in range(3)]

    def state_from_board(self, rows: list[str]) -> np.ndarray:
        """A state from three rows of '.', 'X', 'O' (tests and examples); status recomputed."""
        cells = [_MARKS.index(ch) for ch in "".join(rows)]
        if len(cells) != NUM_CELLS:
            raise ValueError(f"tic-tac-toe needs 3 rows of 3 cells, got {rows!r}")
        s = initial_state()
        s[:NUM_CELLS] = cells
        s[IDX_COUNT] = sum(1 for c in cells if c)
        w = winner(s)
        s[IDX_STATUS] = w if w else (STATUS_DRAW if s[IDX_COUNT] == NUM_CELLS else STATUS_PLAYING)
        return s


class TicTacToeEnv(TwoPlayerGameEnv):
    """``selfplay/TicTacToe-v0``."""

    def __init__(self, illegal_action: str = "lose", render_mode: str | None = None,
                 view: str = "absolute"):
        # view: the text the policy reads, "absolute" | "mover" | "mover_short" (BoardView)
        super().__init__(TicTacToe(view=view), illegal_action=illegal_action,
                         render_mode=render_mode)
