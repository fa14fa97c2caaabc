"""A Gumbel root with sequential halving (Danihelka et al., 2022, "Policy improvement by planning
with Gumbel"), as pure functions over numpy arrays [B, A] — the shape of mctx's
``gumbel_muzero_policy``, for small budgets where PUCT with root noise is a weak improvement
operator.

    out = gumbel_search(logits, legal, simulate, num_simulations=16, max_num_considered=4, rng=rng)
    out.action   # [B] the action to play: the best of the survivors of sequential halving
    out.policy   # [B, A] the policy target: softmax(logits + sigma(completed Q))

At the root, ``max_num_considered`` actions are sampled without replacement by Gumbel-top-k
(``g + logits``); the budget is spread over them in rounds, and after each round the worse half
(by ``g + logits + sigma(Q)``) is dropped. ``simulate(root_index [L], action [L]) -> values [L]``
is how the search reaches a game and a model: one simulation of ``action`` at root
``root_index``, returning a value estimate from the root mover's view (a child evaluation, a
rollout, a subtree search); repeated simulations of one action are averaged into its Q.

``improved_policy`` alone turns any root's per-child Q estimates and visits (e.g. a PUCT search's
``SearchOutput.q_values`` and ``visit_counts``) into the same policy target. Nothing here imports a
model or an environment.

Terms (the paper's, as mctx names them):
- completed Q: the child's mean value where visited, the root's mixed value elsewhere;
- sigma(q) = (c_visit + max_b N(b)) * c_scale * q, over Q min-max rescaled to [0, 1];
- mixed value: (v_root + N * sum_visited p(a) q(a) / sum_visited p(a)) / (N + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# simulate(root_index [L], action [L]) -> values [L] from the root mover's view
SimulateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GumbelOutput:
    """The result of a Gumbel root search over B roots."""

    action: np.ndarray  # [B] int64, the chosen action of each root
    policy: np.ndarray  # [B, A] float64, the improved policy target (0 on illegal actions)
    visit_counts: np.ndarray  # [B, A] int64, simulations per root action; rows sum to n
    q_values: np.ndarray  # [B, A] float64, mean simulated value (root mover's view), 0 unvisited
    completed_q: np.ndarray  # [B, A] float64, Q where visited, the mixed value elsewhere
    gumbel: np.ndarray  # [B, A] float64, the Gumbel noise drawn (times gumbel_scale)


# ------------------------------------------------------------------------------------------------
# Sequential halving: which visit count the next simulation of a root goes to


def considered_visit_sequence(max_num_considered: int, num_simulations: int) -> np.ndarray:
    """int64 [num_simulations]: for each simulation, the visit count an action must have to be
    simulated next. With m considered actions there are ceil(log2 m) rounds; round r gives each
    of the m / 2^r surviving actions max(1, n / (ceil(log2 m) * survivors)) more visits. E.g.
    m=4, n=16: [0,0,0,0, 1,1,1,1, 2,2,3,3, 4,4,5,5] (4 actions twice, then 2 actions 4 times)."""
    if max_num_considered <= 1:
        return np.arange(num_simulations, dtype=np.int64)
    log2max = math.ceil(math.log2(max_num_considered))
    sequence: list[int] = []
    visits = [0] * max_num_considered
    num_considered = max_num_considered
    while len(sequence) < num_simulations:
        extra = max(1, int(num_simulations / (log2max * num_considered)))
        for _ in range(extra):
            sequence.extend(visits[:num_considered])
            for i in range(num_considered):
                visits[i] += 1
        num_considered = max(2, num_considered // 2)
    return np.asarray(sequence[:num_simulations], dtype=np.int64)


def considered_visit_table(max_num_considered: int, num_simulations: int) -> np.ndarray:
    """int64 [max_num_considered + 1, num_simulations]: row m is the sequence for m considered
    actions (a root with fewer legal actions than ``max_num_considered`` uses its own row)."""
    return np.stack([considered_visit_sequence(m, num_simulations)
                     for m in range(max_num_considered + 1)])


# ------------------------------------------------------------------------------------------------
# Completed Q and the policy target


def _log_softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Log-softmax over each row's legal actions; -inf on illegal ones."""
    x = np.where(legal, np.asarray(logits, dtype=np.float64), -np.inf)
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    z = np.exp(x - top)
    return x - top - np.log(np.sum(z, axis=-1, keepdims=True))


