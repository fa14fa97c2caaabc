"""Symmetry augmentation of game decisions, for the learner's draws (``learner.augment_symmetries``).

A game may declare the symmetries of its rules (``envs.protocol.Symmetry``: connect four's
left-right mirror, tic-tac-toe's eight). A decision seen through one of them is as true a
training example as the decision itself: the mirrored position, its mirrored moves, the same
visit distribution and the same result. ``with_symmetries`` computes, once when an episode
enters the replay window, each searched decision's other views (the text the policy reads and
the move texts): it replays the game's moves to get each position's state, checking at every
step that the state renders to the text that was stored, and gives up on an episode that does not
(a rendering the game object cannot reproduce gets no views, never wrong ones). ``draw_view``
picks one of a decision's views uniformly (the original included) when the sampler draws it.

Pure functions over ``Game`` and the replay's ``Decision``; nothing here knows a model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from envs.protocol import Game, symmetries_of
from selfplay.replay.sampler import Decision, DecisionView
from selfplay.types import Episode


def episode_states(game: Game, episode: Episode) -> list[np.ndarray] | None:
    """The state before each step of a game ``episode`` (replayed from its moves), or None when
    the moves do not replay to the stored observations (the episode is not this game's)."""
    state = game.initial_state()
    states = []
    for step in episode.steps:
        if game.render_text(state) != step.observation:
            return None
        action = game.text_to_action(step.action)
        if action is None or not game.legal_mask(state)[action]:
            return None
        states.append(state)
        if step is not episode.steps[-1]:
            state = game.next_state(state, action)
    return states


def with_symmetries(game: Game, episode: Episode, decisions: list[Decision]) -> list[Decision]:
    """``decisions`` (of ``episode``) with ``views`` filled: one per symmetry other than the
    identity, for each decision with search targets. Unchanged when the game declares none or
    the episode does not replay."""
    symmetries = [g for g in symmetries_of(game)
                  if not (np.array_equal(g.state_index, np.arange(g.state_index.size))
                          and np.array_equal(g.action_index, np.arange(g.action_index.size)))]
    if not symmetries or not any(d.target.size for d in decisions):
        return decisions
    states = episode_states(game, episode)
    if states is None:
        return decisions
    out = []
    for d in decisions:
        if d.target.size == 0:
            out.append(d)
            continue
        state = states[d.key[1]]
        actions = np.array([game.text_to_action(a) for a in d.actions], dtype=np.int64)
        chosen = game.text_to_action(d.action)
        views = []
        for g in symmetries:
            moved = np.asarray(g.action(actions), dtype=np.int64).reshape(actions.shape)
            order = np.argsort(moved, kind="stable")  # as the search lists a root's moves
            views.append(DecisionView(
                observation=game.render_text(g.state(state)),
                actions=[game.action_to_text(int(a)) for a in moved[order]],
                target=d.target[order],
                action=game.action_to_text(int(g.action(chosen))),
                q_values=d.q_values[order] if d.q_values.size == order.size else d.q_values,
            ))
        out.append(replace(d, views=tuple(views)))
    return out


def draw_view(d: Decision, rng: np.random.Generator) -> Decision:
    """``d`` as one of its views, uniformly (itself included)."""
    k = int(rng.integers(len(d.views) + 1)) if d.views else 0
    if k == 0:
        return d
    v = d.views[k - 1]
    return replace(d, observation=v.observation, actions=v.actions, target=v.target,
                   action=v.action, q_values=v.q_values, views=())
