"""Batched self-play: many games of one ``Game`` played at once, both sides by the same policy.

Every move of every unfinished game is searched in one ``GameSearch.run`` call, so the engine sees
one batch of leaves per wave across all games. Each decision is recorded with its search
statistics; the finished games become ``Episode`` records for the replay store.

Playout-cap randomisation (KataGo, Wu 2019): with ``fast_search`` and ``full_search_prob`` < 1,
each move of the batch is searched in full (with root noise) with that probability, else by the
cheap ``fast_search`` (no noise). A fast decision is played but recorded without search
statistics, so the learner, which trains on searched decisions only, never takes a target from
it; the games get longer-sighted targets for the same compute. One draw per move of the batch
keeps the engine's batches whole.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Callable

import numpy as np

from envs.protocol import Game
from selfplay.search.game_adapter import Evaluator, GameSearch
from selfplay.search.policies import select_action
from selfplay.types import Episode, Step


def cached_evaluator(evaluate: Evaluator, max_entries: int = 200_000) -> Evaluator:
    """Memoise an evaluator by state bytes (games revisit positions constantly).

    The cache belongs to one set of weights: make a new one whenever the weights change.
    """
    cache: OrderedDict[bytes, tuple[np.ndarray, float]] = OrderedDict()

    def evaluate_cached(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        keys = [np.ascontiguousarray(s).tobytes() for s in states]
        missing = [i for i, k in enumerate(keys) if k not in cache]
        fresh: dict[bytes, tuple[np.ndarray, float]] = {}
        if missing:
            priors, values = evaluate([states[i] for i in missing])
            for row, i in enumerate(missing):
                fresh[keys[i]] = (np.asarray(priors[row]), float(values[row]))
        # Read every answer before anything is evicted: a full cache must never drop an entry
        # this very call still needs.
        found = [fresh[k] if k in fresh else cache[k] for k in keys]
        for k in keys:
            if k in fresh:
                cache[k] = fresh[k]
            cache.move_to_end(k)  # least recently used goes first
        while len(cache) > max_entries:
            cache.popitem(last=False)
        return np.stack([f[0] for f in found]), np.array([f[1] for f in found])

    return evaluate_cached


def temperature_at(move_number: int, temperature: float, temperature_moves: int) -> float:
    """Explore with ``temperature`` for the first moves of a game, then play greedily."""
    return temperature if move_number < temperature_moves else 0.0


def play_selfplay_games(
    game: Game,
    search: GameSearch,
    *,
    num_games: int,
    env_id: str,
    policy_version: int,
    seed: int,
    temperature: float = 1.0,
    temperature_moves: int = 4,
    actor: str = "",
    on_move: Callable[[int], None] | None = None,
    fast_search: GameSearch | None = None,
    full_search_prob: float = 1.0,
) -> list[Episode]:
    """Play ``num_games`` games to the end; returns them in the order they finished."""
    rng = np.random.default_rng(seed)
    started = time.time()
    states = [game.initial_state() for _ in range(num_games)]
    steps: list[list[Step]] = [[] for _ in range(num_games)]
    active = list(range(num_games))
    finished: list[Episode] = []
    fast_moves = [0] * num_games
    while active:
        full = fast_search is None or full_search_prob >= 1.0 or rng.random() < full_search_prob
        result = (search if full else fast_search).run([states[g] for g in active], rng=rng,
                                                       add_noise=full)
        still_active = []
        for row, g in enumerate(active):
            stats, legal = result.stats[row], result.legal_actions[row]
            if result.chosen is not None:  # a Gumbel root chose (its noise is the exploration)
                choice = result.chosen[row]
            else:
                t = temperature_at(len(steps[g]), temperature, temperature_moves)
                choice = select_action(np.asarray(stats.visits, dtype=np.float64), t, rng)
            action = int(legal[choice])
            player = game.to_play(states[g])
            fast_moves[g] += not full
            steps[g].append(
                Step(
                    observation=game.render_text(states[g]),
                    action=game.action_to_text(action),
                    player=player,
                    reward=0.0,
                    search=stats if full else None,  # a fast search's visits are no target
                    legal_actions=list(stats.actions),
                )
            )
            states[g] = game.next_state(states[g], action)
            outcome = game.outcome(states[g])
            if outcome is None:
                still_active.append(g)
                continue
            # Only the final move is rewarded, for the player who made it.
            steps[g][-1].reward = outcome.value_for(player)
            finished.append(
                Episode(
                    episode_id=uuid.uuid4().hex,
                    env_id=env_id,
                    seed=seed * 100_003 + g,
                    policy_version=policy_version,
                    steps=steps[g],
                    outcome=outcome.value_for_player0,
                    started_at=started,
                    finished_at=time.time(),
                    actor=actor,
                    info={"termination": outcome.reason, **(
                        {"fast_moves": fast_moves[g]} if fast_search is not None else {})},
                )
            )
        if on_move is not None:
            on_move(len(active))
        active = still_active
    return finished
