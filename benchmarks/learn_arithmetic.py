"""Online RL on procedural arithmetic with the verifier as the only reward: does it beat SFT?

From scratch on this machine (2 CPU cores, the tiny default policy):

1. the **sft start**: a fresh policy trained on a limited set of reference solutions (the env's
   own ``reference_actions``, train problems 0..N-1): ``run.warm_start=sft``'s stage, run once
   and saved, so every arm starts from the same weights;
2. four arms of ``--minutes`` each, one after the other, every one the real ``selfplay train``
   command from the sft start (``policy.path=START``):
   - **control**: SFT continued on the same reference solutions (``rollout.mode=reference``,
     ``learner=sft``);
   - **grpo**: ``learner=grpo`` (k samples per problem, verifier reward);
   - **expert iteration**: ``learner=expert_iteration`` (SFT on each group's verified samples);
   - **trl**: TRL's ``GRPOTrainer`` from the same weights with the same reward, when the
     ``[bench]`` extra is installed (``benchmarks/trl_peer.py``);
   - on request (``--arms``), search over reasoning steps on ``env=math_steps`` (the same
     problems, one step per action) from its own sft start: **step_mcts_alphazero**
     (``rollout.mode=step_search``, the alphazero loss over sibling steps),
     **step_mcts_expert_iteration** (SFT on the verified paths the search finds),
     **step_mcts_dpo** (DPO of the best sibling step over the worst by Q) and
     **grpo_steps** (GRPO on the same task, the baseline search must beat);
3. pass@1 (unbiased, k samples at temperature 1) and greedy accuracy of each final policy on the
   same held-out problems (the env's test split, disjoint from training).

    python benchmarks/learn_arithmetic.py                 # 30 minutes per arm
    python benchmarks/learn_arithmetic.py --minutes 15    # shorter arms (named in the results)
    python benchmarks/learn_arithmetic.py --quick         # under a few minutes, same code path

Writes ``results/learn_arithmetic.json`` and the curves ``results/learn_arithmetic.png``
(held-out pass@1 over each arm's wall-clock, from the run's own evaluator).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, figure, print_table, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from selfplay.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def sft_start(env: str, out_dir: Path, problems: int, steps: int, extra: tuple[str, ...] = ()) -> dict:
    """The warm-start stage of ``selfplay train`` (the same function), saved as a policy dir;
    ``extra`` overrides go to the composed config (e.g. the policy's context)."""
    import torch

    from selfplay.policy.model import build_policy
    from selfplay.workers import warm_start, worker_configs

    torch.set_num_threads(2)
    cfg = compose([f"env={env}", "learner=sft", "run.warm_start=sft", f"run.dir={out_dir}/run",
                   f"run.warm_start_problems={problems}", f"run.warm_start_steps={steps}", *extra])
    workers = worker_configs(cfg)
    Path(workers.learner.run_dir).mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_policy(cfg.policy)
    metrics = warm_start(model, tokenizer, workers.learner)
    model.save(str(out_dir / "start"), tokenizer)
    return metrics


def held_out(env: str, policy_dir: str, problems: int, k: int, extra: tuple[str, ...] = ()) -> dict:
    """pass@1..k at temperature 1 (seeded) and greedy accuracy on test problems 0..problems-1;
    ``extra`` overrides go to the composed config (e.g. the env's kwargs)."""
    from selfplay.arena.text import evaluate_version
    from selfplay.evaluate_text import _test_env_factory
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.rollout.modes import text_sampling
    from selfplay.textgen.rollout import is_multi_step

    cfg = compose([f"env={env}", *extra])
    engine = make_engine(PolicyConfig(path=policy_dir), cfg.engine)
    factory = _test_env_factory(cfg.env)
    multi = is_multi_step(factory())  # math_steps: one step per sample, to its newline
    sampled = evaluate_version(factory, engine, range(problems), k,
                               text_sampling(cfg.sampling, multi, seed=12345))
    greedy = evaluate_version(factory, engine, range(problems), 1,
                              replace(text_sampling(cfg.sampling, multi, seed=0), temperature=0.0))
    return {"pass@1": sampled.pass_at[1], f"pass@{k}": sampled.pass_at[k],
            f"maj@{k}": sampled.majority, "greedy": greedy.pass_at[1]}


def train_arm(env: str, start: Path, run_dir: Path, minutes: float, overrides: list[str],
              eval_problems: int) -> dict:
    cmd = [sys.executable, "-m", "selfplay.cli", "train", f"env={env}", f"policy.path={start}",
           f"run.dir={run_dir}", f"run.budget_minutes={minutes}", "run.progress=false",
           "arena.gate=false", f"run.eval_every={max(minutes / 6, 0.25):.2f}m",
           f"arena.eval_games={eval_problems}", "sampling.k=8", *overrides]
    started = time.time()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"training failed ({' '.join(cmd)}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    curve = []
    log = run_dir / "evaluations.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        curve.append(((row["at"] - started) / 60, row["pass@1"], row["version"]))
    return {"summary": summary, "curve": curve, "seconds": time.time() - started}


def trl_arm(env: str, start: Path, out: Path, minutes: float, problems: int) -> dict | None:
    try:
        import trl  # noqa: F401
    except ImportError:
        return None
    from trl_peer import trl_grpo

    from selfplay.build import build_env
    from selfplay.textgen.rollout import prompt_of

    cfg = compose([f"env={env}"])
    env_ = build_env(cfg.env)
    prompts, answers = [], []
    for seed in range(problems):
        obs, _ = env_.reset(seed=100_000 + seed)  # train split, any seed: as the RL arms draw
        prompts.append(prompt_of(str(obs)))
        answers.append(env_.unwrapped.problem.answer)
    return trl_grpo(str(start), str(out), prompts, answers, minutes)


def plot(curves: dict[str, list], start_pass: float, path: Path,
         title: str = "learn_arithmetic: online RL vs SFT continued (2 CPU cores)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=name)
    ax.axhline(start_pass, color="grey", linestyle="--", label="sft start")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("held-out pass@1 (run's evaluator)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def merge_previous(results: dict[str, dict], curves: dict[str, list]) -> str | None:
    """Fill the arms not rerun from the last full run's JSON; returns that run's date.

    Each merged arm is stamped with the date it was measured and the pass@1 of the start it
    trained from (``start_pass@1``), so a merge of a merge still compares every arm with its own
    start. The sft start is deterministic (seeded data and init) on one version of the code, but it
    has moved between versions: a different one is kept beside as ``sft start (merged run)``."""
    path = RESULTS / "learn_arithmetic.json"
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    old = previous.get("results", {})
    for name, row in old.items():
        if name == "sft start":
            if row != results["sft start"]:
                results["sft start (merged run)"] = row
        elif name in ("sft start (steps)", "sft start (merged run)"):
            results.setdefault(name, row)  # the step arms' own start, when none ran today
        elif name not in results and not name.startswith("sft start"):
            results[name] = {**row, "measured": row.get("measured", previous["date"]),
                             "start_pass@1": row.get("start_pass@1", _old_start(old, name, row))}
    for name, curve in previous.get("curves", {}).items():
        curves.setdefault(name, curve)
    return previous["date"]


def _old_start(old: dict[str, dict], name: str, row: dict) -> float | None:
    """The start an arm of an earlier JSON (written before arms carried ``start_pass@1``) trained
    from: the step start for the step arms, that JSON's merged start for arms it had merged."""
    if name in STEP_ARMS:
        return old.get("sft start (steps)", {}).get("pass@1")
    if "measured" in row and "sft start (merged run)" in old:
        return old["sft start (merged run)"]["pass@1"]
    return old.get("sft start", {}).get("pass@1")


# Search over reasoning steps needs a multi-step task: the same problems, one step per action.
STEP_ENV = "math_steps"
STEP_SEARCH = ["rollout.mode=step_search", "search.num_simulations=16", "search.num_candidates=4"]
# The alphazero and dpo learners default to a game's from-scratch settings (lr 1e-3, batch 256);
# from a warm-started LM that rate undid the warm start within the first version (held-out pass@1
# 0.03 -> 0.0025 at v1, policy CE and KL rising), so the step arms fine-tune at GRPO's lr and
# expert iteration's batch.
FINE_TUNE = ["learner.lr=1e-4", "learner.batch_size=64"]
STEP_ARMS = {
    "step_mcts_alphazero": [*STEP_SEARCH, "learner=alphazero", *FINE_TUNE],
    "step_mcts_expert_iteration": [*STEP_SEARCH, "learner=expert_iteration"],
    "step_mcts_dpo": [*STEP_SEARCH, "learner=dpo", *FINE_TUNE],
    "grpo_steps": ["learner=grpo"],  # the sampling baseline on the same multi-step task
}


def step_arms(chosen: list[str], tmp: Path, args, results: dict, curves: dict) -> None:
    """The arms on ``env=math_steps`` from their own sft start (step-by-step references), on the
    same held-out problems (the test split's seeds), each ``--minutes`` of ``selfplay train``."""
    from selfplay.arena.players import resolve_checkpoint

    names = [n for n in STEP_ARMS if n in chosen]
    if not names:
        return
    # --step-warm-unit solutions: the step start sees as many solutions as the single-turn one.
    sft_start(STEP_ENV, tmp / "steps", args.problems, args.warm_steps,
              (f"run.warm_start_unit={args.step_warm_unit}",))
    start = tmp / "steps" / "start"
    results["sft start (steps)"] = held_out(STEP_ENV, str(start), args.eval_problems, 4)
    print(f"sft start (steps): {results['sft start (steps)']}", flush=True)
    for name in names:
        arm = train_arm(STEP_ENV, start, tmp / name, args.minutes, STEP_ARMS[name],
                        min(args.eval_problems, 50))
        final = resolve_checkpoint(str(tmp / name))
        results[name] = {**held_out(STEP_ENV, str(final), args.eval_problems, 4),
                         "learner_steps": arm["summary"]["learner_steps"],
                         "episodes": arm["summary"]["episodes"],
                         "version": arm["summary"]["latest_version"],
                         "start_pass@1": results["sft start (steps)"]["pass@1"]}
        curves[name] = arm["curve"]
        print(f"{name}: {results[name]}", flush=True)


def start_of(results: dict[str, dict], name: str) -> float:
    """pass@1 of the sft start an arm trained from: a merged arm's own (``start_pass@1``, stamped
    by ``merge_previous``), else today's."""
    own = results[name].get("start_pass@1")
    if own is not None:
        return own
    return results["sft start (steps)" if name in STEP_ARMS else "sft start"]["pass@1"]


def peer_label(ours_start: float | None, trl_start: float | None) -> str:
    if ours_start == trl_start:
        return "TRL GRPOTrainer, same start, reward and minutes"
    return (f"TRL GRPOTrainer, same reward and minutes, another sft start "
            f"({trl_start} vs ours {ours_start})")


def build_figures(results: dict[str, dict], minutes: float) -> tuple[list[dict], dict]:
    """The figures and the gains, each arm against the start it trained from."""
    rl = {n: r for n, r in results.items() if n in ("grpo", "expert_iteration")}
    best = max(rl, key=lambda n: rl[n]["pass@1"]) if rl else None
    points = lambda x: None if x is None else 100 * x  # noqa: E731
    label = f"{minutes:g} min/arm"
    figures = []
    best_start = start_of(results, best) if best else None
    if best:
        figures.append(figure(f"best RL ({best}) pass@1 held-out vs sft start ({label})", "points",
                              points(rl[best]["pass@1"]), points(best_start), "sft start",
                              ">= +25 points over sft start"))
        if "control" in results:
            figures.append(figure(f"best RL ({best}) pass@1 held-out vs control ({label})",
                                  "points", points(rl[best]["pass@1"]),
                                  points(results["control"]["pass@1"]),
                                  "control: SFT continued on the same solutions",
                                  ">= +10 points over control"))
        if "trl" in results:
            figures.append(figure(f"best RL ({best}) pass@1 held-out vs TRL GRPOTrainer ({label})",
                                  "points", points(rl[best]["pass@1"]),
                                  points(results["trl"]["pass@1"]),
                                  peer_label(best_start, start_of(results, "trl")), "report"))
    if "grpo" in results and "trl" in results:
        # the same algorithm in the two libraries: the peer comparison proper
        figures.append(figure(f"grpo pass@1 held-out vs TRL GRPOTrainer ({label})", "points",
                              points(results["grpo"]["pass@1"]), points(results["trl"]["pass@1"]),
                              peer_label(start_of(results, "grpo"), start_of(results, "trl")),
                              "report"))
    for name, r in results.items():
        if name.startswith("sft start") or name in STEP_ARMS:
            continue
        figures.append(figure(f"{name} pass@1 held-out vs sft start ({label})", "points",
                              points(r["pass@1"]), points(start_of(results, name)), "sft start",
                              "report"))
    if "sft start (steps)" in results:
        for name in (n for n in STEP_ARMS if n in results):
            figures.append(figure(f"{name} pass@1 held-out vs sft start (steps) ({label})",
                                  "points", points(results[name]["pass@1"]),
                                  points(start_of(results, name)),
                                  "sft start on math_steps", "report"))
        searched = [n for n in ("step_mcts_alphazero", "step_mcts_expert_iteration",
                                "step_mcts_dpo") if n in results]
        if searched and "grpo_steps" in results:
            top = max(searched, key=lambda n: results[n]["pass@1"])
            figures.append(figure(f"best step mcts ({top}) pass@1 held-out vs grpo on steps "
                                  f"({label})", "points", points(results[top]["pass@1"]),
                                  points(results["grpo_steps"]["pass@1"]),
                                  "GRPO on math_steps, same start and minutes",
                                  "> GRPO (search-based training ahead)"))
    extra = {"results": results,
             "gain_over_sft_start_points": points(rl[best]["pass@1"] - best_start) if best else None,
             "gain_over_control_points": (points(rl[best]["pass@1"] - results["control"]["pass@1"])
                                          if best and "control" in results else None)}
    return figures, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short arms, same code path")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock of each arm")
    parser.add_argument("--env", default="math", help="conf/env/<name>.yaml (single-turn math)")
    parser.add_argument("--problems", type=int, default=256, help="reference solutions of the sft start")
    parser.add_argument("--warm-steps", type=int, default=300, help="learner steps of the sft start")
    parser.add_argument("--eval-problems", type=int, default=200, help="held-out problems")
    parser.add_argument("--arms", default="control,grpo,expert_iteration,trl",
                        help="comma-separated; also step_mcts_alphazero, "
                             "step_mcts_expert_iteration, step_mcts_dpo, grpo_steps (on "
                             "env=math_steps)")
    parser.add_argument("--step-warm-unit", default="decisions", choices=["decisions", "solutions"],
                        help="run.warm_start_unit of the math_steps sft start (decisions: the "
                             "committed step rows; solutions: as many solutions as the math start)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other arms of the last full run's JSON (rerun some arms)")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.warm_steps, args.eval_problems = 0.5, 40, 40
    arms = {
        "control": ["learner=sft", "rollout.mode=reference", f"rollout.problems={args.problems}"],
        "grpo": ["learner=grpo"],
        "expert_iteration": ["learner=expert_iteration"],
    }
    chosen = args.arms.split(",")
    results: dict[str, dict] = {}
    curves: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        warm = sft_start(args.env, tmp, args.problems, args.warm_steps)
        start = tmp / "start"
        results["sft start"] = held_out(args.env, str(start), args.eval_problems, 4)
        print(f"sft start ({time.time() - t0:.0f} s): {results['sft start']}", flush=True)
        for name, overrides in arms.items():
            if name not in chosen:
                continue
            arm = train_arm(args.env, start, tmp / name, args.minutes, overrides,
                            min(args.eval_problems, 50))
            from selfplay.arena.players import resolve_checkpoint

            final = resolve_checkpoint(str(tmp / name))
            results[name] = {**held_out(args.env, str(final), args.eval_problems, 4),
                             "learner_steps": arm["summary"]["learner_steps"],
                             "episodes": arm["summary"]["episodes"],
                             "version": arm["summary"]["latest_version"],
                             "start_pass@1": results["sft start"]["pass@1"]}
            curves[name] = arm["curve"]
            print(f"{name}: {results[name]}", flush=True)
        if "trl" in chosen:
            info = trl_arm(args.env, start, tmp / "trl", args.minutes, 2048)
            if info is not None:
                results["trl"] = {**held_out(args.env, str(tmp / "trl"), args.eval_problems, 4),
                                  **{k: info[k] for k in ("steps", "completions")},
                                  "learning_rate": info.get("learning_rate"),
                                  "start_pass@1": results["sft start"]["pass@1"]}
                print(f"trl: {results['trl']}", flush=True)
        step_arms(chosen, tmp, args, results, curves)

    merged_from = merge_previous(results, curves) if args.merge and not args.quick else None
    figures, extra = build_figures(results, args.minutes)
    extra.update({"minutes_per_arm": args.minutes, "env": args.env, "warm_start": warm,
                  "step_warm_unit": args.step_warm_unit,
                  "held_out_problems": args.eval_problems, "curves": curves,
                  "merged_from": merged_from})
    print_table("learn_arithmetic", figures)
    print(json.dumps({k: extra[k] for k in ("gain_over_sft_start_points",
                                             "gain_over_control_points")}))
    write_result("learn_arithmetic", figures, quick=args.quick, extra=extra)
    plot(curves, results["sft start"]["pass@1"],
         RESULTS / f"learn_arithmetic{'.quick' if args.quick else ''}.png")


if __name__ == "__main__":
    main()
