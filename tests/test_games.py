"""Rules of the built-in games on positions with known answers; batch kernels against the
single-board rules; the env's illegal-action modes and rendering."""

from __future__ import annotations

import numpy as np
import pytest

from envs.games import connect_four as c4
from envs.games import tictactoe as ttt
from envs.games.connect_four import ConnectFour, ConnectFourEnv
from envs.games.tictactoe import TicTacToe, TicTacToeEnv
from envs.protocol import GameOutcome, IllegalActionError, legal_actions

TTT = TicTacToe()
C4 = ConnectFour()


def play(game, moves: list[int]) -> np.ndarray:
    s = game.initial_state()
    for a in moves:
        s = game.next_state(s, a)
    return s


# ---- tic-tac-toe ------------------------------------------------------------------------------


def _ttt_x_line_moves(line: list[int]) -> list[int]:
    """X plays ``line``; O plays elsewhere without completing a line first."""
    others = [c for c in range(9) if c not in line]
    for o_moves in [others[:2], others[1:3], others[2:4], others[3:5]]:
        if (
            ttt.winner(
                np.array([2 if c in o_moves else 0 for c in range(9)] + [0, 0], dtype=np.int8)
            )
            == 0
        ):
            break
    return [line[0], o_moves[0], line[1], o_moves[1], line[2]]


@pytest.mark.parametrize("line", ttt.LINES.tolist())
def test_tictactoe_x_wins_on_every_line(line: list[int]) -> None:
    s = play(TTT, _ttt_x_line_moves(line))
    assert TTT.outcome(s) == GameOutcome(1.0)
    assert not TTT.legal_mask(s).any()


@pytest.mark.parametrize("line", ttt.LINES.tolist())
def test_tictactoe_o_wins_on_every_line(line: list[int]) -> None:
    others = [c for c in range(9) if c not in line]
    # X scatters three pieces that never line up (checked), O completes ``line``.
    for x_moves in (
        [others[0], others[1], others[3]],
        [others[0], others[2], others[4]],
        [others[1], others[2], others[5]],
        [others[0], others[3], others[5]],
    ):
        board = np.zeros(11, dtype=np.int8)
        board[x_moves] = 1
        if ttt.winner(board) == 0:
            break
    s = play(TTT, [x_moves[0], line[0], x_moves[1], line[1], x_moves[2], line[2]])
    assert TTT.outcome(s) == GameOutcome(-1.0)


