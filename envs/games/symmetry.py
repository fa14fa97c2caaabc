"""Symmetries of the built-in board games and ``augment``, the helper a learner trains with.

A symmetry (``envs.protocol.Symmetry``) is a pair of gathers: one over the flat state (board cells
move, the move counter and the status cell stay), one over the action index space. Connect four
has two (identity, the left-right mirror: column c <-> 6 - c); tic-tac-toe the eight of the
dihedral group D4 (rotations and reflections of the 3x3 board). Applying one is a numpy gather
(``states[:, g.state_index]``), which is as fast as a kernel would be, so none of this is numba.

    for state, actions, visits in augment(game, state, actions, visits):
        ...  # one training decision per symmetry, identity first
"""

from __future__ import annotations

import numpy as np

from envs.protocol import Game, Symmetry, symmetries_of


def board_symmetry(name: str, cell_index: np.ndarray, state_size: int,
                   action_index: np.ndarray) -> Symmetry:
    """A symmetry that moves the first ``cell_index.size`` state entries (the board cells) by
    ``cell_index`` and keeps the rest (counters, status) where they are."""
    cells = np.asarray(cell_index, dtype=np.int64)
    state_index = np.concatenate([cells, np.arange(cells.size, state_size, dtype=np.int64)])
    return Symmetry(name, state_index, np.asarray(action_index, dtype=np.int64))


def mirror_columns(rows: int, cols: int, state_size: int) -> list[Symmetry]:
    """Identity and the left-right mirror of a ``rows x cols`` board stored row-major, whose
    actions are the columns (connect four)."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    mirror_cells = r * cols + (cols - 1 - c)
    return [
        board_symmetry("identity", np.arange(rows * cols), state_size, np.arange(cols)),
        board_symmetry("mirror", mirror_cells, state_size, np.arange(cols)[::-1].copy()),
    ]


def dihedral_square(n: int, state_size: int) -> list[Symmetry]:
    """The 8 symmetries (D4) of an ``n x n`` board stored row-major, whose actions are its cells
    (tic-tac-toe): 4 rotations, then the 4 reflections."""
    grid = np.arange(n * n).reshape(n, n)
    out = []
    for flip in (False, True):
        for quarter_turns in range(4):
            g = np.rot90(grid.T if flip else grid, k=quarter_turns)  # g[i, j]: source cell
            turn = f"rot{90 * quarter_turns}" if quarter_turns else ""
            name = "+".join(filter(None, ["transpose" if flip else "", turn])) or "identity"
            cells = g.reshape(-1)
            out.append(board_symmetry(name, cells, state_size, cells))
    return out


def augment(
    game: Game, state: np.ndarray, actions: np.ndarray, visits: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One decision seen through each symmetry ``game`` declares (identity first).

    ``actions`` int [K] are action indices (e.g. a root's legal actions) and ``visits`` [K] (or
    any per-action target) is aligned with them. Each item is ``(g(state), g(actions),
    visits)``, with the actions sorted ascending and the visits reordered with them, as the
    search lists a root's actions. A game that declares no symmetries gives the one decision.
    """
    actions = np.asarray(actions, dtype=np.int64)
    visits = np.asarray(visits)
    if actions.shape != visits.shape[:1]:
        raise ValueError(f"augment: {actions.size} actions but visits of shape {visits.shape}")
    out = []
    for g in symmetries_of(game):
        moved = np.asarray(g.action(actions), dtype=np.int64).reshape(actions.shape)
        order = np.argsort(moved, kind="stable")
        out.append((g.state(state), moved[order], visits[order]))
    return out


def augment_batch(game: Game, states: np.ndarray, policies: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Batch form over the full action space: ``states`` [N, S] and per-action ``policies``
    [N, A] (visit distributions, legal masks) -> [G*N, S], [G*N, A], symmetry-major (all of
    the identity's rows first)."""
    syms = symmetries_of(game)
    return (np.concatenate([g.state(states) for g in syms]),
            np.concatenate([g.policy(policies) for g in syms]))


__all__ = ["augment", "augment_batch", "board_symmetry", "dihedral_square", "mirror_columns"]
