"""Groups of episodes: the k samples of one problem, and which of them are worth imitating.

A text rollout samples k episodes per problem and gives them one ``group_id``; GRPO normalises each
episode's reward against its group's, and expert iteration keeps the best of each group. Both
need the group's rewards beside every decision, so the sampler computes them here when episodes
arrive. A group always arrives whole in one ``add`` (the rollout returns full groups, and one add
is one shard), so groups are formed per call: the same group id in two calls is two groups.

numpy only: this runs inside the replay actor, which never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfplay.types import Episode

GroupOutcome = tuple[np.ndarray, int]  # (rewards [K] float32 of the group, this episode's index)


def best_of_group(rewards: np.ndarray) -> np.ndarray:
    """[K] bool: the samples whose reward equals the group's best, when that best is > 0.

    The verified-correct (or best-scored) samples of a group; all False when no sample scored
    above 0, since imitating the best of k failures teaches the failure. A NaN reward is no
    score: it is never best (and does not hide the others).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"best_of_group takes one group's rewards [K], got shape {r.shape}")
    scored = np.where(np.isnan(r), -np.inf, r)
    if scored.size == 0 or not scored.max() > 0:
        return np.zeros(r.shape, dtype=bool)
    return scored == scored.max()


def group_outcomes(episodes: Sequence[Episode]) -> dict[str, GroupOutcome]:
    """Per episode id: its group's outcomes [K] (float32, in the order given) and its index.

    Episodes with the same non-empty ``group_id`` form one group; an episode with group id ""
    (a game, an ungrouped sample) is a group of one. The rewards array is shared by the group's
    members and read-only, so no consumer can change another's.
    """
    members: dict[tuple[bool, str], list[Episode]] = {}
    for ep in episodes:
        # An ungrouped episode is keyed by its own id, apart from the group ids it may equal.
        key = (True, ep.group_id) if ep.group_id else (False, ep.episode_id)
        members.setdefault(key, []).append(ep)
    out: dict[str, GroupOutcome] = {}
    for group in members.values():
        rewards = np.array([ep.outcome for ep in group], dtype=np.float32)
        rewards.setflags(write=False)
        for index, ep in enumerate(group):
            if ep.episode_id in out:
                raise ValueError(
                    f"episode id {ep.episode_id!r} appears twice among the episodes added "
                    "together; the replay keys decisions by episode id"
                )
            out[ep.episode_id] = (rewards, index)
    return out
