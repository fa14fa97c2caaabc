"""Symmetries the games declare: known boards, invariance of the rules under every symmetry over
random positions, the group laws, and ``augment``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.games.connect_four import ConnectFour
from envs.games.symmetry import augment, augment_batch
from envs.games.tictactoe import TicTacToe
from envs.protocol import SymmetricGame, Symmetry, symmetries_of

C4 = ConnectFour()
TTT = TicTacToe()
GAMES = [C4, TTT]


def random_positions(game, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Positions of random games, terminal ones included (each game to its end)."""
    out = []
    while len(out) < count:
        s = game.initial_state()
        out.append(s)
        while game.outcome(s) is None:
            s = game.next_state(s, int(rng.choice(np.flatnonzero(game.legal_mask(s)))))
            out.append(s)
    return out[:count]


# ---- known boards -----------------------------------------------------------------------------


def test_connect_four_mirror_of_a_known_position() -> None:
    s = C4.state_from_board([
        ".......",
        ".......",
        ".......",
        "...O...",
        "..XXO..",
        "X.OXXO.",
    ])
    identity, mirror = C4.symmetries()
    assert identity.name == "identity" and np.array_equal(identity.state(s), s)
    expected = C4.state_from_board([
        ".......",
        ".......",
        ".......",
        "...O...",
        "..OXX..",
        ".OXXO.X",
    ])
    assert np.array_equal(mirror.state(s), expected)
    assert mirror.action(0) == 6 and mirror.action(3) == 3 and mirror.action(5) == 1
    visits = np.array([1.0, 2.0, 3.0, 10.0, 4.0, 0.0, 5.0])
    assert np.array_equal(mirror.policy(visits), [5.0, 0.0, 4.0, 10.0, 3.0, 2.0, 1.0])


def test_tictactoe_rotation_of_a_known_position() -> None:
    s = TTT.state_from_board(["X..", ".O.", "..."])
    by_name = {g.name: g for g in TTT.symmetries()}
    assert set(by_name) >= {"identity", "rot90", "rot180", "rot270", "transpose"}
    # np.rot90 turns counter-clockwise: the top-left corner goes to the bottom-left.
    assert np.array_equal(by_name["rot90"].state(s), TTT.state_from_board(["...", ".O.", "X.."]))
    assert by_name["rot90"].action(0) == 6
    assert np.array_equal(by_name["transpose"].state(TTT.state_from_board(["XO.", "...", "..."])),
                          TTT.state_from_board(["X..", "O..", "..."]))


def test_games_declare_their_symmetries() -> None:
    assert isinstance(C4, SymmetricGame) and isinstance(TTT, SymmetricGame)
    assert len(C4.symmetries()) == 2 and len(TTT.symmetries()) == 8
    for game in GAMES:
        assert symmetries_of(game)[0].name == "identity"


def test_a_game_without_symmetries_gets_the_identity() -> None:
    class Plain:  # only what symmetries_of reads
        state_shape = (5,)
        num_actions = 3

    (g,) = symmetries_of(Plain())  # type: ignore[arg-type]
    assert g.name == "identity" and np.array_equal(g.state(np.arange(5)), np.arange(5))


def test_a_symmetry_must_be_a_permutation() -> None:
    with pytest.raises(ValueError, match="state_index is not a permutation"):
        Symmetry("bad", np.array([0, 0, 1]), np.arange(2))


# ---- invariance of the rules ------------------------------------------------------------------


@pytest.mark.parametrize("game", GAMES, ids=lambda g: g.name)
def test_rules_commute_with_every_symmetry(game) -> None:
    rng = np.random.default_rng(0)
    positions = random_positions(game, rng, 300)
    for g in game.symmetries():
        for s in positions:
            t = g.state(s)
            assert np.array_equal(game.legal_mask(t), g.policy(game.legal_mask(s))), g.name
            assert game.outcome(t) == game.outcome(s), g.name
            assert game.to_play(t) == game.to_play(s)
            for a in np.flatnonzero(game.legal_mask(s)):
                assert np.array_equal(g.state(game.next_state(s, int(a))),
                                      game.next_state(t, g.action(int(a)))), g.name


@pytest.mark.parametrize("game", GAMES, ids=lambda g: g.name)
def test_the_symmetries_form_a_group(game) -> None:
    syms = game.symmetries()
    assert len({(g.state_index.tobytes(), g.action_index.tobytes()) for g in syms}) == len(syms)
    identity = syms[0]

    def member(h: Symmetry) -> bool:
        return any(h.same_as(g) for g in syms)

    for g, h in itertools.product(syms, syms):
        assert member(g.compose(h)), (g.name, h.name)  # closed under composition
    for g in syms:
        assert member(g.inverse())
        assert g.compose(g.inverse()).same_as(identity)
        assert g.inverse().compose(g).same_as(identity)
    # composition is applying one after the other, on states and on actions
    s = random_positions(game, np.random.default_rng(1), 20)[-1]
    for g, h in itertools.product(syms, syms):
        gh = g.compose(h)
        assert np.array_equal(gh.state(s), g.state(h.state(s)))
        for a in range(game.num_actions):
            assert gh.action(a) == g.action(h.action(a))


def test_d4_has_the_dihedral_structure() -> None:
    by_name = {g.name: g for g in TTT.symmetries()}
    r = by_name["rot90"]
    r4 = r.compose(r).compose(r).compose(r)
    assert r4.same_as(by_name["identity"])
    assert r.compose(r).same_as(by_name["rot180"])
    f = by_name["transpose"]
    assert f.compose(f).same_as(by_name["identity"])
    assert f.compose(r).compose(f).same_as(r.inverse())  # f r f = r^-1


# ---- augment ----------------------------------------------------------------------------------


def test_augment_a_connect_four_decision() -> None:
    s = C4.state_from_board([
        "..X....",
        "..O....",
        "..X....",
        "..O....",
        "..X....",
        "..OX...",
    ])
    legal = np.flatnonzero(C4.legal_mask(s))  # column 3 (index 2) is full
    visits = np.array([1.0, 2.0, 10.0, 4.0, 0.0, 5.0])  # over [0, 1, 3, 4, 5, 6]
    (s0, a0, v0), (s1, a1, v1) = augment(C4, s, legal, visits)
    assert np.array_equal(s0, s) and np.array_equal(a0, legal) and np.array_equal(v0, visits)
    assert np.array_equal(a1, [0, 1, 2, 3, 5, 6])  # sorted ascending, column 5 now full
    assert np.array_equal(v1, [5.0, 0.0, 4.0, 10.0, 2.0, 1.0])
    assert np.array_equal(np.flatnonzero(C4.legal_mask(s1)), a1)


def test_augment_batch_is_symmetry_major() -> None:
    positions = random_positions(TTT, np.random.default_rng(2), 5)
    states = np.stack(positions)
    masks = np.stack([TTT.legal_mask(s) for s in positions])
    big_states, big_masks = augment_batch(TTT, states, masks)
    assert big_states.shape == (40, states.shape[1]) and big_masks.shape == (40, 9)
    for k, g in enumerate(TTT.symmetries()):
        for i, s in enumerate(positions):
            assert np.array_equal(big_states[k * 5 + i], g.state(s))
            assert np.array_equal(big_masks[k * 5 + i], TTT.legal_mask(g.state(s)))
