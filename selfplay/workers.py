"""The Ray actors of a training run: rollout workers, the learner and the evaluator.

Each is a plain class (usable and testable without Ray) that ``train.py`` wraps with
``ray.remote``. Each receives its own typed sub-config (``RolloutWorkerConfig``,
``LearnerWorkerConfig``, ``EvaluatorWorkerConfig``, built by ``worker_configs``) and builds its
own components, so the same code runs in local Ray on a laptop and across a cluster. What differs
between games and text goes through three registries chosen by config: the rollout mode
(``selfplay.rollout.modes``), the loss (``selfplay.learner.losses``) and the arena
(``selfplay.arena``: games or text).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from selfplay.arena.config import ArenaConfig
from selfplay.arena.elo import EloLadder, plot_elo_curve
from selfplay.arena.game_arena import summarize  # noqa: F401 (re-exported)
from selfplay.atomic import atomic_write_json
from selfplay.build import build_env, env_kind
from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.feedback.config import FeedbackConfig
from selfplay.feedback.retrain_worker import (
    RewardModelWorkerConfig,
    retrained_source,
    with_reward_model,
)
from selfplay.learner.checkpoint import (
    CheckpointMeta,
    checkpoint_dir,
    latest_checkpoint,
    read_optimizer_state,
    remove_interrupted_writes,
    save_checkpoint,
)
from selfplay.learner.config import LearnerConfig, check_learner_config
from selfplay.learner.learner import Learner, NonFiniteTrainingError
from selfplay.learner.losses import DEFAULT_LOSS, get_loss
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.factory import make_engine
from selfplay.policy.model import PolicyModel, build_policy
from selfplay.rollout.config import RolloutConfig
from selfplay.rollout.modes import DEFAULT_MODE, make_rollout
from selfplay.search.config import SearchConfig
from selfplay.textgen.config import TextSamplingConfig
from selfplay.types import Episode

# ---- typed sub-configs --------------------------------------------------------------------------


@dataclass
class RolloutWorkerConfig:
    mode: str  # resolved rollout mode (never "auto")
    env: EnvConfig
    policy: PolicyConfig
    engine: EngineConfig
    search: SearchConfig
    sampling: TextSamplingConfig
    rollout: RolloutConfig
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)  # AI feedback added to a text task's reward in rollouts


@dataclass
class WarmStartConfig:
    kind: str  # none | sft
    problems: int
    steps: int
    lr: float
    unit: str = "decisions"  # decisions | solutions (RunConfig.warm_start_unit)


@dataclass
class LearnerWorkerConfig:
    run_dir: str
    resume: bool
    loss: str  # resolved loss name (never "auto")
    learner: LearnerConfig
    policy: PolicyConfig
    env: EnvConfig
    warm_start: WarmStartConfig
    kind: str = "game"  # "game" | "text": a text decision's state reaches the policy as prompt_of(observation)


@dataclass
class EvaluatorWorkerConfig:
    run_dir: str
    kind: str  # "game" | "text": which arena
    env: EnvConfig
    policy: PolicyConfig
    engine: EngineConfig
    search: SearchConfig
    arena: ArenaConfig
    sampling: TextSamplingConfig


@dataclass
class WorkerConfigs:
    kind: str  # "game" | "text"
    rollout: RolloutWorkerConfig
    learner: LearnerWorkerConfig
    evaluator: EvaluatorWorkerConfig
    keep: str  # which decisions the replay keeps for the loss
    reward_model: RewardModelWorkerConfig | None = None  # feedback.retrain_every set: who retrains


def worker_configs(cfg) -> WorkerConfigs:
    """Each worker's typed slice of the root config, with every "auto" resolved by env kind."""
    typed = OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg
    kind = env_kind(build_env(typed.env))
    mode = typed.rollout.mode if typed.rollout.mode != "auto" else DEFAULT_MODE[kind]
    # Step search records search statistics, as a game does: auto trains on them (alphazero).
    by_kind = "game" if mode == "step_search" else kind
    loss = typed.learner.loss if typed.learner.loss != "auto" else DEFAULT_LOSS[by_kind]
    try:
        keep = get_loss(loss).keep
    except ValueError as err:
        raise UserError(str(err)) from None
    run = typed.run
    source = retrained_source(typed.feedback)
    reward_model = (RewardModelWorkerConfig(str(Path(run.dir).resolve()), typed.feedback, source)
                    if typed.feedback.retrain_every and source is not None else None)
    return WorkerConfigs(
        kind=kind,
        rollout=RolloutWorkerConfig(mode, typed.env, typed.policy, typed.engine, typed.search,
                                    typed.sampling, typed.rollout, typed.feedback),
        learner=LearnerWorkerConfig(
            str(Path(run.dir).resolve()), run.resume, loss, typed.learner, typed.policy,
            typed.env, WarmStartConfig(run.warm_start, run.warm_start_problems,
                                       run.warm_start_steps, run.warm_start_lr,
                                       run.warm_start_unit), kind),
        evaluator=EvaluatorWorkerConfig(str(Path(run.dir).resolve()), kind, typed.env,
                                        typed.policy, typed.engine, typed.search, typed.arena,
                                        typed.sampling),
        keep=keep,
        reward_model=reward_model,
    )


