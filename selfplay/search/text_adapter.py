"""Batched MCTS over reasoning steps: the text twin of ``game_adapter.GameSearch``.

    search = StepSearch(engine, math_reward_fn(problems), num_candidates=4, num_simulations=32)
    result = search.run([question_1, question_2, ...], rng=rng)
    result.stats[b]          # SearchStats of problem b over its distinct candidate next steps
    result.chosen[b]         # the most visited step
    solved = solve_with_search(search, [question_1, ...], rng=rng)   # search, step, repeat

A node is a text state laid out as ``MathEnv`` (multi_step) lays out its observation: the problem,
then one reasoning step per line. Expanding a node asks the engine for ``num_candidates`` (K)
sampled continuations of ``prompt_of(state)`` up to a newline, the same prompt ``rollout_text_env``
samples from, so a searched step and a sampled step are continuations of one text. Every new leaf
of a wave goes into ONE ``engine.generate`` call (many prompts) and ONE ``value_fn`` call.

The action space is K slots. A node's distinct candidate steps fill its first slots (first-seen
order); identical steps are one action; the remaining slots are illegal. The prior over the
distinct steps is a softmax over their sequence log-probabilities under the policy.

A node is terminal when the step that made it states a final answer (``is_final_step``; its value
is the exact reward ``reward_fn(problem, state)``, e.g. the verifier), or when it reaches
``max_steps`` steps or the engine's context without one (``truncated_value``, 0 as ``MathEnv``
scores a truncated episode). Other nodes are valued by ``value_fn`` (by default the engine's value
head). One agent acts, so values are not flipped between plies (``run_mcts(two_player=False)``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from selfplay.policy.engine import Completion, SamplingParams
from selfplay.search.mcts import (
    ExpansionResult,
    RootInput,
    SearchOutput,
    search_with,
)
from selfplay.search.policies import select_action
from selfplay.search.tree_record import check_record_nodes, record_tree, search_nodes
from selfplay.textgen.rollout import STEP_STOP, prompt_of
from selfplay.types import SearchNodes, SearchStats, Step

if TYPE_CHECKING:  # only for annotations: the search never imports a model
    from envs.math.tasks import MathProblem
    from selfplay.policy.engine import Engine

# value_fn(states [L]) -> values [L] float, for non-terminal states
ValueFn = Callable[[list[str]], np.ndarray]
# reward_fn(problem index, terminal state) -> reward (the problem index is the caller's: run()'s
# problem_ids, solve_with_search's position in its list)
RewardFn = Callable[[int, str], float]
# is_final_step(step) -> whether the step states a final answer (the episode ends there)
FinalStepFn = Callable[[str], bool]


# ------------------------------------------------------------------------------------------------
# Text states


def append_step(state: str, step: str) -> str:
    """The state after ``step``: a new line, as ``MathEnv`` appends a step to its observation."""
    return state + "\n" + step


def last_step(state: str) -> str:
    """The last line of a state: the step that made it (the question's last line at a root)."""
    return state.rsplit("\n", 1)[-1]


def step_text(completion_text: str, stop: str = STEP_STOP) -> str:
    """A sampled continuation as a step: without its stop string and trailing whitespace, so
    "a\\n" and "a \\n" are the same step. Leading whitespace stays: a line of Python is its
    indentation (``MathEnv`` strips the steps it keeps either way)."""
    return completion_text.removesuffix(stop).rstrip()


def has_final_answer_step(step: str) -> bool:
    """The default ``is_final_step``: the math verifier's rule (``Answer:`` / ``answer is`` /
    ``\\boxed`` / ``####``) when ``envs.math`` is importable, else an ``Answer:`` marker."""
    try:
        from envs.math.env import has_final_answer
    except ImportError:  # the framework without the built-in envs
        return "answer:" in step.lower()
    return has_final_answer(step)


def final_step_rule(env) -> FinalStepFn:
    """The ``is_final_step`` of a multi-step env: its own ``is_final_step`` where it states one
    (``CodeEnv``: a blank line ends the program), else the math rule."""
    own = getattr(getattr(env, "unwrapped", env), "is_final_step", None)
    return own if callable(own) else has_final_answer_step


def continued_state(state: str, text: str, is_final_step: FinalStepFn) -> str:
    """``state`` followed by a multi-line continuation of it, cut after the continuation's first
    final step (where the env ends the episode), that step kept; the whole continuation, trailing
    newlines removed, when no step in it is final."""
    lines = text.split("\n")
    whole = lines if lines[-1] else lines[:-1]  # the text after a closing newline is no line
    for i, line in enumerate(whole):
        if is_final_step(step_text(line)):
            return state + "".join("\n" + step for step in whole[: i + 1])
    rest = text.rstrip("\n")
    return state + "\n" + rest if rest.strip() else state


def math_reward_fn(problems: Sequence[MathProblem], *, timeout_s: float = 2.0) -> RewardFn:
    """``reward_fn`` from the math verifier: 1.0 if the final step's answer matches problem
    ``problems[b]``'s, else 0.0 (``MathEnv`` also checks the final step alone)."""
    from envs.math.env import check

    def reward(b: int, state: str) -> float:
        return check(problems[b], last_step(state), timeout_s)

    return reward


# ------------------------------------------------------------------------------------------------
# Priors and values from an engine


def candidate_priors(
    completions: Sequence[Completion],
    *,
    stop: str = STEP_STOP,
    length_normalise: bool = False,
    count_duplicates: bool = False,
) -> tuple[list[str], np.ndarray]:
    """The distinct steps among ``completions`` (first-seen order) and their prior [D] float64.

    A completion's score is its summed token log-probability (the mean with ``length_normalise``,
    so long steps are not penalised for their length alone). Completions that are the same step
    merge their mass: by default each distinct token sequence counts once (its probability is
    known exactly, so sampling it twice adds nothing; two spellings of one step, e.g. with a
    trailing space, add up); ``count_duplicates=True`` counts every sample (mass grows with how
    often the policy drew the step). The prior is the softmax of the merged scores."""
    if not completions:
        raise ValueError("candidate_priors needs at least one completion")
    steps: list[str] = []
    scores: dict[str, list[float]] = {}
    seen: set[tuple[str, tuple[int, ...]]] = set()
    for c in completions:
        step = step_text(c.text, stop)
        if step not in scores:
            steps.append(step)
            scores[step] = []
        key = (step, tuple(c.token_ids))
        if key in seen and not count_duplicates:
            continue
        seen.add(key)
        lp = [float(x) for x in c.logprobs]
        score = (sum(lp) / len(lp) if lp else 0.0) if length_normalise else sum(lp)
        scores[step].append(score if math.isfinite(score) else -math.inf)
    merged = np.array([_logsumexp(scores[s]) for s in steps], dtype=np.float64)
    if not np.isfinite(merged).any():  # no usable log-probabilities: uniform over the steps
        return steps, np.full(len(steps), 1.0 / len(steps))
    p = np.exp(merged - merged.max())
    return steps, p / p.sum()


def _logsumexp(xs: list[float]) -> float:
    top = max(xs)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(x - top) for x in xs))


