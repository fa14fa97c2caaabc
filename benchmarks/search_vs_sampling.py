"""MCTS over reasoning steps against sampling, at equal generated tokens per problem.

One policy (a tiny model warm-started on step-by-step reference solutions of ``env=math_steps``,
the same stage ``selfplay train run.warm_start=sft`` runs), one held-out set (the test split),
and for each of three search budgets:

- **step mcts (puct)**: ``solve_with_search`` (StepSearch, ``--candidates`` sampled next steps per
  node, leaves valued by the value head, ``--sims`` simulations per decision), the most visited
  step played; its generated tokens per problem are measured and set the budget;
- **best-of-N by value head**: N whole step-by-step samples, the one whose final state the value
  head rates highest;
- **majority vote**: N samples, the most common final answer;
- **one sample**: a single sample (the N = 1 floor, the same at every budget);

with N chosen so that sampling generates as many tokens per problem as the search did. Every
answer is judged by the env through its own ``reset``/``step``. Also reported: generated tokens
per second of the search beside plain sampling on the same engine and batch (goal: >= 80%).
A best-of-N by a reward model needs a trained one; it is not run here.

    python benchmarks/search_vs_sampling.py            # 3 budgets, 100 held-out problems
    python benchmarks/search_vs_sampling.py --quick    # a few problems, same code path
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result  # noqa: E402
from learn_arithmetic import compose, sft_start  # noqa: E402

ENV = "math_steps"


class CountingEngine:
    """An engine that counts the tokens its ``generate`` calls produce (and their seconds)."""

    def __init__(self, engine: Any):
        self._engine = engine
        self.tokens = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, prompts, sampling):
        start = time.perf_counter()
        out = self._engine.generate(prompts, sampling)
        self.seconds += time.perf_counter() - start
        self.tokens += sum(len(c.token_ids) for group in out for c in group)
        return out

    def reset(self) -> None:
        self.tokens, self.seconds = 0, 0.0


def final_state(episode) -> str:
    from selfplay.search.text_adapter import append_step

    last = episode.steps[-1]
    return append_step(last.observation, last.action)


def run_search(engine: CountingEngine, env, seeds: list[int], sims: int, candidates: int,
               sampling, max_steps: int, rng: np.random.Generator) -> dict:
    from selfplay.rollout.step_search import env_reward_fn, replay_steps
    from selfplay.search.text_adapter import StepSearch, solve_with_search

    problems = [str(env.reset(seed=s)[0]) for s in seeds]
    search = StepSearch(engine, env_reward_fn(env, seeds, problems), num_candidates=candidates,
                        max_step_tokens=sampling.step_max_tokens, temperature=1.0,
                        max_steps=max_steps, num_simulations=sims, dirichlet_fraction=0.0)
    engine.reset()
    solved = solve_with_search(search, problems, rng=rng, add_noise=False)
    correct = [replay_steps(env, s, sp.steps)[0] >= 1.0 if sp.steps else False
               for s, sp in zip(seeds, solved)]
    return {"pass": float(np.mean(correct)), "tokens_per_problem": engine.tokens / len(seeds),
            "tokens_per_s": engine.tokens / max(engine.seconds, 1e-9)}


def run_sampling(engine: CountingEngine, env_factory, seeds: list[int], n: int, params) -> dict:
    from selfplay.evaluate_text import problem_results
    from selfplay.textgen.rollout import prompt_of, rollout_text_env

    engine.reset()
    episodes = rollout_text_env(env_factory, engine, seeds, n, params)
    tokens, seconds = engine.tokens, engine.seconds
    groups = problem_results(episodes, n)
    # best-of-N by the value head at each sample's final state
    values = np.array([ev.value for ev in engine.evaluate(
        [prompt_of(final_state(e)) for e in episodes], [["\n"]] * len(episodes))])
    best = []
    for i, group in enumerate(groups):
        pick = int(np.argmax(values[i * n:(i + 1) * n]))
        best.append(group.correct[pick])
    majority = []
    for group in groups:
        votes = Counter(a for a in group.answers if a is not None)
        if not votes:
            majority.append(False)
            continue
        top = votes.most_common(1)[0][0]
        majority.append(any(c for a, c in zip(group.answers, group.correct) if a == top))
    return {"n": n, "best_of_n_value": float(np.mean(best)), "majority": float(np.mean(majority)),
            "one_sample": float(np.mean([g.correct[0] for g in groups])),
            "tokens_per_problem": tokens / len(seeds), "tokens_per_s": tokens / max(seconds, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few problems, same code path")
    parser.add_argument("--problems", type=int, default=100, help="held-out problems")
    parser.add_argument("--warm-problems", type=int, default=256)
    parser.add_argument("--warm-steps", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=4, help="K next steps per node")
    parser.add_argument("--sims", default="4,8,16", help="simulations per decision, per budget")
    parser.add_argument("--policy", default=None, help="a policy dir instead of the warm start")
    args = parser.parse_args()
    if args.quick:
        args.problems, args.warm_steps, args.sims = 8, 30, "2,4"
    budgets = [int(x) for x in args.sims.split(",")]

    import torch

    from selfplay.evaluate_text import _test_env_factory
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.rollout.modes import text_sampling
    from selfplay.textgen.rollout import step_limit

    torch.set_num_threads(2)
    cfg = compose([f"env={ENV}"])
    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy
        warm = None
        if policy is None:
            warm = sft_start(ENV, Path(tmp), args.warm_problems, args.warm_steps)
            policy = str(Path(tmp) / "start")
        engine = CountingEngine(make_engine(PolicyConfig(path=policy), cfg.engine))
        env_factory = _test_env_factory(cfg.env)
        env = env_factory()
        seeds = list(range(args.problems))
        params = replace(text_sampling(cfg.sampling, True, seed=12345), temperature=1.0)
        rows = []
        for sims in budgets:
            searched = run_search(engine, env, seeds, sims, args.candidates, cfg.sampling,
                                  step_limit(env), np.random.default_rng(0))
            per_sample = run_sampling(engine, env_factory, seeds, 1, params)["tokens_per_problem"]
            n = max(1, round(searched["tokens_per_problem"] / max(per_sample, 1e-9)))
            sampled = run_sampling(engine, env_factory, seeds, n, params)
            rows.append({"sims": sims, "search": searched, "sampling": sampled})
            print(f"sims {sims}: search {searched}; sampling (n={n}) {sampled}", flush=True)

    figures = []
    for row in rows:
        s, b = row["search"], row["sampling"]
        best_name, best = max((("best-of-N by value head", b["best_of_n_value"]),
                               ("majority vote", b["majority"]), ("one sample", b["one_sample"])),
                              key=lambda kv: kv[1])
        budget = f"{s['tokens_per_problem']:.0f} tokens/problem (search {row['sims']} sims, N={b['n']})"
        figures.append(figure(f"step mcts (puct) held-out pass@1 vs best sampling baseline, {budget}",
                              "pass@1", s["pass"], best, f"{best_name}, same tokens",
                              "> 1 (search ahead)", digits=3))
        for name, key in (("best-of-N by value head", "best_of_n_value"),
                          ("majority vote", "majority"), ("one sample", "one_sample")):
            figures.append(figure(f"step mcts (puct) vs {name}, {budget}", "pass@1", s["pass"],
                                  b[key], f"{name}, same tokens", "report", digits=3))
        figures.append(figure(f"step mcts generated tokens/s vs plain sampling, {budget}",
                              "tokens/s", s["tokens_per_s"], b["tokens_per_s"],
                              "plain sampling, same engine and problems", ">= 0.8x", digits=0))
    print_table("search_vs_sampling", figures)
    write_result("search_vs_sampling", figures, quick=args.quick,
                 extra={"env": ENV, "problems": args.problems, "candidates": args.candidates,
                        "warm_start": warm, "rows": rows})


if __name__ == "__main__":
    main()
