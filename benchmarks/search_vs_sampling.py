"""MCTS over reasoning steps against sampling, at equal generated tokens per problem.

One policy (a tiny model warm-started on step-by-step reference solutions of ``env=math_steps``,
the same stage ``selfplay train run.warm_start=sft`` runs), one held-out set (the test split),
and for each of three search budgets:

- **step mcts (puct)**: ``solve_with_search`` (StepSearch, ``--candidates`` sampled next steps per
  node, leaves valued by the value head, ``--sims`` simulations per decision), the most visited
  step played; its generated tokens per problem are measured and set the budget;
- **step mcts (gumbel)**: the same search with a Gumbel root (``root=gumbel``: Gumbel top-k and
  sequential halving), at the same simulations; its own tokens set its own N;
- **best-of-N by value head**: N whole step-by-step samples, the one whose final state the value
  head rates highest;
- **best-of-N by reward model**: the same N samples, the one a Bradley-Terry reward model scores
  highest; the reward model is the policy's body with a reward head, trained on the policy's own
  samples of *train* problems labelled by the verifier (``selfplay.feedback.retrain``), so it is
  judged on problems it never saw;
- **majority vote**: N samples, the most common final answer;
- **one sample**: a single sample (the N = 1 floor, the same at every budget);

with N chosen so that sampling generates as many tokens per problem as the search did. Every
answer is judged by the env through its own ``reset``/``step``. Also reported: generated tokens
per second of the search beside plain sampling on the same engine and batch (goal: >= 80%).

    python benchmarks/search_vs_sampling.py            # 3 budgets, 100 held-out problems
    python benchmarks/search_vs_sampling.py --quick    # a few problems, same code path
    python benchmarks/search_vs_sampling.py --env code_steps   # the same on code, line by line

On ``code_steps`` (a program one line per action, a blank line ending it; 512-token context) the
majority vote is over the final programs as written (whitespace-normalised), and the results go
to ``search_vs_sampling_code.json``.
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

ENVS = {"math_steps": (), "code_steps": ("policy.max_seq_len=512", "env.kwargs.level=1")}  # env -> overrides (code: the seen-family level learn_code uses)


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
               sampling, max_steps: int, rng: np.random.Generator, root: str = "puct") -> dict:
    from selfplay.rollout.step_search import env_reward_fn, replay_steps
    from selfplay.search.text_adapter import StepSearch, solve_with_search

    problems = [str(env.reset(seed=s)[0]) for s in seeds]
    from selfplay.search.text_adapter import final_step_rule

    search = StepSearch(engine, env_reward_fn(env, seeds, problems), num_candidates=candidates,
                        is_final_step=final_step_rule(env),
                        max_step_tokens=sampling.step_max_tokens, temperature=1.0,
                        max_steps=max_steps, num_simulations=sims, dirichlet_fraction=0.0,
                        root=root)
    engine.reset()
    solved = solve_with_search(search, problems, rng=rng, add_noise=False)
    correct = [replay_steps(env, s, sp.steps)[0] >= 1.0 if sp.steps else False
               for s, sp in zip(seeds, solved)]
    return {"pass": float(np.mean(correct)), "tokens_per_problem": engine.tokens / len(seeds),
            "tokens_per_s": engine.tokens / max(engine.seconds, 1e-9)}


def program_of(episode) -> str | None:
    """A code sample's vote: its program as written, whitespace-normalised (None when empty)."""
    program = "\n".join(" ".join(s.action.split()) for s in episode.steps if s.action.strip())
    return program or None


def run_sampling(engine: CountingEngine, env_factory, seeds: list[int], n: int, params,
                 reward_model=None, votes_by_program: bool = False) -> dict:
    from selfplay.evaluate_text import problem_results
    from selfplay.textgen.rollout import prompt_of, rollout_text_env

    engine.reset()
    episodes = rollout_text_env(env_factory, engine, seeds, n, params)
    tokens, seconds = engine.tokens, engine.seconds
    groups = problem_results(episodes, n)
    # best-of-N by the value head at each sample's final state
    # A sample that filled the context has no room for the value head's read: it ranks last.
    from selfplay.search.text_adapter import _fits, engine_value_fn

    finals = [final_state(e) for e in episodes]
    fits = [i for i, f in enumerate(finals) if _fits(engine, prompt_of(f) + "\n")]
    values = np.full(len(finals), -np.inf)
    values[fits] = engine_value_fn(engine)([finals[i] for i in fits])
    best = [g.correct[int(np.argmax(values[i * n:(i + 1) * n]))] for i, g in enumerate(groups)]
    by_rm = None
    if reward_model is not None:
        from selfplay.feedback.retrain import verifier_samples

        prompts, responses, _ = verifier_samples(episodes)
        scores = reward_model.rewards(prompts, responses)
        by_rm = float(np.mean([g.correct[int(np.argmax(scores[i * n:(i + 1) * n]))]
                               for i, g in enumerate(groups)]))
    majority = []
    for i, group in enumerate(groups):
        answers = ([program_of(e) for e in episodes[i * n:(i + 1) * n]] if votes_by_program
                   else group.answers)
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            majority.append(False)
            continue
        top = votes.most_common(1)[0][0]
        majority.append(any(c for a, c in zip(answers, group.correct) if a == top))
    return {"n": n, "best_of_n_value": float(np.mean(best)), "best_of_n_reward_model": by_rm,
            "majority": float(np.mean(majority)),
            "one_sample": float(np.mean([g.correct[0] for g in groups])),
            "tokens_per_problem": tokens / len(seeds), "tokens_per_s": tokens / max(seconds, 1e-9)}


