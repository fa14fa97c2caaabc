"""OpenSpiel's two-player board games as selfplay game envs (``pip install 'selfplay[openspiel]'``).

Any two-player, alternating, perfect-information, deterministic, zero-sum OpenSpiel game, by name
and with its parameters, becomes a text game like the built-ins: the observation is OpenSpiel's
``str(state)`` under a "player N to move" line, a move is OpenSpiel's own action string
(``state.action_to_string``), the legal moves come from ``state.legal_actions()`` and the result
from ``state.returns()``. Search, self-play training, the arena, ``selfplay play`` and ``eval``
use it through the ``Game`` protocol, with no numba kernels (the reference players use their
plain-Python fallbacks: ``random``, ``alphabeta:D``, ``mcts:N``).

    # conf/env/openspiel_hex.yaml (or any game through conf/env/openspiel_game.yaml)
    selfplay train env=openspiel_hex run.dir=runs/hex5
    selfplay train env=openspiel_game env.kwargs.game='breakthrough(rows=5,columns=5)' ...
    selfplay play env=openspiel_game env.kwargs.game=othello player=random
    selfplay envs --import selfplay.adapters.openspiel

    import selfplay.adapters.openspiel              # registers the ids below, once
    env = selfplay.make_env("openspiel/hex-v0", parameters={"board_size": 5})
    env = selfplay.make_env("openspiel/Game-v0", game="hex(board_size=5)")

Ids: ``openspiel/<name>-v0`` for each OpenSpiel game that qualifies (kwarg ``parameters``, a
dict of the game's parameters), and ``openspiel/Game-v0`` whose kwarg ``game`` is any OpenSpiel
game string (``"hex(board_size=5)"``). Importing this module registers them (``register()``; a
config names the module in ``env.module``).

Moves (kwarg ``moves``):

- ``"openspiel"`` (default): OpenSpiel's strings. A move's index must read the same in every
  position; where OpenSpiel writes the mover into it (tic-tac-toe ``x(0,0)`` / ``o(0,0)``),
  each player gets its own index (``num_actions`` is then twice OpenSpiel's). A game whose
  strings depend on the position (chess's SAN: ``Ra6`` or ``Rxa6``) is refused, naming
  ``moves=index``;
- ``"index"``: the action id as decimal text (``"0"``, ``"4673"``), for any game.

What a game must be is checked when the env is made, by its type and by a few seeded random
games (players alternate, player 0 or 1 moves first, the move strings are stable); a game that
fails gets one ``ValueError`` naming the rule (e.g. checkers: a capture sequence is one player
moving several times). The action space is declared from the move strings that random play met
(their characters, the longest length); the observation space bounds the text at twice the
longest rendering seen (at least 256 characters).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.games.base import OBS_MAX_LENGTH, TwoPlayerGameEnv
from envs.registration import register_env
from selfplay.adapters.history import OBS_CHARSET, GameRulesError, HistoryGame

try:
    import pyspiel
except ImportError as err:  # the extra is not installed
    raise ImportError(
        "selfplay.adapters.openspiel needs OpenSpiel: pip install 'selfplay[openspiel]' "
        f"(open-spiel==2.0.2); {err}"
    ) from None

MOVES = ("openspiel", "index")
GENERIC_ID = "openspiel/Game-v0"

# Seen in open-spiel 2.0.2: the same player moves several times in a row (not registered).
NOT_ALTERNATING = frozenset({
    "amazons", "checkers", "chinese_checkers", "cursor_go", "dots_and_boxes", "mancala",
    "nine_mens_morris", "ultimate_tic_tac_toe",
})
# Their move strings depend on the position: registered with moves="index".
POSITIONAL_MOVES = frozenset({"antichess", "chess", "crazyhouse", "quoridor", "twixt", "xiangqi"})

PROBE_GAMES = 8  # random games played to check a game and learn its move strings
PROBE_PLIES = 2_000  # at most this many moves in all


# ------------------------------------------------------------------------------------------------
# Which games qualify


def _qualifies(game_type: Any, num_players: int | None = None) -> str | None:
    """Why a game (its ``GameType``) cannot be adapted, or None when it can."""
    t = pyspiel.GameType
    low, high = ((num_players, num_players) if num_players is not None
                 else (game_type.min_num_players, game_type.max_num_players))
    if not low <= 2 <= high:
        return f"it has {low if low == high else f'{low}-{high}'} players (two are needed)"
    if game_type.dynamics != t.Dynamics.SEQUENTIAL:
        return "its moves are simultaneous (turn-based games only)"
    if game_type.chance_mode != t.ChanceMode.DETERMINISTIC:
        return "it has chance events (deterministic games only)"
    if game_type.information != t.Information.PERFECT_INFORMATION:
        return "it has hidden information (perfect-information games only)"
    if game_type.utility not in (t.Utility.ZERO_SUM, t.Utility.CONSTANT_SUM):
        return "it is not zero-sum (a win for one player must be a loss for the other)"
    return None


def qualifying_games() -> list[str]:
    """Short names of the registered OpenSpiel games the adapter takes (by type and by the
    known exceptions above)."""
    return sorted(g.short_name for g in pyspiel.registered_games()
                  if _qualifies(g) is None and g.short_name not in NOT_ALTERNATING
                  and g.short_name != "efg_game")  # a game read from a file, not a board game


def load_game(game: str, parameters: Mapping[str, Any] | None = None) -> Any:
    """``pyspiel.load_game`` with one clear ``ValueError`` for an unknown name, a bad parameter
    or a game the adapter cannot take."""
    if not isinstance(game, str) or not game.strip():
        raise ValueError(f"openspiel: game={game!r}; name an OpenSpiel game, e.g. 'hex' or "
                         "'breakthrough(rows=5,columns=5)'")
    name = game.split("(", 1)[0].strip()
    known = {g.short_name: g for g in pyspiel.registered_games()}
    if name not in known:
        raise ValueError(f"openspiel: unknown game {name!r}; games the adapter takes: "
                         f"{', '.join(qualifying_games())}")
    reason = _qualifies(known[name])
    if reason is None and name in NOT_ALTERNATING:
        reason = "the same player moves several times in a row (multi-part moves)"
    if reason is not None:
        raise ValueError(f"openspiel: {name!r} cannot be adapted: {reason}")
    try:
        if parameters:
            if "(" in game:
                raise ValueError(f"openspiel: {game!r}: give the parameters in the game "
                                 "string or in parameters=, not both")
            loaded = pyspiel.load_game(name, dict(parameters))
        else:
            loaded = pyspiel.load_game(game.strip())
    except pyspiel.SpielError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise ValueError(f"openspiel: cannot load {game!r} (parameters {dict(parameters or {})})"
                         f": {first}") from None
    reason = _qualifies(loaded.get_type(), loaded.num_players())
    if reason is not None:
        raise ValueError(f"openspiel: {str(loaded)!r} cannot be adapted: {reason}")
    return loaded


# ------------------------------------------------------------------------------------------------
# The probe: a few seeded random games


@dataclass(frozen=True)
class Probe:
    """What random play showed of a game (pure: the same game string gives the same probe)."""

    first_player: int
    per_player: bool  # OpenSpiel writes the mover into its move strings
    texts: dict[tuple[int, int], str]  # (player, action id) -> OpenSpiel's string
    longest_rendering: int


def _check_text(texts: dict, key: tuple[int, int], text: str, where: str) -> None:
    known = texts.setdefault(key, text)
    if known != text:
        raise GameRulesError(
            f"{where}: action {key[1]} reads {known!r} in one position and {text!r} in another "
            "(its move strings depend on the position); use env.kwargs.moves=index")


@functools.lru_cache(maxsize=64)
def probe(game_string: str, read_moves: bool = True) -> Probe:
    """Random games of ``game_string``; ``read_moves``: also learn and check its move strings."""
    game = pyspiel.load_game(game_string)
    rng = np.random.default_rng(0)
    root = game.new_initial_state()
    first = root.current_player()
    if first not in (0, 1):
        raise GameRulesError(f"openspiel {game_string}: the first move is not a player's "
                             f"(current_player() = {first})")
    texts: dict[tuple[int, int], str] = {}
    longest, plies, quiet = len(str(root)), 0, 0
    for _ in range(PROBE_GAMES):
        before = len(texts)
        state = root.clone()
        while not state.is_terminal() and plies < PROBE_PLIES:
            player = state.current_player()
            legal = state.legal_actions()
            for a in legal if read_moves else ():
                _check_text(texts, (player, a), state.action_to_string(player, a),
                            f"openspiel {game_string}")
            state.apply_action(int(legal[rng.integers(len(legal))]))
            plies += 1
            if not state.is_terminal() and state.current_player() == player:
                raise GameRulesError(
                    f"openspiel {game_string}: player {player} moves twice in a row; the "
                    "adapter needs games whose players alternate")
            longest = max(longest, len(str(state)))
        quiet = quiet + 1 if len(texts) == before else 0
        if quiet >= 2 or plies >= PROBE_PLIES:
            break
    both = {a for (p, a) in texts if p == 0} & {a for (p, a) in texts if p == 1}
    per_player = any(texts[(0, a)] != texts[(1, a)] for a in both)
    return Probe(first, per_player, texts, longest)


# ------------------------------------------------------------------------------------------------
# The Game


class OpenSpielGame(HistoryGame):
    """The ``Game`` protocol over an OpenSpiel game (state: the move history, see HistoryGame).

    With ``per_player`` move strings, index ``i`` is OpenSpiel action ``i % A`` played by player
    ``i // A`` (A = ``num_distinct_actions``), so that every index has one text.
    """

    def __init__(self, game: str = "tic_tac_toe", parameters: Mapping[str, Any] | None = None,
                 moves: str = "openspiel"):
        if moves not in MOVES:
            raise ValueError(f"openspiel: moves={moves!r}; expected one of {', '.join(MOVES)}")
        self.spiel_game = load_game(game, parameters)
        self.game_string = str(self.spiel_game)
        name = self.spiel_game.get_type().short_name
        if moves == "openspiel" and name in POSITIONAL_MOVES:
            raise ValueError(f"openspiel: {name}'s move strings depend on the position (e.g. "
                             "chess's SAN); use env.kwargs.moves=index")
        try:
            found = probe(self.game_string, moves == "openspiel")
        except GameRulesError as err:
            raise ValueError(str(err)) from None
        self.moves = moves
        self.distinct = int(self.spiel_game.num_distinct_actions())
        self.per_player = moves == "openspiel" and found.per_player
        super().__init__(f"openspiel/{self.game_string.removesuffix('()')}",
                         self.distinct * (2 if self.per_player else 1),
                         self.spiel_game.max_game_length())
        self.first_player = found.first_player
        self.longest_rendering = found.longest_rendering + len("player 0 to move\n") + 1
        self._text_of: dict[int, str] = {}
        self._index_of: dict[str, int] = {}
        if moves == "openspiel":
            for (player, a), text in sorted(found.texts.items()):
                self._learn(self._index(player, a), text)

    # -- move texts ----------------------------------------------------------------------------

    def _index(self, player: int, action: int) -> int:
        return player * self.distinct + action if self.per_player else action

    def _learn(self, index: int, text: str) -> None:
        text = text.strip()
        if not text:
            raise GameRulesError(f"{self.name}: action {index} has an empty move string; use "
                                 "env.kwargs.moves=index")
        known = self._text_of.get(index)
        if known is not None and known != text:
            raise GameRulesError(f"{self.name}: action {index} reads {known!r} and {text!r}; "
                                 "use env.kwargs.moves=index")
        other = self._index_of.get(text)
        if other is not None and other != index:
            raise GameRulesError(f"{self.name}: actions {other} and {index} both read "
                                 f"{text!r}; use env.kwargs.moves=index")
        self._text_of[index], self._index_of[text] = text, index

    def action_to_text(self, action: int) -> str:
        action = int(action)
        if not 0 <= action < self.num_actions:
            raise ValueError(f"{self.name}: action {action} outside 0..{self.num_actions - 1}")
        if self.moves == "index":
            return str(action)
        text = self._text_of.get(action)
        if text is None:  # only legal moves of positions already met have texts
            raise ValueError(f"{self.name}: action {action} has not been legal in any position "
                             "met so far, so its OpenSpiel string is unknown")
        return text

    def text_to_action(self, text: str) -> int | None:
        if not isinstance(text, str):
            return None
        t = text.strip()
        if self.moves == "index":
            # only canonical decimal ASCII: int() would also take '+3', '03' or '３'
            if t.isascii() and t.isdigit() and (t == "0" or not t.startswith("0")):
                index = int(t)
                return index if index < self.num_actions else None
            return None
        return self._index_of.get(t)

    def move_charset(self) -> tuple[str, int]:
        """The characters and the longest length of the move texts known now."""
        if self.moves == "index":
            return string.digits, len(str(self.num_actions - 1))
        texts = list(self._text_of.values())
        return "".join(sorted(set("".join(texts)))), max(len(t) for t in texts)

    # -- engine hooks ----------------------------------------------------------------------------

    def _new_engine(self) -> Any:
        return self.spiel_game.new_initial_state()

    def _child(self, engine: Any, action: int) -> Any:
        child = engine.clone()
        child.apply_action(action % self.distinct)
        return child

    def _engine_to_play(self, engine: Any) -> int:
        return int(engine.current_player())

    def _engine_legal(self, engine: Any) -> list[int]:
        player = int(engine.current_player())
        actions = engine.legal_actions()
        legal = [self._index(player, a) for a in actions]
        if self.moves == "openspiel":
            for a, index in zip(actions, legal):
                if index not in self._text_of:  # a move random play never met: learn it now
                    self._learn(index, engine.action_to_string(player, a))
        return legal

    def _engine_result(self, engine: Any) -> float | None:
        if not engine.is_terminal():
            return None
        r0, r1 = engine.returns()[:2]
        return float(np.sign(r0 - r1))

    def _engine_text(self, engine: Any) -> str:
        return str(engine)


# ------------------------------------------------------------------------------------------------
# The env


class OpenSpielEnv(TwoPlayerGameEnv):
    """A gymnasium env around ``OpenSpielGame``; its spaces are derived from the game."""

    def __init__(self, game: str = "tic_tac_toe", parameters: Mapping[str, Any] | None = None,
                 moves: str = "openspiel", illegal_action: str = "lose",
                 render_mode: str | None = None):
        self._moves = moves
        super().__init__(OpenSpielGame(game, parameters, moves), illegal_action=illegal_action,
                         render_mode=render_mode)

    def text_spaces(self) -> tuple[spaces.Text, spaces.Text]:
        charset, longest = self.game.move_charset()
        if self._moves == "openspiel":  # moves random play has not met yet may use other letters
            charset = "".join(sorted(set(charset) | set(string.ascii_letters + string.digits)))
        observation = spaces.Text(max(OBS_MAX_LENGTH, 2 * self.game.longest_rendering),
                                  min_length=1, charset=OBS_CHARSET)
        return observation, spaces.Text(longest, min_length=1, charset=charset)


def register() -> list[str]:
    """Register ``openspiel/<name>-v0`` for every qualifying game and ``openspiel/Game-v0``;
    returns the ids. Calling it again changes nothing."""
    entry = "selfplay.adapters.openspiel:OpenSpielEnv"
    register_env(GENERIC_ID, entry, "any OpenSpiel two-player board game: kwarg game="
                 "'hex(board_size=5)'", game="tic_tac_toe")
    ids = [GENERIC_ID]
    for name in qualifying_games():
        extra = {"moves": "index"} if name in POSITIONAL_MOVES else {}
        note = " (moves: action ids)" if extra else ""
        register_env(f"openspiel/{name}-v0", entry,
                     f"OpenSpiel {name}{note}; kwarg parameters={{...}}", game=name, **extra)
        ids.append(f"openspiel/{name}-v0")
    return ids


REGISTERED_IDS = register()
