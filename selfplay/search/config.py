"""Config of the search that picks each action (Hydra group search/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchConfig:
    kind: str = "mcts"  # "mcts" (PUCT) or "none" (sample from the prior)
    num_simulations: int = 64  # simulations per decision
    c_puct: float = 1.5  # exploration constant in PUCT
    root: str = "puct"  # games: puct (Dirichlet noise at the root, visits as the target) | gumbel (Gumbel-top-k + sequential halving at the root, PUCT below; the improved policy is the target and its chosen action is played; for small budgets)
    max_considered: int = 16  # gumbel: root actions drawn by Gumbel-top-k (all legal ones when fewer)
    gumbel_scale: float = 1.0  # gumbel: scale of the Gumbel noise in self-play (0: deterministic; evaluation never draws it)
    dirichlet_alpha: float = 0.5  # root noise concentration (about 10 / number of legal actions)
    dirichlet_fraction: float = 0.25  # weight of the noise at the root (0 turns it off)
    temperature: float = 1.0  # move-choice temperature over root visits, early in a game
    temperature_moves: int = 4  # after this many moves the choice is greedy (temperature 0)
    num_candidates: int = 4  # rollout.mode=step_search: candidate next steps sampled per node (K; identical ones merge)
    leaf_value: str = "value_head"  # rollout.mode=step_search: how a leaf is valued: value_head (the policy's) | rollouts (search.leaf_rollouts continuations to the end, judged by the env; their mean reward)
    leaf_rollouts: int = 2  # leaf_value=rollouts: continuations per leaf
    leaves_per_tree: int = 1  # leaves taken per tree per batch (virtual loss when > 1)
    virtual_loss: float = 1.0  # value penalty on a path in flight, when leaves_per_tree > 1
    full_search_prob: float = 1.0  # playout-cap randomisation (KataGo): the chance that a self-play move gets the full search (num_simulations, root noise) whose statistics are training targets; the other moves get a fast search of fast_simulations without noise and are played, not trained on (1: every move full). One draw per move of the actor's batch of games
    fast_simulations: int = 0  # simulations of a fast search (full_search_prob < 1 needs 0 < fast_simulations < num_simulations)
    record_nodes: int = 64  # most-visited tree nodes below the root stored per decision, for `selfplay view` (0: the root's children only)


def check_search_root(cfg: SearchConfig) -> None:
    """A ``UserError`` naming the key when the Gumbel root is set up so it cannot run."""
    from selfplay.errors import UserError

    if cfg.root not in ("puct", "gumbel"):
        raise UserError(f"search.root={cfg.root!r}: must be puct or gumbel")
    if cfg.root == "gumbel" and cfg.leaves_per_tree != 1:
        raise UserError(f"search.root=gumbel halves its root's candidates one simulation at a "
                        f"time: set search.leaves_per_tree=1 (not {cfg.leaves_per_tree})")
    if cfg.root == "gumbel" and cfg.max_considered < 1:
        raise UserError(f"search.max_considered={cfg.max_considered}: must be >= 1")


LEAF_VALUES = ("value_head", "rollouts")


def check_leaf_value(cfg: SearchConfig) -> None:
    """A ``UserError`` naming the key for a step-search leaf value that cannot run."""
    from selfplay.errors import UserError

    if cfg.leaf_value not in LEAF_VALUES:
        raise UserError(f"search.leaf_value={cfg.leaf_value!r}: one of {', '.join(LEAF_VALUES)}")
    if cfg.leaf_value == "rollouts" and cfg.leaf_rollouts < 1:
        raise UserError(f"search.leaf_rollouts={cfg.leaf_rollouts}: must be >= 1")


def check_playout_cap(cfg: SearchConfig) -> None:
    """A ``UserError`` naming the key when playout-cap randomisation is set up so it cannot run."""
    from selfplay.errors import UserError

    if not 0.0 < cfg.full_search_prob <= 1.0:
        raise UserError(f"search.full_search_prob={cfg.full_search_prob}: must be in (0, 1] "
                        "(1: every move a full search)")
    if cfg.full_search_prob < 1.0 and not 0 < cfg.fast_simulations < cfg.num_simulations:
        raise UserError(f"search.full_search_prob={cfg.full_search_prob} needs "
                        f"0 < search.fast_simulations < search.num_simulations "
                        f"({cfg.num_simulations}), not {cfg.fast_simulations}")