def engine_value_fn(engine: Engine, *, prompt_fn: Callable[[str], str] = prompt_of) -> ValueFn:
    """The engine's value head at the end of each state's prompt. ``Engine.evaluate`` wants
    actions to put priors on; the value does not depend on them, so each state gets one dummy
    action (a newline, encodable by every tokenizer)."""

    def value(states: list[str]) -> np.ndarray:
        if not states:
            return np.zeros(0)
        evaluations = engine.evaluate([prompt_fn(s) for s in states], [[STEP_STOP]] * len(states))
        if len(evaluations) != len(states):
            raise ValueError(f"engine.evaluate returned {len(evaluations)} evaluations for "
                             f"{len(states)} states")
        return np.array([ev.value for ev in evaluations], dtype=np.float64)

    return value


def rollout_value_fn(engine: Engine, reward_fn: RewardFn, problems: list[str], *, rollouts: int,
                     max_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     seed: int = 0, prompt_fn: Callable[[str], str] = prompt_of,
                     is_final_step: FinalStepFn = has_final_answer_step) -> ValueFn:
    """Leaf values from ``rollouts`` continuations of the policy to the end, each judged by
    ``reward_fn`` (the env): their mean reward. Unbiased for the policy, noisy, and on the scale
    of the terminal rewards the search backs up; where the value head has not learnt yet, it is
    what tells a promising partial solution from a hopeless one. All states of a wave are
    continued in one ``engine.generate`` call; a continuation that never reaches an answer is
    judged as it stands (an unfinished episode: usually 0)."""
    calls = itertools.count()

    def problem_of(state: str) -> int:
        for b, problem in enumerate(problems):
            if state == problem or state.startswith(problem + "\n"):
                return b
        raise ValueError("a searched state that starts with none of the problems")

    def value(states: list[str]) -> np.ndarray:
        if not states:
            return np.zeros(0)
        params = SamplingParams(n=rollouts, temperature=temperature, top_p=top_p,
                                max_tokens=max_tokens, seed=seed + next(calls))
        results = engine.generate([prompt_fn(s) for s in states], params)
        out = []
        for state, completions in zip(states, results):
            b = problem_of(state)
            judged = [reward_fn(b, continued_state(state, c.text, is_final_step))
                      for c in completions]
            out.append(float(np.mean(judged)) if judged else 0.0)
        return np.asarray(out, dtype=np.float64)

    return value