def call(method: Any, *args: Any) -> Any:
    """Call a method of a Ray actor handle (and wait) or of a plain object, alike."""
    remote = getattr(method, "remote", None)
    if remote is None:
        return method(*args)
    import ray

    return ray.get(remote(*args))


class RolloutWorker:
    """Plays or samples episodes with the incumbent version, in the configured rollout mode."""

    def __init__(self, cfg: RolloutWorkerConfig, index: int):
        torch.set_num_threads(1)
        self.index = index
        self.cfg = cfg
        self.engine = make_engine(cfg.policy, cfg.engine)
        self.mode = make_rollout(cfg.mode, cfg, self.engine)
        self.version = -1

    def set_reward_model(self, source: int, path: str) -> str:
        """Score with the reward model at ``path`` (a retrained version) from the next play call
        on: the rollout is rebuilt around the same engine."""
        self.cfg = replace(self.cfg, feedback=with_reward_model(self.cfg.feedback, source, path))
        self.mode = make_rollout(self.cfg.mode, self.cfg, self.engine)
        if self.version >= 0:
            self.mode.on_weights(self.version)
        return path

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        self.engine.load_weights(weights, version)
        self.version = version
        self.mode.on_weights(version)
        return version

    def play(self, count: int, seed: int) -> list[Episode]:
        """``count`` games (or problems, each ``sampling.k`` times) with the loaded version."""
        if self.version < 0:
            raise RuntimeError("set_weights must be called before play")
        return self.mode.play(count, seed, f"rollout-{self.index}")


