"""`selfplay eval env=math [checkpoint=RUN_OR_CHECKPOINT] games=N`: pass@k on held-out problems.

For a single-agent text task (math, code) the policy is measured on the env's ``split="test"``
problems (disjoint from training): ``games`` problems (env seeds ``run.seed .. run.seed+games-1``),
``k`` sampled episodes each (``sampling.k``, ``sampling.temperature``; no search, so
``search.num_simulations`` is not used). Reported:

- pass@j for j = 1, 2, 4, ... and k: the unbiased estimator 1 - C(n-c, j) / C(n, j) per problem
  (n = k samples, c of them correct by the env's verifier), averaged over problems;
- maj@k: the majority-voted final answer is correct (answers normalised before voting; samples
  stating no answer do not vote; the env's own "predicted" answer when it reports one, so a vote
  and the reward read a solution the same way);
- the mean reward per sample.

The policy is the checkpoint (a checkpoint dir, or a run dir: its newest), or, with no
checkpoint, a fresh untrained policy from ``policy.*`` (so the command runs out of the box).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from omegaconf import OmegaConf

from envs.math.answers import extract_answer, normalize_answer
from selfplay.build import build_env
from selfplay.errors import UserError
from selfplay.policy.config import PolicyConfig
from selfplay.policy.engine import Engine, EngineInputError, SamplingParams
from selfplay.search.best_of_n import majority_vote, pass_at_k
from selfplay.textgen.config import TextSamplingConfig
from selfplay.types import Episode

# ---- metrics (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemResult:
    """The k samples of one problem, as the env judged them."""

    seed: int
    correct: list[bool]  # [k] the env's verifier accepted the sample
    answers: list[str | None]  # [k] normalised final answer (None: the sample states none)
    rewards: list[float]  # [k] the env's reward


@dataclass(frozen=True)
class TextEvalResult:
    problems: int
    k: int
    pass_at: dict[int, float]  # j -> mean unbiased pass@j over problems
    majority: float  # maj@k: fraction of problems whose majority answer is correct
    mean_reward: float  # per sample

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"problems": self.problems, "k": self.k}
        out.update({f"pass@{j}": v for j, v in self.pass_at.items()})
        out[f"maj@{self.k}"] = self.majority
        out["mean_reward"] = self.mean_reward
        return out


def pass_ks(k: int) -> list[int]:
    """1, 2, 4, ... up to k, and k itself: the pass@K curve the samples support."""
    ks, j = [], 1
    while j < k:
        ks.append(j)
        j *= 2
    return ks + [k]


def majority_correct(problem: ProblemResult) -> bool:
    """Whether the most frequent answer is a correct one. Samples with the same normalised answer
    were judged alike by the verifier, so the winner's correctness is read off its samples (no
    extra verifier call)."""
    winner, _ = majority_vote(problem.answers)
    if winner is None:
        return False
    return any(c for a, c in zip(problem.answers, problem.correct) if a == winner)


def text_eval_metrics(problems: Sequence[ProblemResult]) -> TextEvalResult:
    if not problems:
        raise ValueError("text_eval_metrics: no problems")
    k = len(problems[0].correct)
    if k < 1 or any(len(p.correct) != k for p in problems):
        raise ValueError("text_eval_metrics: every problem needs the same k >= 1 samples")
    n = len(problems)
    pass_at = {j: sum(pass_at_k(k, sum(p.correct), j) for p in problems) / n for j in pass_ks(k)}
    majority = sum(majority_correct(p) for p in problems) / n
    mean_reward = sum(sum(p.rewards) for p in problems) / (n * k)
    return TextEvalResult(n, k, pass_at, majority, mean_reward)


def sample_answer(episode: Episode) -> str | None:
    """The final answer a sample states, normalised for voting: the env's own reading of it
    ("predicted", MathEnv) when it reports one, else ``extract_answer`` of the whole response."""
    if "predicted" in episode.info:
        raw = episode.info["predicted"] or None
    else:
        raw = extract_answer("\n".join(s.action for s in episode.steps))
    return normalize_answer(raw) if raw else None


def is_correct(episode: Episode) -> bool:
    """The env's verdict ("correct" in its info) or, for an env without one, a full reward."""
    if "correct" in episode.info:
        return episode.info["correct"] == "True"
    return episode.outcome >= 1.0