def _fits(engine: Engine, prompt: str) -> bool:
    """Whether at least one token can still be generated after ``prompt``: known when the engine
    exposes its tokenizer and context (both built-in engines do), else assumed."""
    tokenizer, max_len = getattr(engine, "tokenizer", None), getattr(engine, "max_len", None)
    if tokenizer is None or not isinstance(max_len, int):
        return True
    from selfplay.policy.tokenizer import encode_prompt

    return len(encode_prompt(tokenizer, prompt)) < max_len


# ------------------------------------------------------------------------------------------------
# The search over reasoning steps


@dataclass(frozen=True)
class StepSearchResult:
    stats: list[SearchStats]  # one per root, over its distinct candidate steps (slot order)
    chosen: list[str]  # the most visited step of each root (ties: higher prior, then first); a Gumbel root's own choice
    chosen_index: list[int]  # its index in stats[b].actions (= its action slot)
    output: SearchOutput  # the raw search: visit counts [B, K] over the K slots, the tree


@dataclass
class _Node:
    state: str
    depth: int  # steps after the problem (the root's own depth included)
    steps: list[str] | None = None  # the distinct candidate steps, once expanded


class StepSearch:
    """PUCT search over the next reasoning step of B text problems at once."""

    def __init__(
        self,
        engine: Engine,
        reward_fn: RewardFn,
        *,
        value_fn: ValueFn | None = None,
        is_final_step: FinalStepFn = has_final_answer_step,
        prompt_fn: Callable[[str], str] = prompt_of,
        num_candidates: int = 4,
        max_step_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        length_normalise: bool = False,
        count_duplicates: bool = False,
        max_steps: int = 8,
        truncated_value: float = 0.0,
        num_simulations: int = 32,
        c_puct: float = 1.5,
        dirichlet_alpha: float = 0.5,
        dirichlet_fraction: float = 0.25,
        leaves_per_tree: int = 1,
        virtual_loss: float = 1.0,
        record_nodes: int = 0,
        root: str = "puct",
        max_considered: int = 16,
        gumbel_scale: float = 1.0,
    ):
        """root: "puct" or "gumbel" (as ``GameSearch``: Gumbel-top-``max_considered`` candidate
        steps and sequential halving at the root, PUCT below; the chosen step is the Gumbel
        root's, the improved policy each decision's ``policy_target``).
        num_candidates: K, steps sampled per expansion (the action space is K slots);
        seed: the sampling seed of every generate call, so a state's candidates depend on its
        text alone (a batch equals its searches one by one); but every node then reuses the same
        random draws, so candidates of different states are correlated (one seed per request is
        all ``SamplingParams`` has): for tests and reproducible evaluation. None (the default)
        draws from the engine's RNG.
        max_steps: steps after the problem at which a state without a final answer ends (the
        env's ``max_steps``); truncated_value: the value of such a state.
        record_nodes: the most-visited nodes below the root kept in each ``SearchStats.nodes``,
        each named by its candidate step's text (0: none; tree_record.py)."""
        if num_candidates < 1 or max_steps < 1:
            raise ValueError(f"StepSearch: num_candidates ({num_candidates}) and max_steps "
                             f"({max_steps}) must be >= 1")
        self.engine = engine
        self.reward_fn = reward_fn
        self.value_fn = value_fn if value_fn is not None else engine_value_fn(
            engine, prompt_fn=prompt_fn)
        self.is_final_step = is_final_step
        self.prompt_fn = prompt_fn
        self.num_candidates = num_candidates
        self.sampling = SamplingParams(n=num_candidates, temperature=temperature, top_p=top_p,
                                       max_tokens=max_step_tokens, stop=(STEP_STOP,), seed=seed)
        self.length_normalise = length_normalise
        self.count_duplicates = count_duplicates
        self.max_steps = max_steps
        self.truncated_value = truncated_value
        self.num_simulations = num_simulations
        self.c_puct = c_puct
        self.dirichlet_alpha = dirichlet_alpha
        self.dirichlet_fraction = dirichlet_fraction
        self.leaves_per_tree = leaves_per_tree
        self.virtual_loss = virtual_loss
        self.record_nodes = check_record_nodes(record_nodes)
        if root not in ("puct", "gumbel"):
            raise ValueError(f"StepSearch: root={root!r}; expected puct or gumbel")
        self.root, self.max_considered, self.gumbel_scale = root, max_considered, gumbel_scale

    def can_continue(self, state: str, depth: int) -> bool:
        """Whether a state (``depth`` steps after its problem) still takes a step: under the step
        limit and with room in the engine's context."""
        return depth < self.max_steps and _fits(self.engine, self.prompt_fn(state))

    def _expand(self, nodes: list[_Node]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of ``nodes`` (non-terminal) from ONE generate call and their values from
        ONE value_fn call: priors [L, K], legal [L, K], values [L]; fills ``node.steps``."""
        k = self.num_candidates
        results = self.engine.generate([self.prompt_fn(n.state) for n in nodes], self.sampling)
        if len(results) != len(nodes):
            raise ValueError(f"engine.generate returned {len(results)} results for "
                             f"{len(nodes)} prompts")
        priors = np.zeros((len(nodes), k))
        legal = np.zeros((len(nodes), k), np.bool_)
        for i, (node, comps) in enumerate(zip(nodes, results)):
            if not 1 <= len(comps) <= k:
                raise ValueError(f"engine.generate returned {len(comps)} completions for a "
                                 f"request of n={k}")
            steps, p = candidate_priors(comps, length_normalise=self.length_normalise,
                                        count_duplicates=self.count_duplicates)
            node.steps = steps
            priors[i, : len(steps)] = p
            legal[i, : len(steps)] = True
        values = np.asarray(self.value_fn([n.state for n in nodes]), dtype=np.float64)
        if values.shape != (len(nodes),):
            raise ValueError(f"value_fn returned shape {values.shape} for {len(nodes)} states")
        return priors, legal, values

    def run(
        self,
        states: Sequence[str],
        *,
        problem_ids: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        rng: np.random.Generator | None = None,
        add_noise: bool = True,
    ) -> StepSearchResult:
        """Search the next step of every state in ``states``.

        problem_ids: what ``reward_fn`` gets for each root's terminals (default 0..B-1);
        depths: steps each state already has after its problem (default 0), for ``max_steps``;
        add_noise=False (or dirichlet_fraction 0) gives a deterministic search given the engine.
        """
        b_count = len(states)
        if b_count == 0:
            raise ValueError("StepSearch.run needs at least one state")
        ids = list(range(b_count)) if problem_ids is None else [int(i) for i in problem_ids]
        depth0 = [0] * b_count if depths is None else [int(d) for d in depths]
        if len(ids) != b_count or len(depth0) != b_count:
            raise ValueError(f"StepSearch.run: {b_count} states but {len(ids)} problem_ids and "
                             f"{len(depth0)} depths")
        for b, (s, d) in enumerate(zip(states, depth0)):
            if not self.can_continue(s, d):
                raise ValueError(f"StepSearch.run: state {b} is already over (depth {d} of "
                                 f"max_steps {self.max_steps}, or no room left in the context)")

        roots = [_Node(str(s), d) for s, d in zip(states, depth0)]
        root_priors, root_legal, root_values = self._expand(roots)
        # Nodes per tree by node index; node 0 is the root. Filled as the search allocates them.
        trees: list[dict[int, _Node]] = [{0: r} for r in roots]

        def expand(tree_index, node_index, parent_node, action) -> ExpansionResult:
            n = tree_index.size
            terminal = np.zeros(n, np.bool_)
            terminal_value = np.zeros(n)
            pending: list[int] = []
            for i in range(n):
                tree = trees[tree_index[i]]
                parent = tree[int(parent_node[i])]
                assert parent.steps is not None  # only expanded nodes have children
                step = parent.steps[int(action[i])]
                node = _Node(append_step(parent.state, step), parent.depth + 1)
                tree[int(node_index[i])] = node
                if self.is_final_step(step):
                    terminal[i] = True
                    terminal_value[i] = float(self.reward_fn(ids[tree_index[i]], node.state))
                elif not self.can_continue(node.state, node.depth):
                    terminal[i] = True
                    terminal_value[i] = self.truncated_value
                else:
                    pending.append(i)
            priors = np.zeros((n, self.num_candidates))
            legal = np.zeros((n, self.num_candidates), np.bool_)
            values = np.zeros(n)
            if pending:  # one generate and one value call per wave, non-terminal leaves only
                nodes = [trees[tree_index[i]][int(node_index[i])] for i in pending]
                priors[pending], legal[pending], values[pending] = self._expand(nodes)
            return ExpansionResult(priors=priors, values=values, legal=legal, terminal=terminal,
                                   terminal_value=terminal_value)

        root_input = RootInput(priors=root_priors, values=root_values, legal=root_legal)
        output = search_with(self, root_input, expand, add_noise=add_noise, two_player=False,
                             rng=rng)
        stats, chosen, chosen_index = [], [], []
        for b, root in enumerate(roots):
            assert root.steps is not None
            d = len(root.steps)
            visits = output.visit_counts[b, :d].astype(float)
            prior = output.prior[b, :d]
            target = None
            if output.action is not None:  # the Gumbel root's choice and improved policy
                best = int(output.action[b])
                t = output.policy_target[b, :d]
                target = (t / t.sum()).tolist()
            else:  # most visited; a tie goes to the policy's preference, then the first sampled
                best = max(range(d), key=lambda a: (visits[a], prior[a], -a))
            stats.append(SearchStats(
                actions=list(root.steps),
                visits=visits.tolist(),
                priors=prior.tolist(),
                q_values=output.q_values[b, :d].tolist(),
                root_value=float(output.root_value[b]),
                simulations=self.num_simulations,
                nodes=self._nodes(output, b, trees[b]),
                policy_target=target,
            ))
            chosen.append(root.steps[best])
            chosen_index.append(best)
        return StepSearchResult(stats=stats, chosen=chosen, chosen_index=chosen_index,
                                output=output)

    def _nodes(self, output: SearchOutput, b: int, tree: dict[int, _Node]) -> SearchNodes | None:
        if not self.record_nodes:
            return None
        record = record_tree(output.tree, b, self.record_nodes, root_prior=output.prior[b])

        def text_of(node: int, action: int) -> str:
            steps = tree[node].steps
            assert steps is not None  # a recorded node's parent was expanded
            return steps[action]

        return search_nodes(record, text_of)


# ------------------------------------------------------------------------------------------------
# Solving problems step by step with search


@dataclass
class SolvedProblem:
    """One problem solved by searching each step: the decisions and how it ended."""

    text: str  # the final state: the problem and every chosen step, one per line
    observations: list[str]  # [T] the state before each decision (what the search started from)
    steps: list[str]  # [T] the chosen step of each decision
    stats: list[SearchStats]  # [T] the search statistics behind each decision
    reward: float  # reward_fn at a final answer, else the search's truncated_value
    termination: str  # "answer", "max_steps" or "context"

    def as_steps(self) -> list[Step]:
        """The decisions as ``Step`` records with their search statistics (reward on the last),
        ready for an ``Episode``."""
        last = len(self.steps) - 1
        return [Step(observation=o, action=a, player=0, reward=self.reward if t == last else 0.0,
                     search=s)
                for t, (o, a, s) in enumerate(zip(self.observations, self.steps, self.stats))]


def solve_with_search(
    search: StepSearch,
    problems: Sequence[str],
    *,
    rng: np.random.Generator | None = None,
    add_noise: bool = True,
    temperature: float = 0.0,
) -> list[SolvedProblem]:
    """Solve every problem in ``problems`` (text states, usually the bare questions) by searching
    from the current state, appending the chosen step, and repeating until a final answer or
    ``search.max_steps`` steps (or a full context). All unfinished problems are searched together,
    one ``StepSearch.run`` per decision round; problem b is ``reward_fn``'s index b.

    temperature: 0 plays the most visited step (evaluation); > 0 samples a step from the visits
    ``^ (1 / temperature)`` (self-play exploration; needs ``rng``). Each decision is a fresh
    search: the subtree under the chosen step is not reused."""
    if temperature > 0 and rng is None:
        raise ValueError("solve_with_search: temperature > 0 needs an rng (np.random.Generator)")
    out = [SolvedProblem(str(p), [], [], [], search.truncated_value, "") for p in problems]
    live = []
    for b, sp in enumerate(out):
        if search.can_continue(sp.text, 0):
            live.append(b)
        else:  # max_steps >= 1, so only the context can rule out a first step
            sp.termination = "context"
    while live:
        result = search.run([out[b].text for b in live], problem_ids=live,
                            depths=[len(out[b].steps) for b in live], rng=rng,
                            add_noise=add_noise)
        still = []
        for b, stats, best in zip(live, result.stats, result.chosen_index):
            sp = out[b]
            # A Gumbel root's choice is already the exploration: it is played as it is.
            pick = (best if temperature == 0 or search.root == "gumbel"
                    else select_action(np.asarray(stats.visits), temperature, rng))
            step = stats.actions[pick]
            sp.observations.append(sp.text)
            sp.steps.append(step)
            sp.stats.append(stats)
            sp.text = append_step(sp.text, step)
            if search.is_final_step(step):
                sp.reward, sp.termination = float(search.reward_fn(b, sp.text)), "answer"
            elif len(sp.steps) >= search.max_steps:
                sp.termination = "max_steps"
            elif not search.can_continue(sp.text, len(sp.steps)):
                sp.termination = "context"
            else:
                still.append(b)
        live = still
    return out


__all__ = [
    "SolvedProblem",
    "StepSearch",
    "StepSearchResult",
    "append_step",
    "candidate_priors",
    "continued_state",
    "engine_value_fn",
    "final_step_rule",
    "has_final_answer_step",
    "last_step",
    "math_reward_fn",
    "rollout_value_fn",
    "solve_with_search",
    "step_text",
]