class LearnerWorker:
    """Owns the trainable weights; steps on replay batches; publishes and checkpoints versions.

    A fresh run with ``warm_start.kind == "sft"`` first trains on the env's reference solutions
    and checkpoints the result as version 0, so every version and every curve starts there."""

    def __init__(self, cfg: LearnerWorkerConfig, replay: Any):
        check_learner_config(cfg.learner)
        self.cfg = cfg
        torch.set_num_threads(cfg.learner.num_threads)
        self.run_dir = Path(cfg.run_dir)
        # The one writer of checkpoints/ clears a crash's half-written ones, before it writes.
        remove_interrupted_writes(self.run_dir)
        self.replay = replay
        model, tokenizer = build_policy(cfg.policy)
        self.version = 0
        self.incumbent = 0
        self.warm_start_metrics: dict[str, float] = {}
        found = latest_checkpoint(self.run_dir) if cfg.resume else None
        if found is not None:
            path, meta = found
            model = PolicyModel.load(str(path))
            tokenizer = model.tokenizer
            self.version = meta.version
            self.incumbent = read_incumbent(self.run_dir, meta.incumbent_version)
        elif cfg.warm_start.kind != "none":
            self.warm_start_metrics = warm_start(model, tokenizer, cfg)
        self.learner = Learner(model, tokenizer, cfg.learner, loss=cfg.loss,
                               text_decisions=cfg.kind == "text")
        if found is not None:
            self.resume_optimizer(*found)
        if found is None:
            self.checkpoint()  # version 0: the initial (or warm-started) weights, on disk
        if self.learner.loss.reference:
            self.learner.set_reference(self.weights_of(self.reference_version()))

    def resume_optimizer(self, path: Path, meta: CheckpointMeta) -> None:
        """The optimiser state of the checkpoint resumed from; a fresh optimiser (said in the
        log) where it was pruned or deleted."""
        state = read_optimizer_state(path)
        if state is None:
            self.learner.step = meta.learner_step
            print(f"learner: {path.name} has no optimizer state (pruned by "
                  f"learner.keep_optimizer_states, or deleted); resuming at learner step "
                  f"{meta.learner_step} with a fresh optimiser", flush=True)
            return
        try:
            self.learner.load_optimizer_state(state)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"{path / 'optimizer.pt'}: the optimiser state does not fit this "
                            f"learner ({err}); delete it to resume with a fresh optimiser") from None

    def reference_version(self) -> int:
        """The KL anchor: the version the run started from, or the incumbent."""
        return self.incumbent if self.cfg.learner.kl_reference == "incumbent" else 0

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "incumbent": self.incumbent, "step": self.learner.step,
                "warm_start": self.warm_start_metrics}

    def train(self, num_steps: int, seed: int, sample_version: int | None = None) -> list[dict[str, float]]:
        # sample_version: the version the replay's staleness filter measures from (the driver's,
        # counted in accepted incumbents: selfplay/learner/staleness.py); None: the incumbent.
        version = self.incumbent if sample_version is None else sample_version
        out = []
        for i in range(num_steps):
            batch = call(self.replay.sample, self.cfg.learner.batch_size, seed + i, version)
            result = self.learner.train_step(batch)
            self.send_priorities(batch)  # prioritized replay only (learner.prioritized)
            out.append({**result.metrics, "learner/step_seconds": result.seconds})
        return out

    def send_priorities(self, batch) -> None:
        """Prioritized replay: each drawn decision's value error after the step becomes its new
        priority (replay/sampler.py). Only a decision loss has a value target to measure."""
        if not self.cfg.learner.prioritized or self.learner.loss.batch != "decisions":
            return
        import numpy as np

        from selfplay.learner.batches import priority_updates
        from selfplay.replay.sampler import PRIORITY_EPS

        keys, errors = priority_updates(self.learner.model, self.learner.tokenizer,
                                        self.learner.decisions_view(batch))
        finite = np.isfinite(errors)  # a skipped non-finite step leaves those priorities as they were
        if finite.any():
            call(self.replay.update_priorities, [k for k, ok in zip(keys, finite) if ok],
                 (errors[finite] + PRIORITY_EPS).tolist())

    def publish(self) -> tuple[int, dict[str, torch.Tensor]]:
        """A new candidate version from the current weights (checkpointed before it is used)."""
        if not all(torch.isfinite(p).all() for p in self.learner.model.parameters()):
            # Skipped steps keep NaN out of the gradients; a step size can still blow the
            # weights up (learner.lr=inf). No actor may load them, no checkpoint keep them.
            raise NonFiniteTrainingError(
                f"learner: the weights are non-finite at learner step {self.learner.step}, so "
                f"version {self.version + 1} is not published; lower learner.lr")
        self.version += 1
        self.checkpoint()
        return self.version, self.learner.weights()

    def weights_of(self, version: int) -> dict[str, torch.Tensor]:
        if version == self.version:
            return self.learner.weights()
        model = PolicyModel.load(str(checkpoint_dir(self.run_dir, version)))
        return {k: v.detach() for k, v in model.state_dict().items()}

    def set_incumbent(self, version: int) -> None:
        self.incumbent = version
        atomic_write_json(self.run_dir / "incumbent.json", {"version": version, "at": time.time()})
        if self.learner.loss.reference and self.cfg.learner.kl_reference == "incumbent":
            self.learner.set_reference(self.weights_of(version))

    def checkpoint(self) -> str:
        meta = CheckpointMeta(self.version, self.learner.step, self.incumbent, time.time())
        path = save_checkpoint(
            self.run_dir, self.learner.model, self.learner.tokenizer,
            self.learner.optimizer_state(), meta, self.cfg.learner.keep_optimizer_states,
        )
        return str(path)


