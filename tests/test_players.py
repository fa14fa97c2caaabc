"""Reference players: exact tic-tac-toe values, tactics, strength against random, the factory."""

from __future__ import annotations

import numpy as np
import pytest

from envs.games.connect_four import ConnectFour
from envs.games.players import (
    AlphaBetaPlayer,
    PerfectTicTacToePlayer,
    Player,
    RandomPlayer,
    RolloutMCTSPlayer,
    make_player,
)
from envs.games.tictactoe import TicTacToe
from envs.protocol import Game

TTT = TicTacToe()
C4 = ConnectFour()


def play_game(game: Game, players: tuple[Player, Player], rng: np.random.Generator) -> float:
    s = game.initial_state()
    while (out := game.outcome(s)) is None:
        s = game.next_state(s, players[game.to_play(s)].choose(game, s, rng))
    return out.value_for_player0


def test_perfect_values() -> None:
    p = PerfectTicTacToePlayer()
    assert p.value(TTT.initial_state()) == 0
    assert p.value(TTT.state_from_board(["XX.", "OO.", "..."])) == 1  # X to move wins
    assert p.value(TTT.state_from_board(["X..", ".O.", "..X"])) == 0  # O draws with an edge
    assert p.value(TTT.state_from_board(["XXX", "OO.", "..."])) == -1  # O to move, lost


def test_perfect_takes_a_win_and_blocks_a_loss() -> None:
    p = PerfectTicTacToePlayer()
    rng = np.random.default_rng(0)
    win = TTT.state_from_board(["XX.", "OO.", "..."])
    assert all(p.choose(TTT, win, rng) == 2 for _ in range(10))
    block = TTT.state_from_board(["XX.", ".O.", "..."])  # O to move must take cell 3
    assert all(p.choose(TTT, block, rng) == 2 for _ in range(10))
    # Against an X corner opening, an edge reply loses: the perfect player never plays one.
    corner = TTT.state_from_board(["X..", "...", "..."])
    assert {p.choose(TTT, corner, rng) for _ in range(30)} == {4}


def test_perfect_never_loses_to_random() -> None:
    rng = np.random.default_rng(1)
    perfect, rand = PerfectTicTacToePlayer(), RandomPlayer()
    as_x = [play_game(TTT, (perfect, rand), rng) for _ in range(500)]
    as_o = [play_game(TTT, (rand, perfect), rng) for _ in range(500)]
    assert min(as_x) >= 0 and max(as_o) <= 0
    assert np.mean(as_x) > 0.9  # it also wins almost every game as X


def test_perfect_rejects_other_games() -> None:
    with pytest.raises(ValueError, match="only tic-tac-toe"):
        PerfectTicTacToePlayer().choose(C4, C4.initial_state(), np.random.default_rng())


@pytest.mark.parametrize("depth", [1, 4])
def test_alphabeta_takes_a_win_and_blocks_a_loss(depth: int) -> None:
    ab = AlphaBetaPlayer(depth)
    rng = np.random.default_rng(0)
    # X to move, three in the bottom row: column 4 wins.
    win = C4.state_from_board([".......", ".......", ".......", ".......", "O......", "XXX.OO."])
    assert ab.choose(C4, win, rng) == 3
    # X to move; O threatens the bottom row at column 6: X must block there.
    block = C4.state_from_board([".......", ".......", ".......", ".......", "X......", "XXOOO.."])
    assert ab.choose(C4, block, rng) == 5
    # O to move must block X's vertical three.
    vertical = C4.state_from_board(
        [".......", ".......", ".......", "X......", "X.O....", "X.O...."]
    )
    assert ab.choose(C4, vertical, rng) == 0


def test_alphabeta_beats_random_at_connect_four() -> None:
    rng = np.random.default_rng(2)
    results = [play_game(C4, (AlphaBetaPlayer(2), RandomPlayer()), rng) for _ in range(5)]
    results += [-play_game(C4, (RandomPlayer(), AlphaBetaPlayer(2)), rng) for _ in range(5)]
    assert sum(r > 0 for r in results) >= 9


def test_rollout_mcts_beats_random_at_tictactoe() -> None:
    rng = np.random.default_rng(3)
    mcts, rand = RolloutMCTSPlayer(200), RandomPlayer()
    results = [play_game(TTT, (mcts, rand), rng) for _ in range(10)]
    results += [-play_game(TTT, (rand, mcts), rng) for _ in range(10)]
    assert sum(r > 0 for r in results) >= 14 and min(results) >= 0


def test_rollout_mcts_finds_the_connect_four_win() -> None:
    win = C4.state_from_board([".......", ".......", ".......", ".......", "O......", "XXX.OO."])
    visits = RolloutMCTSPlayer(2000).visit_counts(C4, win, np.random.default_rng(0))
    assert visits.argmax() == 3 and visits.sum() == 2000


class _Nim:
    """A user's game (no numba kernels): take 1 or 2 from a pile; taking the last one wins."""

    name = "nim"
    num_actions = 2
    state_shape = (2,)

    def initial_state(self):
        return np.array([7, 0], dtype=np.int8)  # [pile, player to move]

    def to_play(self, s):
        return int(s[1])

    def legal_mask(self, s):
        return np.array([s[0] >= 1, s[0] >= 2])

    def next_state(self, s, a):
        return np.array([s[0] - (a + 1), 1 - s[1]], dtype=np.int8)

    def outcome(self, s):
        from envs.protocol import GameOutcome

        return None if s[0] > 0 else GameOutcome(1.0 if s[1] == 1 else -1.0)

    def action_to_text(self, a):
        return str(a + 1)

    def text_to_action(self, t):
        return {"1": 0, "2": 1}.get(t.strip())

    def render_text(self, s):
        return f"pile {s[0]}\n"


def test_generic_fallbacks_play_a_users_game() -> None:
    nim, rng = _Nim(), np.random.default_rng(0)
    s = nim.initial_state()  # 7 stones: taking 1 leaves a multiple of 3, the only winning move
    assert AlphaBetaPlayer(8).choose(nim, s, rng) == 0
    assert RolloutMCTSPlayer(300).choose(nim, s, rng) == 0
    assert RandomPlayer().choose(nim, s, rng) in (0, 1)


def test_make_player() -> None:
    assert isinstance(make_player("random", TTT), RandomPlayer)
    assert isinstance(make_player("perfect", TTT), PerfectTicTacToePlayer)
    ab = make_player("alphabeta:6", C4)
    assert isinstance(ab, AlphaBetaPlayer) and ab.depth == 6 and ab.name == "alphabeta:6"
    assert make_player("alphabeta", C4).depth == 4
    mcts = make_player("mcts:50", C4, uct_c=1.0)
    assert isinstance(mcts, RolloutMCTSPlayer) and mcts.num_simulations == 50
    assert mcts.uct_c == 1.0 and isinstance(mcts, Player)
    with pytest.raises(ValueError, match="only tic-tac-toe"):
        make_player("perfect", C4)
    with pytest.raises(ValueError, match="valid names: random, perfect"):
        make_player("stockfish", C4)
    with pytest.raises(ValueError, match="not an integer"):
        make_player("mcts:lots", C4)
    with pytest.raises(ValueError, match=">= 1"):
        make_player("alphabeta:0", C4)
