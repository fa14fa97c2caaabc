"""The board views of the games' text: the default is the original rendering, the mover views
read the same for a position and its colour-swapped twin, and the env passes the option on."""

from __future__ import annotations

import numpy as np
import pytest

from envs.games.base import BoardView
from envs.games.connect_four import ConnectFour, ConnectFourEnv
from envs.games.tictactoe import TicTacToe, TicTacToeEnv

MOVER_VIEWS = ["mover", "mover_short"]


def play(game, moves: list[int]) -> np.ndarray:
    s = game.initial_state()
    for a in moves:
        s = game.next_state(s, a)
    return s


def colour_swapped(game, s: np.ndarray) -> np.ndarray:
    """The same stones in the other colours, with the other side to move."""
    t = s.copy()
    cells = t[: game._count_index]
    t[: game._count_index] = np.where(cells == 1, 2, np.where(cells == 2, 1, 0))
    t[game._count_index] += 1 if t[game._count_index] % 2 == 0 else -1
    assert game.to_play(t) != game.to_play(s)
    return t


def random_positions(game, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    out = []
    while len(out) < count:
        s = game.initial_state()
        while game.outcome(s) is None and len(out) < count:
            out.append(s)
            s = game.next_state(s, int(rng.choice(np.flatnonzero(game.legal_mask(s)))))
    return out


# ---- the default is unchanged -------------------------------------------------------------


def test_default_connect_four_text_is_the_original() -> None:
    s = play(ConnectFour(), [3, 3, 2, 4, 6])
    expected = "O to move\n.......\n.......\n.......\n.......\n...O...\n..XXO.X\n1234567\n"
    assert ConnectFour().render_text(s) == expected
    assert ConnectFour(view="absolute").render_text(s) == expected
    env = ConnectFourEnv()
    env.reset(seed=0)
    env.set_state(s)
    assert env.render_mode is None and env.game.render_text(s) == expected


def test_default_tictactoe_text_is_the_original() -> None:
    s = play(TicTacToe(), [4, 0, 8])
    assert TicTacToe().render_text(s) == "O to move\nO..\n.X.\n..X\n"
    won = play(TicTacToe(), [0, 3, 1, 4, 2])
    assert TicTacToe().render_text(won) == "X won\nXXX\nOO.\n...\n"


# ---- the mover views ----------------------------------------------------------------------


def test_mover_view_of_a_known_position() -> None:
    s = play(ConnectFour(), [3, 3, 2, 4, 6])  # O to move
    assert ConnectFour(view="mover").render_text(s) == (
        "x to move\n.......\n.......\n.......\n.......\n...x...\n..oox.o\n1234567\n")
    assert ConnectFour(view="mover_short").render_text(s) == (
        ".......\n.......\n.......\n.......\n...x...\n..oox.o\n")
    assert TicTacToe(view=BoardView.MOVER).render_text(play(TicTacToe(), [4, 0])) == (
        "x to move\no..\n.x.\n...\n")


@pytest.mark.parametrize("view", MOVER_VIEWS)
@pytest.mark.parametrize("game_cls", [ConnectFour, TicTacToe])
def test_colour_swapped_twins_read_the_same(game_cls, view: str) -> None:
    game, absolute = game_cls(view=view), game_cls()
    for s in random_positions(game, np.random.default_rng(0), 60):
        twin = colour_swapped(game, s)
        assert game.render_text(twin) == game.render_text(s)
        if s[: game._count_index].any():
            assert absolute.render_text(twin) != absolute.render_text(s)


def test_finished_games_in_the_mover_view() -> None:
    won = play(TicTacToe(), [0, 3, 1, 4, 2])  # X completed the top row; O would move next
    assert TicTacToe(view="mover").render_text(won) == "o won\nooo\nxx.\n...\n"
    assert TicTacToe(view="mover_short").render_text(won) == "o won\nooo\nxx.\n...\n"
    draw = play(TicTacToe(), [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert TicTacToe().outcome(draw).value_for_player0 == 0.0
    assert TicTacToe(view="mover").render_text(draw).startswith("draw\n")


def test_the_short_view_is_shorter() -> None:
    s = play(ConnectFour(), [3])
    assert len(ConnectFour(view="mover_short").render_text(s)) == 6 * 8
    assert len(ConnectFour().render_text(s)) == 6 * 8 + len("X to move\n") + len("1234567\n")


def test_envs_take_the_view_and_reject_a_bad_one() -> None:
    env = ConnectFourEnv(view="mover")
    obs, _ = env.reset(seed=0)
    assert obs.startswith("x to move\n")
    obs, *_ = env.step("4")
    assert obs.splitlines()[-2] == "...o..."  # the opponent's stone, seen by the next mover
    assert TicTacToeEnv(view="mover_short").reset(seed=0)[0] == "...\n...\n...\n"
    with pytest.raises(ValueError, match="view='sideways'; expected one of"):
        ConnectFourEnv(view="sideways")


def test_gymnasium_make_passes_the_view() -> None:
    from envs.registration import make_env

    env = make_env("selfplay/ConnectFour-v0", view="mover_short")
    assert env.reset(seed=0)[0] == ".......\n" * 6
