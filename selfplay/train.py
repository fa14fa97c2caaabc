"""`selfplay train`: long-running online AlphaZero training on Ray.

    selfplay train env=tictactoe run.dir=runs/ttt run.budget_minutes=5
    selfplay train run.dir=runs/ttt run.resume=true          # continue where it stopped
    selfplay train ray.address=auto ...                       # join a cluster: same code path

Actors (Ray): N rollout workers play batches of self-play games with the incumbent version and
MCTS; one replay actor persists episodes (Parquet shards) and samples decisions; one learner
steps on them and publishes a candidate version on the ``learner.publish_every`` cadence; one
evaluator gates each candidate against the incumbent and rates versions against reference
players (Elo). The driver below only routes work between them and writes metrics.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from selfplay.errors import UserError
from selfplay.learner.cadence import Cadence


@dataclass
class Progress:
    """What the driver knows of the run; printed on the terminal and written as metrics."""

    started: float = field(default_factory=time.time)
    episodes: int = 0
    decisions: int = 0
    learner_step: int = 0
    version: int = 0
    incumbent: int = 0
    last_publish_step: int = 0
    last_publish_time: float = field(default_factory=time.time)
    last_eval_step: int = -(10**9)
    last_eval_time: float = 0.0
    unbeaten: bool = False


def _cadence(text: str, key: str) -> Cadence:
    try:
        return Cadence.parse(text, key=key)
    except ValueError as err:
        raise UserError(str(err)) from None


def _check_config(cfg) -> None:
    if cfg.run.num_actors < 1:
        raise UserError(f"run.num_actors={cfg.run.num_actors}: need at least one rollout actor")
    if cfg.run.games_per_actor < 1:
        raise UserError(f"run.games_per_actor={cfg.run.games_per_actor}: must be >= 1")
    if cfg.search.kind != "mcts":
        raise UserError("search.kind: AlphaZero training needs search=mcts (its visit counts are the targets)")
    run_dir = Path(cfg.run.dir)
    if run_dir.exists() and any(run_dir.glob("checkpoints/version-*")) and not cfg.run.resume:
        raise UserError(
            f"run.dir={run_dir} already holds a run; pass run.resume=true to continue it "
            "or choose another run.dir"
        )


def init_ray(cfg) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True)


def train_main(cfg) -> int:
    _check_config(cfg)
    summary = train(cfg)
    print(summary_text(cfg, summary))
    return 0


def train(cfg) -> dict[str, Any]:
    """Run the training job to its budget; returns a summary (also written to summary.json)."""
    import ray

    from selfplay.atomic import atomic_write_json
    from selfplay.metrics import MetricsWriter, ProgressDisplay
    from selfplay.replay.actor import remote_replay_actor
    from selfplay.workers import EvaluatorWorker, LearnerWorker, RolloutWorker

    run_dir = Path(cfg.run.dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    publish_every = _cadence(cfg.learner.publish_every, "learner.publish_every")
    eval_every = _cadence(cfg.run.eval_every, "run.eval_every")
    init_ray(cfg)

    replay = remote_replay_actor(
        str(run_dir), cfg.learner.replay_window, cfg.learner.max_staleness,
        cfg.learner.prioritized, resume=cfg.run.resume,
    )
    learner = ray.remote(LearnerWorker).options(num_cpus=0).remote(plain_cfg, str(run_dir), replay)
    evaluator = ray.remote(EvaluatorWorker).options(num_cpus=0).remote(plain_cfg, str(run_dir))
    actors = [
        ray.remote(RolloutWorker).options(num_cpus=0).remote(plain_cfg, i)
        for i in range(cfg.run.num_actors)
    ]
    state = ray.get(learner.state.remote())
    progress = Progress(version=state["version"], incumbent=state["incumbent"],
                        learner_step=state["step"], last_publish_step=state["step"])
    progress.episodes = ray.get(replay.stats.remote())["episodes"]
    incumbent_weights = ray.get(learner.weights_of.remote(progress.incumbent))
    ray.get([a.set_weights.remote(incumbent_weights, progress.incumbent) for a in actors])
    incumbent_ref = ray.put(incumbent_weights)

    metrics = MetricsWriter(run_dir / "tensorboard")
    display = ProgressDisplay(cfg.run.budget_minutes, cfg.run.budget_steps, enabled=cfg.run.progress)
    seed = cfg.run.seed * 1_000_003 + progress.learner_step
    plays = {a.play.remote(cfg.run.games_per_actor, seed + i): a for i, a in enumerate(actors)}
    seed += len(actors)
    training = None  # the learner's in-flight batch of steps
    gating = None  # (future, candidate version, candidate weights ref)
    evaluating = None
    stop_reason = ""
    deadline = progress.started + 60 * cfg.run.budget_minutes if cfg.run.budget_minutes > 0 else None
    steps_per_call = 4
    try:
        while True:
            now = time.time()
            if deadline and now >= deadline:
                stop_reason = "budget_minutes"
            elif cfg.run.budget_steps and progress.learner_step >= cfg.run.budget_steps:
                stop_reason = "budget_steps"
            elif progress.unbeaten and cfg.run.stop_when_unbeaten:
                stop_reason = "unbeaten"
            if stop_reason:
                break
            waiting = list(plays) + [f for f in (training, gating and gating[0], evaluating) if f]
            done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in done:
                if ref in plays:
                    actor = plays.pop(ref)
                    episodes = ray.get(ref)
                    progress.decisions = ray.get(replay.add.remote(episodes))
                    progress.episodes += len(episodes)
                    metrics.episodes(episodes, progress.learner_step)
                    plays[actor.play.remote(cfg.run.games_per_actor, seed)] = actor
                    seed += 1
                elif ref is training:
                    training = None
                    results = ray.get(ref)
                    progress.learner_step += len(results)
                    metrics.learner(results, progress.learner_step)
                elif gating and ref is gating[0]:
                    verdict = ray.get(ref)
                    candidate, cand_ref = gating[1], gating[2]
                    gating = None
                    metrics.scalar("arena/gate_score", verdict["score"], progress.learner_step)
                    if verdict["accepted"]:
                        progress.incumbent = candidate
                        incumbent_ref = cand_ref
                        ray.get(learner.set_incumbent.remote(candidate))
                        # Actors switch versions between games: the next play call uses it.
                        for a in actors:
                            a.set_weights.remote(incumbent_ref, candidate)
                    verb = "accepted" if verdict["accepted"] else "rejected"
                    display.note(f"v{candidate} {verb} (score {verdict['score']:.2f} vs the incumbent)")
                elif ref is evaluating:
                    evaluating = None
                    results = ray.get(ref)
                    ratings = ray.get(evaluator.ratings.remote())
                    progress.unbeaten = metrics.arena(results, ratings, progress.learner_step,
                                                      cfg.run.stop_when_unbeaten)
            # The learner starts once the store holds enough decisions, and keeps a bounded
            # ratio of learner steps to new episodes so it does not overfit a small store.
            if training is None and progress.decisions >= cfg.learner.min_replay_steps and ray.get(
                    replay.num_decisions.remote(progress.incumbent)) > 0:
                allowed = cfg.learner.max_steps_per_episode_ratio * max(progress.episodes, 1)
                if progress.learner_step < allowed:
                    training = learner.train.remote(steps_per_call, seed)
                    seed += steps_per_call
            now = time.time()
            if (gating is None and training is None
                    and publish_every.due(progress.learner_step - progress.last_publish_step,
                                          now - progress.last_publish_time)
                    and progress.learner_step > progress.last_publish_step):
                version, weights = ray.get(learner.publish.remote())
                progress.version = version
                progress.last_publish_step, progress.last_publish_time = progress.learner_step, now
                cand_ref = ray.put(weights)
                gating = (evaluator.gate.remote(cand_ref, version, incumbent_ref, progress.incumbent, seed),
                          version, cand_ref)
                seed += 1
            if (evaluating is None
                    and eval_every.due(progress.learner_step - progress.last_eval_step,
                                       now - progress.last_eval_time)):
                progress.last_eval_step, progress.last_eval_time = progress.learner_step, now
                evaluating = evaluator.evaluate.remote(incumbent_ref, progress.incumbent,
                                                       cfg.arena.eval_games, seed)
                seed += 1
            display.update(progress)
    finally:
        display.close()
    # Final: a checkpoint of the last weights, and one evaluation of the incumbent.
    ray.get(learner.checkpoint.remote())
    final = ray.get(evaluator.evaluate.remote(incumbent_ref, progress.incumbent, cfg.arena.eval_games, seed))
    ratings = ray.get(evaluator.ratings.remote())
    metrics.arena(final, ratings, progress.learner_step, cfg.run.stop_when_unbeaten)
    metrics.close()
    summary = {
        "run_dir": str(run_dir),
        "stop_reason": stop_reason,
        "seconds": time.time() - progress.started,
        "episodes": progress.episodes,
        "decisions": progress.decisions,
        "learner_steps": progress.learner_step,
        "latest_version": progress.version,
        "incumbent_version": progress.incumbent,
        "final_evaluation": final,
        "elo": ratings,
    }
    atomic_write_json(run_dir / "summary.json", summary)
    for a in actors:
        ray.kill(a)
    for handle in (learner, evaluator, replay):
        ray.kill(handle)
    return summary


def summary_text(cfg, summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"run finished ({summary['stop_reason']}) after {summary['seconds']:.0f} s: "
        f"{summary['episodes']} episodes, {summary['learner_steps']} learner steps, "
        f"incumbent v{summary['incumbent_version']} (latest v{summary['latest_version']})",
    ]
    for r in summary["final_evaluation"]:
        lines.append(f"  {r['a']:>12} vs {r['b']:<12} W/D/L {r['wins']}/{r['draws']}/{r['losses']}")
    run_dir = summary["run_dir"]
    lines += [
        f"results:     {run_dir} (checkpoints/, episodes/, elo.json, elo.png, tensorboard/)",
        f"replay:      selfplay replay {run_dir}            # list episodes",
        f"             selfplay replay {run_dir} --show -1  # play the last one back",
        f"metrics:     tensorboard --logdir {run_dir}/tensorboard",
        f"play it:     selfplay play env.id={cfg.env.id} player={run_dir}",
    ]
    return "\n".join(lines)
