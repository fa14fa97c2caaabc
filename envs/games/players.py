"""Reference players for the arena: random, perfect tic-tac-toe, alpha-beta, rollout MCTS.

Every player implements ``Player``: ``choose(game, state, rng) -> action index``. The built-in
games run their search in numba (envs.games.kernels); any other ``Game`` gets a plain-Python
fallback of the same algorithm, so a user's game can be evaluated against the same opponents.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.games import alphabeta, perfect, rollout_mcts
from envs.games.kernels import kernel_id_of
from envs.protocol import Game, legal_actions

PLAYER_NAMES = ("random", "perfect", "alphabeta[:DEPTH]", "mcts[:SIMULATIONS]")


@runtime_checkable
class Player(Protocol):
    name: str

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int: ...


def _argmax_random_tie(values: np.ndarray, rng: np.random.Generator) -> int:
    best = np.flatnonzero(values == values.max())
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])


def _require_moves(game: Game, state: np.ndarray) -> np.ndarray:
    moves = legal_actions(game, state)
    if len(moves) == 0:
        raise ValueError(f"{game.name}: no legal action (the game is over)")
    return moves


class RandomPlayer:
    """Uniform over the legal actions."""

    name = "random"

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        moves = _require_moves(game, state)
        return int(moves[rng.integers(len(moves))])


class PerfectTicTacToePlayer:
    """Minimax over the precomputed table of every position: wins fastest, loses slowest, and
    picks at random among equally good moves (so games against it vary)."""

    name = "perfect"

    def __init__(self) -> None:
        perfect.score_table()  # solve now, not during the first game

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        _check_tictactoe(game)
        _require_moves(game, state)
        return _argmax_random_tie(perfect.action_scores(state), rng)

    def value(self, state: np.ndarray) -> int:
        """Exact value for the player to move: +1 win, 0 draw, -1 loss."""
        return perfect.value(state)


def _check_tictactoe(game: Game) -> None:
    if getattr(game, "name", None) != "tictactoe":
        raise ValueError(f"the perfect player knows only tic-tac-toe, not {game.name!r}")


class AlphaBetaPlayer:
    """Depth-limited negamax with alpha-beta pruning; connect four leaves are scored by open
    twos/threes and centre control. Depth is at least 2, so immediate losses are always seen."""

    def __init__(self, depth: int = 4):
        if int(depth) < 1:
            raise ValueError(f"alphabeta depth must be >= 1, got {depth}")
        self.depth = max(2, int(depth))
        self.name = f"alphabeta:{int(depth)}"

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        moves = _require_moves(game, state)
        gid = kernel_id_of(game)
        if gid is not None:
            scores = alphabeta.root_scores(gid, state, self.depth)
        else:
            scores = np.full(game.num_actions, alphabeta.NEG_INF, dtype=np.int64)
            for a in moves:
                scores[a] = -_negamax_py(
                    game,
                    game.next_state(state, a),
                    self.depth - 1,
                    alphabeta.NEG_INF,
                    -alphabeta.NEG_INF,
                )
        return _argmax_random_tie(scores, rng)


def _negamax_py(game: Game, state: np.ndarray, depth: int, alpha: int, beta: int) -> int:
    """The same search for any ``Game`` (no heuristic: unfinished leaves score 0)."""
    out = game.outcome(state)
    if out is not None:
        v = out.value_for(game.to_play(state))
        return 0 if v == 0 else int(math.copysign(alphabeta.WIN + depth, v))
    if depth == 0:
        return 0
    best = alphabeta.NEG_INF
    for a in legal_actions(game, state):
        v = -_negamax_py(game, game.next_state(state, a), depth - 1, -beta, -alpha)
        best = max(best, v)
        alpha = max(alpha, v)
        if alpha >= beta:
            break
    return best


class RolloutMCTSPlayer:
    """UCT with one random rollout per simulation; plays the most visited root action."""

    def __init__(self, num_simulations: int = 1000, uct_c: float = math.sqrt(2.0)):
        if int(num_simulations) < 1:
            raise ValueError(f"mcts simulations must be >= 1, got {num_simulations}")
        self.num_simulations = int(num_simulations)
        self.uct_c = float(uct_c)
        self.name = f"mcts:{self.num_simulations}"

    def visit_counts(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float64 [num_actions] root visit counts of one search."""
        gid = kernel_id_of(game)
        seed = int(rng.integers(2**31 - 1))
        if gid is not None:
            return rollout_mcts.uct_search(gid, state, self.num_simulations, self.uct_c, seed)
        return _uct_py(game, state, self.num_simulations, self.uct_c, rng)

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        _require_moves(game, state)
        return _argmax_random_tie(self.visit_counts(game, state, rng), rng)


def _uct_py(game: Game, root: np.ndarray, sims: int, c: float, rng: np.random.Generator):
    """Plain-Python UCT for any ``Game`` (same algorithm as rollout_mcts, slower)."""
    # node: [state, children dict, visits, wins for the player who moved into it]
    tree: list[list[Any]] = [[root, {}, 0.0, 0.0]]
    for _ in range(sims):
        path = [0]
        node = tree[0]
        while True:
            state, children = node[0], node[1]
            out = game.outcome(state)
            if out is not None:
                value0 = out.value_for_player0
                break
            moves = legal_actions(game, state)
            untried = [a for a in moves if a not in children]
            if untried:
                a = int(untried[rng.integers(len(untried))])
                child_state = game.next_state(state, a)
                tree.append([child_state, {}, 0.0, 0.0])
                children[a] = len(tree) - 1
                path.append(len(tree) - 1)
                value0 = _random_playout_py(game, child_state, rng)
                break
            log_n = math.log(node[2])
            i = max(
                children.values(),
                key=lambda j: tree[j][3] / tree[j][2] + c * math.sqrt(log_n / tree[j][2]),
            )
            path.append(i)
            node = tree[i]
        for i in path:
            tree[i][2] += 1.0
            mover = 1 - game.to_play(tree[i][0])
            tree[i][3] += value0 if mover == 0 else -value0
    visits = np.zeros(game.num_actions)
    for a, i in tree[0][1].items():
        visits[a] = tree[i][2]
    return visits


def _random_playout_py(game: Game, state: np.ndarray, rng: np.random.Generator) -> float:
    while (out := game.outcome(state)) is None:
        moves = legal_actions(game, state)
        state = game.next_state(state, int(moves[rng.integers(len(moves))]))
    return out.value_for_player0


def make_player(name: str, game: Game, **kwargs: Any) -> Player:
    """A player by name: "random", "perfect", "alphabeta" / "alphabeta:4", "mcts" / "mcts:1000".

    ``kwargs`` go to the player's constructor (e.g. ``uct_c``); a number after the colon is the
    depth or the number of simulations.
    """
    base, _, arg = str(name).strip().partition(":")
    number: int | None = None
    if arg:
        try:
            number = int(arg)
        except ValueError:
            raise ValueError(f"player {name!r}: {arg!r} after ':' is not an integer") from None
    if base == "random" and number is None:
        return RandomPlayer()
    if base == "perfect" and number is None:
        _check_tictactoe(game)
        return PerfectTicTacToePlayer()
    if base == "alphabeta":
        return AlphaBetaPlayer(**({"depth": number} if number is not None else {}), **kwargs)
    if base == "mcts":
        return RolloutMCTSPlayer(
            **({"num_simulations": number} if number is not None else {}), **kwargs
        )
    raise ValueError(f"unknown player {name!r}; valid names: {', '.join(PLAYER_NAMES)}")