def mixed_value(raw_value: np.ndarray, q: np.ndarray, visits: np.ndarray,
                prior: np.ndarray) -> np.ndarray:
    """[B]: the root's value estimate mixing its own evaluation ``raw_value`` [B] with the
    prior-weighted mean Q of its visited children (q, visits, prior: [B, A])."""
    visits = np.asarray(visits, dtype=np.float64)
    visited = visits > 0
    p = np.maximum(np.asarray(prior, dtype=np.float64), np.finfo(np.float64).tiny)
    p_visited = np.sum(np.where(visited, p, 0.0), axis=-1, keepdims=True)
    weighted_q = np.sum(np.where(visited, p * q / np.where(p_visited > 0, p_visited, 1.0), 0.0),
                        axis=-1)
    total = visits.sum(axis=-1)
    return (np.asarray(raw_value, dtype=np.float64) + total * weighted_q) / (total + 1.0)


def completed_q(q: np.ndarray, visits: np.ndarray, value: np.ndarray) -> np.ndarray:
    """[B, A]: ``q`` where an action was visited, the root's ``value`` [B] where not."""
    return np.where(np.asarray(visits) > 0, q, np.asarray(value, dtype=np.float64)[:, None])


def sigma(completed: np.ndarray, visits: np.ndarray, legal: np.ndarray, *, c_visit: float = 50.0,
          c_scale: float = 1.0, rescale_values: bool = True) -> np.ndarray:
    """[B, A]: the monotone transform of completed Q added to the logits,
    ``(c_visit + max_b N(b)) * c_scale * q``, with q min-max rescaled to [0, 1] over each row's
    legal actions when ``rescale_values`` (all-equal Q then adds nothing)."""
    q = np.asarray(completed, dtype=np.float64)
    if rescale_values:
        lo = np.min(np.where(legal, q, np.inf), axis=-1, keepdims=True)
        hi = np.max(np.where(legal, q, -np.inf), axis=-1, keepdims=True)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        span = np.where(np.isfinite(hi), hi - lo, 0.0)
        q = (q - lo) / np.maximum(span, 1e-8)
    max_visit = np.max(np.asarray(visits), axis=-1, keepdims=True)
    return np.where(legal, (c_visit + max_visit) * c_scale * q, 0.0)


def improved_policy(
    logits: np.ndarray,
    q: np.ndarray,
    visits: np.ndarray,
    legal: np.ndarray,
    *,
    root_value: np.ndarray | float = 0.0,
    c_visit: float = 50.0,
    c_scale: float = 1.0,
    rescale_values: bool = True,
) -> np.ndarray:
    """[B, A] (or [A] for 1-D inputs): softmax(logits + sigma(completed Q)) over legal actions.

    ``q`` and ``visits`` are the root's per-child estimates (from any search: this function or
    PUCT), ``root_value`` the root's own evaluation, used for the mixed value that completes the
    Q of unvisited actions."""
    one_root = np.ndim(logits) == 1
    logits, q, visits, legal = (np.atleast_2d(np.asarray(x)) for x in (logits, q, visits, legal))
    legal = legal.astype(np.bool_)
    value = np.broadcast_to(np.asarray(root_value, dtype=np.float64), logits.shape[:1])
    policy, _ = _policy_and_completed(logits, q, visits, legal, value, c_visit, c_scale,
                                      rescale_values)
    return policy[0] if one_root else policy


def _policy_and_completed(logits, q, visits, legal, root_value, c_visit, c_scale, rescale):
    log_prior = _log_softmax(logits, legal)
    prior = np.exp(log_prior)
    value = mixed_value(root_value, q, visits, prior)
    done = completed_q(q, visits, value)
    x = np.where(legal, log_prior + sigma(done, visits, legal, c_visit=c_visit, c_scale=c_scale,
                                          rescale_values=rescale), -np.inf)
    return np.exp(_log_softmax(x, legal)), done


# ------------------------------------------------------------------------------------------------
# The search


