"""The data that flows through the loop: Step, Episode, SearchStats (and its SearchNodes).

These are what actors produce, the replay store persists (one Parquet row per step), the learner
consumes and ``selfplay replay`` shows. They serve games and reasoning steps alike: an action is a
string, the search statistics are over the candidate actions of that decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SearchNodes:
    """The most-visited nodes of the search tree behind one decision, beyond the root's children
    (``search.record_nodes`` of them at most), as aligned lists: node 0 is the root, and a node's
    parent comes before it (breadth first, the most visited children first).

    ``q`` and ``value`` are from the view of the player who chose the node's action (the mover at
    its parent; at the root, the root's mover), so a child's Q reads like ``SearchStats.q_values``
    at every depth."""

    parent: list[int]  # position in these lists of each node's parent; -1 at the root
    action: list[str]  # the move (or candidate step) from the parent; "" at the root
    visits: list[float]  # completed visits of the node
    prior: list[float]  # the action's prior at the parent (root: 1.0; its children: no noise)
    q: list[float]  # mean backed-up value of the node (chooser's view)
    value: list[float]  # the evaluator's value at the node, exact where terminal (chooser's view)
    terminal: list[bool]  # the game or task ended at the node

    def __len__(self) -> int:
        return len(self.parent)


@dataclass
class SearchStats:
    """What the search saw at one decision: per candidate action, its visits, prior and value."""

    actions: list[str]  # candidate actions at the root (legal moves, or sampled reasoning steps)
    visits: list[float]  # root visit counts, aligned with ``actions``
    priors: list[float]  # engine priors, aligned with ``actions``
    q_values: list[float]  # mean value of each child from the root player's view (0 if unvisited)
    root_value: float  # search value estimate of the root, from the player to move
    simulations: int
    nodes: SearchNodes | None = None  # the tree beyond the root's children; None: not recorded
    policy_target: list[float] | None = None  # the search's own training target over ``actions`` (a Gumbel root's improved policy); None: the visit distribution

    @property
    def target_distribution(self) -> list[float]:
        """What the policy is trained towards: the search's own target, else the visits."""
        return self.policy_target if self.policy_target is not None else self.visit_distribution

    @property
    def visit_distribution(self) -> list[float]:
        total = float(sum(self.visits))
        if total <= 0:
            return [1.0 / len(self.visits)] * len(self.visits) if self.visits else []
        return [v / total for v in self.visits]


@dataclass
class SampledTokens:
    """The tokens a policy sampled for one action, as the engine returned them: what a
    policy-gradient loss needs to recompute the ratio against the sampling policy."""

    ids: list[int]  # completion token ids (a stop string's tokens or EOS included when sampled)
    logprobs: list[float]  # log-probability of each token under the sampling policy
    version: int  # the policy version that sampled every one of these tokens (one generate call)


@dataclass
class Step:
    """One decision in an episode."""

    observation: str  # the text the policy read
    action: str  # the text it wrote (a move, a reasoning step, a program)
    player: int  # player to move (0 for single-agent tasks)
    reward: float  # reward received after this action, for ``player``
    search: SearchStats | None = None  # None when the action was sampled without search
    legal_actions: list[str] | None = None  # for games: every legal action at this decision
    tokens: SampledTokens | None = None  # text tasks: the sampled tokens behind ``action``


@dataclass
class Episode:
    """A finished game or task attempt."""

    episode_id: str
    env_id: str
    seed: int
    policy_version: int
    steps: list[Step]
    outcome: float  # games: +1/0/-1 for player 0; tasks: the final reward
    started_at: float  # unix seconds
    finished_at: float
    actor: str = ""
    info: dict[str, str] = field(default_factory=dict)  # free-form (e.g. opponent, termination)
    group_id: str = ""  # text tasks: the k samples of one problem share it (a GRPO group); "" for games

    @property
    def length(self) -> int:
        return len(self.steps)

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at
