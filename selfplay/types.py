"""The data that flows through the loop: Step, Episode, SearchStats.

These are what actors produce, the replay store persists (one Parquet row per step), the learner
consumes and ``selfplay replay`` shows. They serve games and reasoning steps alike: an action is a
string, the search statistics are over the candidate actions of that decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SearchStats:
    """What the search saw at one decision: per candidate action, its visits, prior and value."""

    actions: list[str]  # candidate actions at the root (legal moves, or sampled reasoning steps)
    visits: list[float]  # root visit counts, aligned with ``actions``
    priors: list[float]  # engine priors, aligned with ``actions``
    q_values: list[float]  # mean value of each child from the root player's view (0 if unvisited)
    root_value: float  # search value estimate of the root, from the player to move
    simulations: int

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