def problem_results(episodes: Sequence[Episode], k: int) -> list[ProblemResult]:
    """Group ``rollout_text_env``'s episodes ((seed, sample) order) k at a time."""
    if len(episodes) % k:
        raise ValueError(f"problem_results: {len(episodes)} episodes is not a multiple of k={k}")
    out = []
    for start in range(0, len(episodes), k):
        group = episodes[start : start + k]
        out.append(
            ProblemResult(
                seed=group[0].seed,
                correct=[is_correct(e) for e in group],
                answers=[sample_answer(e) for e in group],
                rewards=[float(e.outcome) for e in group],
            )
        )
    return out


def evaluate_text_policy(
    env_factory: Callable,
    engine: Engine,
    seeds: Sequence[int],
    k: int,
    sampling: SamplingParams,
    *,
    batch_problems: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> TextEvalResult:
    """k episodes of each problem, ``batch_problems`` problems per rollout (so a progress bar
    moves while the engine still gets large batches)."""
    from selfplay.textgen.rollout import rollout_text_env

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    results: list[ProblemResult] = []
    for start in range(0, len(seeds), batch_problems):
        chunk = list(seeds[start : start + batch_problems])
        episodes = rollout_text_env(env_factory, engine, chunk, k, sampling)
        results += problem_results(episodes, k)
        if on_batch is not None:
            on_batch(len(chunk))
    return text_eval_metrics(results)


# ---- the command -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPolicy:
    engine: Engine
    label: str  # what was evaluated, for the output
    untrained: bool


def load_policy(cfg) -> LoadedPolicy:
    """The checkpoint's policy (its version recorded on the engine), or a fresh one from
    ``cfg.policy`` when no checkpoint is given."""
    from selfplay.arena.players import resolve_checkpoint
    from selfplay.policy.factory import make_engine

    if cfg.checkpoint:
        directory = resolve_checkpoint(cfg.checkpoint)
        engine = make_engine(PolicyConfig(path=str(directory)), cfg.engine)
        meta = directory / "meta.json"
        if meta.exists():
            engine.policy_version = int(json.loads(meta.read_text())["version"])
        label = f"checkpoint {directory} (version {engine.policy_version})"
        return LoadedPolicy(engine, label, untrained=False)
    engine = make_engine(cfg.policy, cfg.engine)
    if cfg.policy.path:
        return LoadedPolicy(engine, f"policy.path={cfg.policy.path}", untrained=False)
    label = (
        f"untrained: a fresh '{cfg.policy.name}' policy from policy.* "
        "(checkpoint=RUN_OR_CHECKPOINT_DIR evaluates a trained one)"
    )
    return LoadedPolicy(engine, label, untrained=True)


def _sampling_config(cfg, given: TextSamplingConfig | None) -> TextSamplingConfig:
    if given is not None:
        return given
    # ``sampling`` is the root config's text-sampling group once it has one; until then the
    # defaults of TextSamplingConfig apply.
    if "sampling" in cfg:
        return TextSamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    return TextSamplingConfig()


def _check(cfg, s: TextSamplingConfig) -> None:
    if cfg.games < 1:
        raise UserError(f"games={cfg.games}: must be >= 1 (the number of held-out problems)")
    if s.k < 1:
        raise UserError(f"sampling.k={s.k}: must be >= 1")
    if s.temperature < 0:
        raise UserError(f"sampling.temperature={s.temperature}: must be >= 0")
    if not 0 < s.top_p <= 1:
        raise UserError(f"sampling.top_p={s.top_p}: must be in (0, 1]")
    if s.max_tokens < 1 or s.step_max_tokens < 1:
        raise UserError("sampling.max_tokens and sampling.step_max_tokens must be >= 1")


def _test_env_factory(env_cfg, wrap: Callable = lambda env: env) -> Callable:
    """Held-out envs, passed through ``wrap`` (the configured AI feedback on the reward)."""

    def make():
        try:
            return wrap(build_env(env_cfg, split="test"))
        except UserError as err:
            raise UserError(
                f"{err}\n(eval on a text task uses the env's held-out split: it must take "
                "split='test')"
            ) from None
        except (ValueError, FileNotFoundError) as err:  # e.g. a dataset with no test problems
            raise UserError(f"env {env_cfg.id} (split=test): {err}") from None

    return make


def feedback_wrapper(cfg, policy_engine: Engine) -> Callable:
    """Wraps an env with the sources of ``cfg.feedback`` (a judge with no path of its own
    judges with the policy's engine), so the reported mean reward includes AI feedback."""
    from selfplay.feedback.wrapper import wrap_with_feedback
    from selfplay.policy.factory import make_engine

    engines: dict[str, Engine] = {}

    def engine_for(path: str) -> Engine:
        if not path:
            return policy_engine
        if path not in engines:
            engines[path] = make_engine(PolicyConfig(path=path), cfg.engine)
        return engines[path]

    return lambda env: wrap_with_feedback(env, cfg.feedback, engine_for)


def eval_text(cfg, *, sampling: TextSamplingConfig | None = None) -> int:
    from tqdm import tqdm

    from selfplay.textgen.rollout import is_multi_step

    s = _sampling_config(cfg, sampling)
    _check(cfg, s)
    probe = _test_env_factory(cfg.env)()
    multi = is_multi_step(probe)
    probe.close()
    policy = load_policy(cfg)
    env_factory = _test_env_factory(cfg.env, feedback_wrapper(cfg, policy.engine))
    from selfplay.rollout.modes import text_sampling

    params = text_sampling(s, multi, seed=cfg.run.seed)
    seeds = [cfg.run.seed + i for i in range(cfg.games)]
    # Enough problems per rollout to fill the engine's batch, few enough for the bar to move.
    per_batch = max(1, int(cfg.engine.max_batch_size) // s.k)
    with tqdm(
        total=len(seeds), desc="problems", unit="problem", disable=not cfg.run.progress
    ) as bar:
        try:
            result = evaluate_text_policy(
                env_factory, policy.engine, seeds, s.k, params,
                batch_problems=per_batch, on_batch=bar.update,
            )  # fmt: skip
        except EngineInputError as err:  # e.g. a problem longer than the policy's context
            raise UserError(
                f"{cfg.env.id}: the policy cannot read a held-out problem: {err} "
                "(a longer policy.max_seq_len for a fresh policy, or easier problems)"
            ) from None

    print(
        f"{cfg.env.id} (split=test): {result.problems} problems x {result.k} samples, "
        f"temperature {s.temperature}{', one reasoning step per action' if multi else ''}"
    )
    print(f"policy: {policy.label}")
    print("search: not used on text tasks (sampling only; search.num_simulations ignored)")
    rows = [(f"pass@{j}", v) for j, v in result.pass_at.items()]
    rows += [(f"maj@{result.k}", result.majority), ("mean reward", result.mean_reward)]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value:.3f}")
    line = {
        "env": cfg.env.id,
        "split": "test",
        "policy": policy.label,
        "policy_version": int(policy.engine.policy_version),
        "untrained": policy.untrained,
        "temperature": s.temperature,
        **result.to_dict(),
    }
    print(json.dumps(line))
    return 0


__all__ = [
    "ProblemResult",
    "TextEvalResult",
    "eval_text",
    "evaluate_text_policy",
    "load_policy",
    "majority_correct",
    "pass_ks",
    "problem_results",
    "text_eval_metrics",
]
