"""The replay sampler: the decisions the learner trains on, drawn from a recency window.

An in-memory ring holds the most recent ``window`` decisions (fed by ``add(episodes)`` as actors
finish them, or rebuilt from the store on resume), so a learner step never rereads Parquet. A draw
applies, in order:

1. the window: only the ring's decisions (older ones have been overwritten);
2. staleness: with ``max_staleness > 0``, decisions played by a policy more than ``max_staleness``
   versions before ``current_version`` are skipped (still in the ring; they just don't count);
3. priorities: with ``prioritized``, draws are in proportion to each decision's priority
   (initially ``|value_target - root_value| + priority_eps``: decisions whose search value was far
   from the result teach most; the learner overwrites them after each step with its own value
   error, through ``update_priorities``); otherwise uniform. Draws are with replacement, as in
   AlphaZero.

Prioritised draws are biased towards the decisions with large errors; each Batch carries the
importance-sampling weights that undo it (Schaul et al. 2016, "Prioritized Experience Replay"):
``w_i = (N * P(i)) ** -priority_beta / max_j w_j`` over the N decisions a draw could return, so
the rarest-drawn decision weighs 1, ``priority_beta = 1`` removes the bias entirely, and uniform
draws weigh 1 each. The losses average over a batch with these weights.

Which decisions enter the ring is ``keep``: "searched" (the default; the AlphaZero loss needs visit
targets), "sampled" (every decision, for the policy-gradient losses such as GRPO), or
"best_of_group" (only the decisions of each group's best episodes, for expert iteration; see
groups.py). Every decision carries the tokens its action was sampled as and its group's outcomes,
computed per ``add`` call (or per shard on resume): a group arrives whole in one add.
Nothing here imports torch: a Batch is lists and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from selfplay.replay.groups import GroupOutcome, best_of_group, group_outcomes
from selfplay.replay.schema import table_to_episodes
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode

DecisionKey = tuple[str, int]  # (episode_id, step_index)
KEEP_MODES = ("searched", "sampled", "best_of_group")
# Added to every priority, so a decision whose error reaches 0 can still be drawn.
PRIORITY_EPS = 1e-2
_EMPTY_I32 = np.zeros(0, dtype=np.int32)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)
for _empty in (_EMPTY_I32, _EMPTY_F32):
    _empty.setflags(write=False)  # shared by every decision without tokens: nobody writes into it


def value_target(outcome: float, player: int) -> float:
    """The episode's result from the view of ``player``.

    Games store ``outcome`` for player 0 and are two-player zero-sum, so player 1 sees its
    negation. Single-agent tasks have player 0 only, and their outcome is the final reward.
    """
    return outcome if player % 2 == 0 else -outcome


@dataclass(frozen=True)
class DecisionView:
    """A decision seen through a symmetry of its game (selfplay/replay/augment.py)."""

    observation: str
    actions: list[str]  # the search candidates' images, ascending by index as a search lists them
    target: np.ndarray  # [len(actions)] the visit distribution, reordered with them
    action: str  # the image of the move played
    q_values: np.ndarray = field(default_factory=lambda: _EMPTY_F32)  # [len(actions)] the candidates' Q, reordered with them


@dataclass(frozen=True)
class Decision:
    """One sampleable decision, in the form the learner needs (built once, when added)."""

    key: DecisionKey
    observation: str
    actions: list[str]  # search candidates; without search: the legal actions, or []
    target: np.ndarray  # [len(actions)] float32 visit distribution; [] without search
    value_target: float
    policy_version: int
    action: str  # the action actually played
    player: int
    root_value: float  # nan without search
    token_ids: np.ndarray  # [T] int32 the tokens sampled for ``action``; empty for games
    sample_logprobs: np.ndarray  # [T] float32 their log-probabilities under the sampling policy
    sample_version: int  # the version that sampled the tokens (the episode's without tokens)
    group_rewards: np.ndarray  # [K] float32 outcomes of the episodes of its group
    group_index: int  # its episode's position in ``group_rewards``
    views: tuple[DecisionView, ...] = ()  # its images under the game's other symmetries (augmentation)
    q_values: np.ndarray = field(default_factory=lambda: _EMPTY_F32)  # [len(actions)] float32 each candidate's Q from the mover's view; [] without search


@dataclass
class Batch:
    """``batch_size`` decisions for one learner step. Lists are per decision; arrays are [B]."""

    observations: list[str]
    actions: list[list[str]]  # candidate action texts per decision (games: the search actions)
    target_visits: list[np.ndarray]  # [A_i] float32 each, sums to 1 (empty without search)
    value_targets: np.ndarray  # [B] float32, outcome from the view of the player to move
    policy_versions: np.ndarray  # [B] int64, version that played each decision
    chosen: list[str]  # the action played at each decision
    players: np.ndarray  # [B] int32
    root_values: np.ndarray  # [B] float32 search value (nan without search)
    keys: list[DecisionKey]  # (episode_id, step_index), for update_priorities
    probs: np.ndarray  # [B] float64 probability each decision had of being drawn (for IS weights)
    # What the text losses need (the sampler always fills them). A Batch built by hand without
    # them (a game loss's test) gets: no tokens, sampled by the version that played, and no
    # group information (empty group_rewards, group_index -1).
    token_ids: list[np.ndarray] = None  # type: ignore[assignment]  # [T_i] int32 each
    sample_logprobs: list[np.ndarray] = None  # type: ignore[assignment]  # [T_i] float32 each
    sample_versions: np.ndarray = None  # type: ignore[assignment]  # [B] int64
    group_rewards: list[np.ndarray] = None  # type: ignore[assignment]  # [K_i] float32 each
    group_index: np.ndarray = None  # type: ignore[assignment]  # [B] int64
    # Importance-sampling weights of prioritised draws (module docstring); 1 when uniform.
    weights: np.ndarray = None  # type: ignore[assignment]  # [B] float32
    # Each candidate's Q from the mover's view, aligned with ``actions`` (empty without search).
    q_values: list[np.ndarray] = None  # type: ignore[assignment]  # [A_i] float32 each

    def __post_init__(self) -> None:
        b = len(self.observations)
        if self.weights is None:
            self.weights = np.ones(b, dtype=np.float32)
        if self.token_ids is None:
            self.token_ids = [_EMPTY_I32] * b
        if self.sample_logprobs is None:
            self.sample_logprobs = [_EMPTY_F32] * b
        if self.sample_versions is None:
            self.sample_versions = np.asarray(self.policy_versions, dtype=np.int64).copy()
        if self.group_rewards is None:
            self.group_rewards = [_EMPTY_F32] * b
        if self.group_index is None:
            self.group_index = np.full(b, -1, dtype=np.int64)
        if self.q_values is None:
            self.q_values = [_EMPTY_F32] * b

    def __len__(self) -> int:
        return len(self.observations)


def importance_weights(probs: np.ndarray, beta: float) -> np.ndarray:
    """[N] float64 ``(N * P(i)) ** -beta / max_j (N * P(j)) ** -beta`` for draw probabilities
    ``probs`` [N] (summing to 1). A decision that cannot be drawn (P = 0) gets weight 0, and does
    not set the maximum; uniform ``probs`` give 1 everywhere."""
    probs = np.asarray(probs, dtype=np.float64)
    drawable = probs > 0
    out = np.zeros_like(probs)
    if drawable.any():
        # (N p_i)^-b / (N p_min)^-b == (p_min / p_i)^b: N cancels, and the ratio never overflows.
        out[drawable] = (probs[drawable].min() / probs[drawable]) ** beta
    return out


def check_priority_beta(beta: float) -> float:
    """``beta`` itself when it is in [0, 1]; a ValueError saying what it does otherwise."""
    if not 0 <= beta <= 1:
        raise ValueError(
            f"priority_beta must be in [0, 1] (0: no correction of prioritised draws, "
            f"1: full correction), got {beta}"
        )
    return beta


def check_keep(keep: str) -> str:
    """``keep`` itself when it is one of KEEP_MODES; a ValueError naming them otherwise."""
    if keep not in KEEP_MODES:
        raise ValueError(f"replay keep={keep!r} is not one of {', '.join(KEEP_MODES)}")
    return keep


def decisions_of(
    episode: Episode, keep: str = "searched", group: GroupOutcome | None = None
) -> list[Decision]:
    """The sampleable decisions of one episode, in step order.

    ``group`` is the episode's group (rewards [K], its index), from ``group_outcomes`` over the
    episodes added with it; None makes it a group of one.
    """
    check_keep(keep)
    if group is None:
        group = group_outcomes([episode])[episode.episode_id]
    rewards, index = group
    if keep == "best_of_group" and not best_of_group(rewards)[index]:
        return []
    out = []
    for i, step in enumerate(episode.steps):
        s = step.search
        if s is None and keep == "searched":
            continue
        if s is not None:
            actions = list(s.actions)
            target = np.asarray(s.target_distribution, dtype=np.float32)
            q_values = np.asarray(s.q_values, dtype=np.float32)
            root_value = float(s.root_value)
        else:
            actions = list(step.legal_actions or [])
            target = np.zeros(0, dtype=np.float32)
            q_values = _EMPTY_F32
            root_value = float("nan")
        t = step.tokens
        out.append(
            Decision(
                key=(episode.episode_id, i),
                observation=step.observation,
                actions=actions,
                target=target,
                value_target=value_target(episode.outcome, step.player),
                policy_version=episode.policy_version,
                action=step.action,
                player=step.player,
                root_value=root_value,
                token_ids=_EMPTY_I32 if t is None else np.asarray(t.ids, dtype=np.int32),
                sample_logprobs=(
                    _EMPTY_F32 if t is None else np.asarray(t.logprobs, dtype=np.float32)
                ),
                sample_version=episode.policy_version if t is None else int(t.version),
                group_rewards=rewards,
                group_index=index,
                q_values=q_values,
            )
        )
    return out


def _decisions_of_all(episodes: Iterable[Episode], keep: str, game=None) -> list[Decision]:
    """The decisions of episodes added together (one add call, or one shard): their groups.
    With ``game``, each searched decision also carries its symmetric views (augment.py)."""
    episodes = list(episodes)
    groups = group_outcomes(episodes)
    if game is None:
        return [d for ep in episodes for d in decisions_of(ep, keep, groups[ep.episode_id])]
    from selfplay.replay.augment import with_symmetries

    return [d for ep in episodes
            for d in with_symmetries(game, ep, decisions_of(ep, keep, groups[ep.episode_id]))]


class ReplaySampler:
    """Recency window + staleness filter + optional priorities over the latest decisions."""

    def __init__(
        self,
        window: int = 20000,
        max_staleness: int = 0,
        prioritized: bool = False,
        *,
        priority_eps: float = PRIORITY_EPS,
        priority_beta: float = 1.0,
        keep: str = "searched",
        augment_game=None,
    ):
        if window <= 0:
            raise ValueError(f"replay window must be positive, got {window}")
        if max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0 (0 keeps all), got {max_staleness}")
        if priority_eps < 0:
            raise ValueError(f"priority_eps must be >= 0, got {priority_eps}")
        check_priority_beta(priority_beta)
        self.window = window
        self.max_staleness = max_staleness
        self.prioritized = prioritized
        self.priority_eps = priority_eps
        self.priority_beta = priority_beta
        self.keep = check_keep(keep)
        # A game whose symmetries each draw sees a decision through (None: no augmentation).
        self.augment_game = augment_game
        # The ring: slot arrays of fixed size; _head is the next slot to (over)write.
        self._items: list[Decision | None] = [None] * window
        self._versions = np.zeros(window, dtype=np.int64)
        self._priorities = np.zeros(window, dtype=np.float64)
        self._slot_of: dict[DecisionKey, int] = {}
        self._head = 0
        self._size = 0
        self.total_added = 0  # decisions ever added (the ring keeps the last ``window``)

    # ---- feeding

    def add(self, episodes: Iterable[Episode]) -> int:
        """Add the decisions of finished episodes; returns how many entered the ring.

        The episodes of a group must come in the same call (groups are formed per call).
        """
        decisions = _decisions_of_all(episodes, self.keep, self.augment_game)
        for d in decisions:
            self._put(d)
        return len(decisions)

    def _put(self, d: Decision) -> None:
        slot = self._head
        old = self._items[slot]
        if old is not None and self._slot_of.get(old.key) == slot:
            del self._slot_of[old.key]
        self._items[slot] = d
        self._versions[slot] = d.policy_version
        self._priorities[slot] = self._initial_priority(d)
        self._slot_of[d.key] = slot
        self._head = (slot + 1) % self.window
        self._size = min(self._size + 1, self.window)
        self.total_added += 1

    def _initial_priority(self, d: Decision) -> float:
        err = abs(d.value_target - d.root_value)
        return (0.0 if np.isnan(err) else err) + self.priority_eps

    def load_from_store(self, store: EpisodeStore) -> int:
        """Refill the ring from the newest appends of ``store`` (on resume); returns decisions added.

        Reads appends newest first until the window is full (the rest of the store is never
        read), then adds them oldest first so the ring's order matches the order the decisions
        were played in. One append is one ``add`` (ReplayActor), so its groups are rebuilt as they
        were formed then, merged shard or not.
        """
        chunks: list[list[Decision]] = []
        count = 0
        for _, table in store.iter_appends(newest_first=True):
            ds = _decisions_of_all(table_to_episodes(table), self.keep, self.augment_game)
            chunks.append(ds)
            count += len(ds)
            if count >= self.window:
                break
        flat = [d for chunk in reversed(chunks) for d in chunk][-self.window :]
        for d in flat:
            self._put(d)
        return len(flat)

    # ---- drawing

    def __len__(self) -> int:
        return self._size

    def _eligible(self, current_version: int | None) -> np.ndarray:
        slots = np.arange(self._size)  # the ring's filled slots (any order: draws are random)
        if self.max_staleness > 0 and current_version is not None:
            oldest = current_version - self.max_staleness
            slots = slots[self._versions[: self._size] >= oldest]
        return slots

    def num_eligible(self, current_version: int | None = None) -> int:
        """Decisions a draw at ``current_version`` could return."""
        return int(self._eligible(current_version).size)

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator | int | None = None,
        current_version: int | None = None,
    ) -> Batch:
        """Draw ``batch_size`` decisions (with replacement) for a learner at ``current_version``."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rng = np.random.default_rng(rng)
        slots = self._eligible(current_version)
        if slots.size == 0:
            raise ValueError(
                f"no decisions to sample: {self._size} in the replay window, none within "
                f"max_staleness={self.max_staleness} of policy version {current_version}"
                if self._size
                else "no decisions to sample: the replay window is empty"
            )
        probs = np.full(slots.size, 1.0 / slots.size)
        weights = np.ones(slots.size)
        if self.prioritized:
            p = self._priorities[slots]
            total = p.sum()
            if total > 0:  # all-zero priorities fall back to uniform rather than fail
                probs = p / total
                weights = importance_weights(probs, self.priority_beta)
        picks = rng.choice(slots.size, size=batch_size, replace=True, p=probs)
        items = [self._items[s] for s in slots[picks]]
        if self.augment_game is not None:
            from selfplay.replay.augment import draw_view

            items = [draw_view(d, rng) for d in items]
        return Batch(
            observations=[d.observation for d in items],
            actions=[d.actions for d in items],
            target_visits=[d.target for d in items],
            value_targets=np.array([d.value_target for d in items], dtype=np.float32),
            policy_versions=np.array([d.policy_version for d in items], dtype=np.int64),
            chosen=[d.action for d in items],
            players=np.array([d.player for d in items], dtype=np.int32),
            root_values=np.array([d.root_value for d in items], dtype=np.float32),
            keys=[d.key for d in items],
            probs=probs[picks],
            weights=weights[picks].astype(np.float32),
            token_ids=[d.token_ids for d in items],
            sample_logprobs=[d.sample_logprobs for d in items],
            sample_versions=np.array([d.sample_version for d in items], dtype=np.int64),
            group_rewards=[d.group_rewards for d in items],
            group_index=np.array([d.group_index for d in items], dtype=np.int64),
            q_values=[d.q_values for d in items],
        )

    def priorities_of(self, keys: Iterable[DecisionKey]) -> np.ndarray:
        """[n] float64 the current priority of each decision (nan for one no longer in the ring)."""
        slots = [self._slot_of.get(tuple(k)) for k in keys]
        return np.array([np.nan if s is None else self._priorities[s] for s in slots])

    def update_priorities(self, keys: Iterable[DecisionKey], priorities: Iterable[float]) -> int:
        """Set the priorities of decisions still in the ring; returns how many were found.

        Priorities live in memory only (they are the learner's running state, not data), and are
        recomputed from the search values after a resume.
        """
        found = 0
        for key, p in zip(keys, priorities, strict=True):
            if p < 0 or not np.isfinite(p):
                raise ValueError(f"priority of decision {key} must be finite and >= 0, got {p}")
            slot = self._slot_of.get(tuple(key))
            if slot is not None:
                self._priorities[slot] = p
                found += 1
        return found