def gumbel_search(
    logits: np.ndarray,
    legal: np.ndarray,
    simulate: SimulateFn,
    *,
    num_simulations: int,
    max_num_considered: int = 16,
    root_value: np.ndarray | float = 0.0,
    rng: np.random.Generator | None = None,
    gumbel_scale: float = 1.0,
    c_visit: float = 50.0,
    c_scale: float = 1.0,
    rescale_values: bool = True,
) -> GumbelOutput:
    """Sequential halving with Gumbel over B roots: ``num_simulations`` calls of ``simulate``,
    each with one action per root (a batch of B).

    logits [B, A] (or [A]; log-priors work, illegal entries are ignored), legal [B, A] bool (at
    least one legal action per root), root_value [B] or a scalar: the roots' own evaluations.
    gumbel_scale=0 gives a deterministic search (then ``rng`` may be None): the considered
    actions are the top ``max_num_considered`` by prior. With 1-D inputs every output array
    loses its batch axis (``action`` is then a numpy integer).
    """
    one_root = np.ndim(logits) == 1
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    legal = np.atleast_2d(np.asarray(legal, dtype=np.bool_))
    if logits.shape != legal.shape or logits.ndim != 2:
        raise ValueError(f"logits {logits.shape} and legal {legal.shape} must both be [B, A]")
    if not legal.any(axis=1).all():
        bad = np.flatnonzero(~legal.any(axis=1)).tolist()
        raise ValueError(f"roots {bad} have no legal action (a terminal position has no search)")
    if num_simulations < 1 or max_num_considered < 1:
        raise ValueError(f"num_simulations ({num_simulations}) and max_num_considered "
                         f"({max_num_considered}) must be >= 1")
    if gumbel_scale > 0 and rng is None:
        raise ValueError("gumbel_scale > 0 needs an rng (np.random.Generator)")

    batch, num_actions = logits.shape
    rows = np.arange(batch)
    value = np.broadcast_to(np.asarray(root_value, dtype=np.float64), (batch,)).copy()
    log_prior = _log_softmax(logits, legal)
    prior = np.exp(log_prior)
    gumbel = (gumbel_scale * rng.gumbel(size=logits.shape) if gumbel_scale > 0
              else np.zeros(logits.shape))
    gumbel = np.where(legal, gumbel, 0.0)
    table = considered_visit_table(max_num_considered, num_simulations)
    num_considered = np.minimum(legal.sum(axis=1), max_num_considered)  # [B]
    visits = np.zeros((batch, num_actions), np.int64)
    value_sum = np.zeros((batch, num_actions))

    def scores() -> np.ndarray:  # g + logits + sigma(completed Q), -inf on illegal actions
        q = value_sum / np.maximum(visits, 1)
        done = completed_q(q, visits, mixed_value(value, q, visits, prior))
        s = gumbel + log_prior + sigma(done, visits, legal, c_visit=c_visit, c_scale=c_scale,
                                       rescale_values=rescale_values)
        return np.where(legal, s, -np.inf)

    for i in range(num_simulations):
        target = table[num_considered, i]  # [B] the visit count to be simulated next
        s = np.where(visits == target[:, None], scores(), -np.inf)
        action = np.argmax(s, axis=1)  # ties: the lowest index
        result = np.asarray(simulate(rows.copy(), action.astype(np.int64)), dtype=np.float64)
        if result.shape != (batch,) or not np.isfinite(result).all():
            raise ValueError(f"simulate returned {result.shape} values (finite expected) for "
                             f"{batch} roots")
        visits[rows, action] += 1
        value_sum[rows, action] += result

    # Play the best of the most-visited actions (the survivors of the last round).
    final = np.where(visits == visits.max(axis=1, keepdims=True), scores(), -np.inf)
    action = np.argmax(final, axis=1).astype(np.int64)
    q = value_sum / np.maximum(visits, 1)
    policy, done = _policy_and_completed(logits, q, visits, legal, value, c_visit, c_scale,
                                         rescale_values)
    out = GumbelOutput(action=action, policy=policy, visit_counts=visits,
                       q_values=np.where(visits > 0, q, 0.0), completed_q=done, gumbel=gumbel)
    if one_root:
        out = GumbelOutput(**{k: getattr(out, k)[0] for k in out.__dataclass_fields__})
    return out


__all__ = ["GumbelOutput", "SimulateFn", "completed_q", "considered_visit_sequence",
           "considered_visit_table", "gumbel_search", "improved_policy", "mixed_value", "sigma"]