def test_tictactoe_full_board_draw() -> None:
    # X O X / X O O / O X X
    s = play(TTT, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert TTT.render_text(s) == "draw\nXOX\nXOO\nOXX\n"
    assert TTT.outcome(s) == GameOutcome(0.0)


def test_tictactoe_state_and_render() -> None:
    s = play(TTT, [2, 4])
    assert TTT.render_text(s) == "X to move\n..X\n.O.\n...\n"
    assert TTT.to_play(s) == 0
    assert legal_actions(TTT, s).tolist() == [0, 1, 3, 5, 6, 7, 8]
    assert TTT.state_from_board(["..X", ".O.", "..."]).tolist() == s.tolist()


def test_text_to_action_accepts_only_exact_digits() -> None:
    assert [TTT.text_to_action(t) for t in ["1", " 9\n", "5"]] == [0, 8, 4]
    for bad in ["0", "10", "x", "", "1.", "+1", "01", "１", "1 2", None, 3, b"1"]:
        assert TTT.text_to_action(bad) is None  # type: ignore[arg-type]
    assert C4.text_to_action("7") == 6 and C4.text_to_action("8") is None
    assert [C4.action_to_text(a) for a in range(7)] == list("1234567")


# ---- connect four -----------------------------------------------------------------------------


def test_connect_four_horizontal() -> None:
    s = play(C4, [0, 0, 1, 1, 2, 2, 3])
    assert C4.outcome(s) == GameOutcome(1.0)


def test_connect_four_vertical_for_o() -> None:
    s = play(C4, [0, 6, 1, 6, 0, 6, 1, 6])
    assert C4.outcome(s) == GameOutcome(-1.0)


def test_connect_four_diagonals() -> None:
    rising = play(C4, [0, 1, 1, 2, 2, 3, 2, 3, 3, 6, 3])
    assert C4.outcome(rising) == GameOutcome(1.0)
    falling = play(C4, [6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3])
    assert C4.outcome(falling) == GameOutcome(1.0)
    # The winning piece fills a gap inside the line, not its end.
    gap = C4.state_from_board([".......", ".......", "...X...", "...X...", ".XOO...", "XOXO..O"])
    assert C4.outcome(gap) is None and C4.to_play(gap) == 0
    assert C4.outcome(C4.next_state(gap, 2)) == GameOutcome(1.0)


def test_connect_four_full_column_is_illegal() -> None:
    s = play(C4, [3] * 6)
    assert not C4.legal_mask(s)[3] and C4.legal_mask(s).sum() == 6
    with pytest.raises(IllegalActionError, match="legal actions: 1, 2, 3, 5, 6, 7"):
        C4.next_state(s, 3)


def test_connect_four_full_board_draw() -> None:
    # Columns filled in pairs with a pattern that never makes four.
    rows = ["XOXOXOX", "XOXOXOX", "OXOXOXO", "OXOXOXO", "XOXOXOX", "XOXOXOX"]
    s = C4.state_from_board(rows)
    assert c4.winner(s) == 0
    assert C4.outcome(s) == GameOutcome(0.0)
    assert not C4.legal_mask(s).any()


def test_connect_four_render() -> None:
    s = play(C4, [3, 3, 4])
    text = C4.render_text(s)
    assert text == "O to move\n" + ".......\n" * 4 + "...O...\n...XX..\n1234567\n"
    assert len(text) < 256 and text.isascii()
    assert C4.render_text(C4.state_from_board(text.splitlines()[1:7])) == text


# ---- batch kernels agree with the single-board rules ----------------------------------------


@pytest.mark.parametrize("game,mod", [(TTT, ttt), (C4, c4)])
def test_batch_kernels_match_single_board(game, mod) -> None:
    rng = np.random.default_rng(0)
    n = 64
    states = np.stack([game.initial_state() for _ in range(n)])
    singles = [game.initial_state() for _ in range(n)]
    for _ in range(game.num_actions * 7):
        mask = mod.legal_mask_batch(states)
        assert mask.tolist() == [game.legal_mask(s).tolist() for s in singles]
        actions = np.array(
            [rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask], dtype=np.int64
        )
        live = mask.any(axis=1)
        new, done, reward = mod.step_batch(states, actions)
        for b in np.flatnonzero(live):
            mover = game.to_play(singles[b])
            singles[b] = game.next_state(singles[b], int(actions[b]))
            out = game.outcome(singles[b])
            assert done[b] == (out is not None)
            assert reward[b] == (0.0 if out is None else out.value_for(mover))
        states = np.where(live[:, None], new, states)
        assert states.tolist() == [s.tolist() for s in singles]
    assert all(game.outcome(s) is not None for s in singles)


def test_step_batch_illegal_move_loses_for_mover() -> None:
    states = np.stack([c4.initial_state(), play(C4, [3] * 6)])
    new, done, reward = c4.step_batch(states, np.array([9, 3]))
    assert done.tolist() == [True, True] and reward.tolist() == [-1.0, -1.0]
    assert C4.outcome(new[0]) == GameOutcome(-1.0)  # X moved illegally
    assert C4.outcome(new[1]) == GameOutcome(-1.0)  # six moves played: X to move


def test_random_playouts_are_seeded_and_plausible() -> None:
    a = ttt.random_playouts(20_000, 1)
    assert np.array_equal(a, ttt.random_playouts(20_000, 1))
    x_wins, draws = (a == 1).mean(), (a == 0).mean()
    assert abs(x_wins - 0.585) < 0.02 and abs(draws - 0.127) < 0.02  # known for random play
    b = c4.random_playouts(5_000, 2)
    assert set(np.unique(b)) <= {-1, 0, 1} and 0.5 < (b == 1).mean() < 0.62
    assert ttt.playouts_from(np.stack([play(TTT, [0, 3, 1, 4, 2])]), 0).tolist() == [1]


# ---- the env ------------------------------------------------------------------------------------


def test_env_plays_to_a_win_and_reports_reward_for_the_mover() -> None:
    env = TicTacToeEnv()
    obs, info = env.reset(seed=3)
    assert obs == "X to move\n...\n...\n...\n"
    assert info["to_play"] == 0 and info["legal_actions"] == list("123456789")
    for a in "14253":
        obs, reward, terminated, truncated, info = env.step(a)
        assert not truncated
    assert terminated and reward == 1.0 and env.outcome == GameOutcome(1.0)
    assert obs.startswith("X won") and info["legal_actions"] == [] and env.legal_actions() == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step("9")


@pytest.mark.parametrize("bad", ["5", "garbage", None, 5, b"1", "0"])
def test_env_illegal_action_lose(bad) -> None:
    env = ConnectFourEnv()
    env.reset(seed=0)
    env.step("1")  # X
    obs, reward, terminated, _, info = env.step(bad if bad != "5" else "1 ")  # O
    if bad == "5":  # "1 " is legal after stripping
        assert not terminated
        return
    assert terminated and reward == -1.0 and info["illegal_action"]
    assert env.outcome == GameOutcome(1.0, reason="illegal_move")  # O forfeited
    assert obs.startswith("X won")


def test_env_illegal_action_raise_keeps_state() -> None:
    env = ConnectFourEnv(illegal_action="raise")
    env.reset()
    for _ in range(6):
        env.step("4")
    before = env.get_state()
    for bad in ["4", "x", None]:
        with pytest.raises(IllegalActionError, match="legal actions: 1, 2, 3, 5, 6, 7"):
            env.step(bad)
    assert np.array_equal(env.get_state(), before) and env.outcome is None


def test_env_bad_illegal_action_mode() -> None:
    with pytest.raises(ValueError, match="illegal_action='sometimes'"):
        TicTacToeEnv(illegal_action="sometimes")


def test_env_state_snapshot_and_render() -> None:
    env = TicTacToeEnv(render_mode="ansi")
    env.reset()
    env.step("5")
    snap = env.get_state()
    env.step("1")
    snap[0] = 2  # a copy: the env is unaffected
    assert env.get_state()[0] == 2 and env.get_state()[4] == 1
    env.set_state(TTT.state_from_board(["XXX", "OO.", "..."]))
    assert env.outcome == GameOutcome(1.0) and env.render().startswith("X won")
    with pytest.raises(ValueError, match="shape"):
        env.set_state(np.zeros(5, dtype=np.int8))