def train_reward_model_on_policy(policy: str, engine: CountingEngine, train_factory, problems: int,
                                 n: int, params, steps: int) -> tuple[Any, dict]:
    """A reward model on the policy's body, trained on ``n`` of the policy's own samples of each
    of ``problems`` train-split problems, labelled by the env's verifier (the same pairs and
    held-out split ``selfplay train feedback.retrain_every`` uses)."""
    from selfplay.feedback.retrain import retrain
    from selfplay.feedback.reward_model import build_reward_model
    from selfplay.policy.config import PolicyConfig
    from selfplay.textgen.rollout import rollout_text_env

    model, _ = build_reward_model(PolicyConfig(path=policy))
    episodes = rollout_text_env(train_factory, engine, [100_000 + i for i in range(problems)],
                                n, params)
    result, trained = retrain(model, episodes, steps=steps, batch_size=32, lr=3e-4,
                              held_out=0.2, seed=0)
    info = {"train_problems": problems, "samples_per_problem": n, "steps": steps,
            "trained": trained, "train_pairs": result.train_pairs,
            "held_out_pairs": result.held_out_pairs,
            "held_out_accuracy_before": result.accuracy_before,
            "held_out_accuracy_after": result.accuracy_after}
    print(f"reward model: {info}", flush=True)
    return (model if trained else None), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few problems, same code path")
    parser.add_argument("--env", default="math_steps", choices=sorted(ENVS),
                        help="the multi-step task searched (code_steps: programs line by line)")
    parser.add_argument("--problems", type=int, default=100, help="held-out problems")
    parser.add_argument("--warm-problems", type=int, default=256)
    parser.add_argument("--warm-steps", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=4, help="K next steps per node")
    parser.add_argument("--sims", default="4,8,16", help="simulations per decision, per budget")
    parser.add_argument("--policy", default=None, help="a policy dir instead of the warm start")
    parser.add_argument("--rm-problems", type=int, default=1024,
                        help="train problems the reward model learns from (0: no reward model)")
    parser.add_argument("--rm-steps", type=int, default=300, help="reward-model training steps")
    args = parser.parse_args()
    if args.quick:
        args.problems, args.warm_steps, args.sims, args.rm_problems, args.rm_steps = 8, 30, "2,4", 16, 10
    budgets = [int(x) for x in args.sims.split(",")]

    import torch

    from selfplay.evaluate_text import _test_env_factory
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.rollout.modes import text_sampling
    from selfplay.build import build_env
    from selfplay.textgen.rollout import step_limit

    torch.set_num_threads(2)
    env_name, overrides = args.env, ENVS[args.env]
    code = env_name == "code_steps"
    cfg = compose([f"env={env_name}", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy
        warm = None
        if policy is None:
            warm = sft_start(env_name, Path(tmp), args.warm_problems, args.warm_steps, overrides)
            policy = str(Path(tmp) / "start")
        engine = CountingEngine(make_engine(PolicyConfig(path=policy), cfg.engine))
        env_factory = _test_env_factory(cfg.env)
        env = env_factory()
        seeds = list(range(args.problems))
        params = replace(text_sampling(cfg.sampling, True, seed=12345), temperature=1.0)
        reward_model, rm_info = None, None
        if args.rm_problems > 0:
            reward_model, rm_info = train_reward_model_on_policy(
                policy, engine, lambda: build_env(cfg.env), args.rm_problems, 8, params,
                args.rm_steps)
        per_sample = run_sampling(engine, env_factory, seeds, 1, params)["tokens_per_problem"]
        rows = []
        for sims in budgets:
            for root in ("puct", "gumbel"):
                searched = run_search(engine, env, seeds, sims, args.candidates, cfg.sampling,
                                      step_limit(env), np.random.default_rng(0), root=root)
                n = max(1, round(searched["tokens_per_problem"] / max(per_sample, 1e-9)))
                sampled = run_sampling(engine, env_factory, seeds, n, params, reward_model,
                                       votes_by_program=code)
                rows.append({"sims": sims, "root": root, "search": searched, "sampling": sampled})
                print(f"sims {sims} {root}: search {searched}; sampling (n={n}) {sampled}",
                      flush=True)

    figures = []
    for row in rows:
        s, b, root = row["search"], row["sampling"], row["root"]
        baselines = [("best-of-N by value head", b["best_of_n_value"]),
                     ("majority vote", b["majority"]), ("one sample", b["one_sample"])]
        if b["best_of_n_reward_model"] is not None:
            baselines.insert(1, ("best-of-N by reward model", b["best_of_n_reward_model"]))
        best_name, best = max(baselines, key=lambda kv: kv[1])
        budget = (f"{row['sims']} sims: {s['tokens_per_problem']:.0f} tokens/problem, "
                  f"sampling N={b['n']}")
        figures.append(figure(f"step mcts ({root}) held-out pass@1 vs best sampling baseline, "
                              f"{budget}", "pass@1", s["pass"], best,
                              f"{best_name}, same tokens", "> 1 (search ahead)", digits=3))
        for name, value in baselines:
            if name != best_name:
                figures.append(figure(f"step mcts ({root}) vs {name}, {budget}", "pass@1",
                                      s["pass"], value, f"{name}, same tokens", "report",
                                      digits=3))
        figures.append(figure(f"step mcts ({root}) generated tokens/s vs plain sampling, {budget}",
                              "tokens/s", s["tokens_per_s"], b["tokens_per_s"],
                              "plain sampling, same engine and problems", ">= 0.8x", digits=0))
    name = "search_vs_sampling_code" if code else "search_vs_sampling"
    print_table(name, figures)
    write_result(name, figures, quick=args.quick,
                 extra={"env": env_name, "problems": args.problems, "candidates": args.candidates,
                        "warm_start": warm, "reward_model": rm_info, "rows": rows})


if __name__ == "__main__":
    main()