def warm_start(model: PolicyModel, tokenizer, cfg: LearnerWorkerConfig) -> dict[str, float]:
    """Supervised steps on the reference solutions of train problems 0..problems-1 (through the
    env's ``reference_actions``); returns the stage's metrics (written beside version 0)."""
    from dataclasses import replace

    from selfplay.replay.sampler import ReplaySampler
    from selfplay.rollout.reference import reference_episodes

    ws = cfg.warm_start
    if ws.kind != "sft":
        raise UserError(f"run.warm_start={ws.kind!r}: known values are none, sft")
    if ws.problems < 1 or ws.steps < 1:
        raise UserError("run.warm_start=sft needs run.warm_start_problems >= 1 and "
                        "run.warm_start_steps >= 1")
    if ws.unit not in ("decisions", "solutions"):
        raise UserError(f"run.warm_start_unit={ws.unit!r}: known values are decisions, solutions")
    started = time.perf_counter()
    try:
        episodes = reference_episodes(lambda: build_env(cfg.env), range(ws.problems), tokenizer)
    except ValueError as err:
        raise UserError(f"run.warm_start=sft: {err}") from None
    fitting = [ep for ep in episodes if fits_context(tokenizer, ep, model.config.max_position_embeddings)]
    if not fitting:
        raise UserError(f"run.warm_start=sft: no reference solution of {cfg.env.id} fits the "
                        f"policy's context ({model.config.max_position_embeddings} tokens); "
                        "a fresh policy takes policy.max_seq_len=...")
    sampler = ReplaySampler(window=10**7, keep="sampled")
    sampler.add(fitting)
    learner = Learner(model, tokenizer, replace(cfg.learner, lr=ws.lr, warmup_steps=10), loss="sft")
    metrics: dict[str, float] = {}
    steps = warm_start_step_count(ws, len(sampler), len(fitting))
    for step in range(steps):
        metrics = learner.train_step(sampler.sample(cfg.learner.batch_size, step)).metrics
    summary = {"warm_start/problems": float(len(fitting)),
               "warm_start/too_long": float(len(episodes) - len(fitting)),
               "warm_start/decisions": float(len(sampler)),
               "warm_start/steps": float(steps),
               "warm_start/final_nll": metrics.get("loss/nll", float("nan")),
               "warm_start/seconds": time.perf_counter() - started}
    atomic_write_json(Path(cfg.run_dir) / "warm_start.json", summary)
    return summary


def warm_start_step_count(ws: WarmStartConfig, decisions: int, solutions: int) -> int:
    """Learner steps of the warm start: ``ws.steps`` batches of decisions, or with
    ``unit=solutions`` as many batches as it takes to see ``ws.steps`` batches' worth of whole
    solutions (a multi-step env's solution is several decisions, its single-turn twin's is one)."""
    if ws.unit == "decisions" or solutions == 0:
        return ws.steps
    return max(ws.steps, round(ws.steps * decisions / solutions))


def fits_context(tokenizer, episode: Episode, max_len: int) -> bool:
    """Whether every step's prompt and tokens fit ``max_len`` positions."""
    from selfplay.policy.tokenizer import encode_prompts
    from selfplay.textgen.rollout import prompt_of

    prompts = encode_prompts(tokenizer, [prompt_of(st.observation) for st in episode.steps])
    return all(len(p) + len(st.tokens.ids) <= max_len for p, st in zip(prompts, episode.steps))


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows to a JSON-lines log, flushed to disk before returning (a crash can cut at
    most the line being written, which a reader skips)."""
    import os

    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_incumbent(run_dir: Path, default: int) -> int:
    path = Path(run_dir) / "incumbent.json"
    if path.exists():
        return int(json.loads(path.read_text())["version"])
    return default


class EvaluatorWorker:
    """Judges versions in the configured arena: gating a candidate against the incumbent and
    rating versions (reference players for games; held-out pass@k for text), on one Elo ladder."""

    def __init__(self, cfg: EvaluatorWorkerConfig):
        from selfplay.arena.registry import make_arena

        torch.set_num_threads(1)
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        engines = {slot: make_engine(cfg.policy, cfg.engine) for slot in ("candidate", "incumbent")}
        self.ladder = EloLadder.load(self.run_dir / "elo.json", anchor=cfg.arena.elo_anchor,
                                     prior_games=cfg.arena.elo_prior_games)
        self.arena = make_arena(cfg.kind, cfg, engines, self.ladder)

    def gate(self, cand_weights, cand_version: int, inc_weights, inc_version: int, seed: int) -> dict:
        verdict = self.arena.gate(cand_weights, cand_version, inc_weights, inc_version, seed)
        self.ladder.save()
        return verdict

    def evaluate(self, weights, version: int, games: int, seed: int) -> list[dict]:
        results = self.arena.evaluate(weights, version, games, seed)
        self.ladder.save()
        append_jsonl(self.run_dir / "evaluations.jsonl",
                     [{"version": version, "at": time.time(), **r} for r in results])
        try:
            plot_elo_curve(self.ladder, self.run_dir / "elo.png")
        except Exception as err:  # a plot must never stop training
            print(f"elo plot failed: {err}")
        return results

    def ratings(self) -> dict[str, float]:
        return self.ladder.ratings()
