"""`selfplay train`: long-running online training on Ray, for games and text tasks alike.

    selfplay train env=tictactoe run.dir=runs/ttt run.budget_minutes=5
    selfplay train env=math learner=grpo run.warm_start=sft run.dir=runs/math
    selfplay train run.dir=runs/ttt run.resume=true          # continue where it stopped
    selfplay train ray.address=auto ...                       # join a cluster: same code path

Actors (Ray): N rollout workers produce episodes with the incumbent version (``rollout.mode``:
MCTS self-play on games, k samples per problem on text); one replay actor persists episodes
(Parquet shards) and samples decisions; one learner steps on them (``learner.loss``: AlphaZero,
GRPO, expert iteration, SFT) and publishes a candidate version on the ``learner.publish_every``
cadence; one evaluator gates each candidate against the incumbent and rates versions (reference
players for games, held-out pass@k for text; one Elo ladder). The driver below only routes work
between them and writes metrics; each worker gets its own typed slice of the config. What it
decides (pacing, cadences, the deadline, staleness) is made by small pure parts — Pacing, Schedule,
Deadline, IncumbentLineage — on an injected Clock, so those decisions are tested without Ray by
simulating weeks in seconds (tests/test_run_control.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfplay.clock import SYSTEM_CLOCK, Clock
from selfplay.errors import UserError
from selfplay.learner.cadence import Cadence, Deadline, Schedule
from selfplay.learner.config import check_learner_config
from selfplay.learner.staleness import IncumbentLineage
from selfplay.pacing import Pacing


def get_learner(ref) -> Any:
    """``ray.get`` of a learner call; a UserError it raised (a diverged run) ends the run as its
    own one line, not inside the remote traceback Ray wraps it in."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UserError):
            raise err.cause from None
        raise


SCHEDULE_FILENAME = "schedule.json"  # when the publishing cadence last fired (kept across resumes)


@dataclass
class Progress:
    """What the driver knows of the run; printed on the terminal and written as metrics."""

    started: float = 0.0  # unix seconds, on the driver's clock
    episodes: int = 0
    decisions: int = 0
    learner_step: int = 0
    version: int = 0
    incumbent: int = 0
    last_eval_version: int = -1
    unbeaten: bool = False


def _cadence(text: str, key: str) -> Cadence:
    try:
        return Cadence.parse(text, key=key)
    except ValueError as err:
        raise UserError(str(err)) from None


def _check_config(cfg):
    """Checks that need no Ray, so a bad config is one clear message rather than an actor's
    traceback; returns each worker's typed config."""
    from selfplay.arena.config import check_arena_config
    from selfplay.build import build_env, game_of

    if cfg.run.num_actors < 1:
        raise UserError(f"run.num_actors={cfg.run.num_actors}: need at least one rollout actor")
    if cfg.run.games_per_actor < 1:
        raise UserError(f"run.games_per_actor={cfg.run.games_per_actor}: must be >= 1")
    if cfg.learner.max_staleness < 0:
        raise UserError(f"learner.max_staleness={cfg.learner.max_staleness}: must be >= 0 "
                        "(0 keeps every decision in the window)")
    _cadence(cfg.learner.publish_every, "learner.publish_every")  # before Ray starts
    _cadence(cfg.run.eval_every, "run.eval_every")
    # The env before the workers' module (torch, the policy) is even imported: a bad env id,
    # kwarg or dataset line is one message within a second or two.
    env = build_env(cfg.env)
    check_arena_config(cfg.arena, game_of(env))  # a typo in arena.opponents, before Ray
    env.close()
    from selfplay.workers import worker_configs

    workers = worker_configs(cfg)
    if workers.keep == "searched" and cfg.search.kind != "mcts":
        raise UserError(f"search.kind: learner.loss={workers.learner.loss} trains on search "
                        "statistics and needs search=mcts")
    step_search = workers.rollout.mode == "step_search"
    if workers.kind == "text" and workers.keep == "searched" and not step_search:
        raise UserError(f"learner.loss={workers.learner.loss} trains on search statistics, which "
                        f"sampled text episodes do not have; for {cfg.env.id} use learner=grpo, "
                        "learner=expert_iteration or learner=sft (or search its reasoning "
                        "steps: rollout.mode=step_search)")
    if step_search and workers.keep not in ("searched", "best_of_group"):
        raise UserError(f"rollout.mode=step_search records search statistics over sibling steps "
                        f"and the chosen steps, not sampled tokens with their probabilities: "
                        f"learner.loss={workers.learner.loss} cannot train on them; use "
                        "learner=alphazero (over sibling steps), learner=dpo (the best sibling "
                        "over the worst) or learner=expert_iteration (on the verified paths)")
    if step_search and workers.kind != "text":
        raise UserError(f"rollout.mode=step_search is for multi-step text tasks; {cfg.env.id} is "
                        "a game (its search is rollout.mode=game_selfplay)")
    if workers.kind == "game" and workers.keep != "searched":
        raise UserError(f"learner.loss={workers.learner.loss} trains on sampled tokens; "
                        f"{cfg.env.id} is a game: use learner=alphazero (or learner=default) "
                        "or learner=dpo")
    _check_reference_mix(cfg, workers)
    if cfg.learner.augment_symmetries:
        _check_symmetries(cfg, workers.kind)
    if cfg.feedback.retrain_every:
        _check_retraining(cfg, workers)
    if cfg.run.warm_start not in ("none", "sft"):
        raise UserError(f"run.warm_start={cfg.run.warm_start!r}: known values are none, sft")
    if cfg.run.warm_start != "none" and workers.kind == "game":
        raise UserError("run.warm_start=sft needs a text task with reference solutions")
    check_learner_config(cfg.learner)
    from selfplay.search.config import check_leaf_value, check_playout_cap, check_search_root

    check_playout_cap(cfg.search)
    check_search_root(cfg.search)
    check_leaf_value(cfg.search)
    from selfplay.replay.actor import check_replay_keys

    check_replay_keys(cfg.learner.priority_beta, cfg.learner.replay_compact_fanout)
    if cfg.learner.kl_reference not in ("start", "incumbent"):
        raise UserError(f"learner.kl_reference={cfg.learner.kl_reference!r}: start or incumbent")
    run_dir = Path(cfg.run.dir)
    if run_dir.exists() and any(run_dir.glob("checkpoints/version-*")) and not cfg.run.resume:
        raise UserError(
            f"run.dir={run_dir} already holds a run; pass run.resume=true to continue it "
            "or choose another run.dir"
        )
    return workers


def _check_reference_mix(cfg, workers) -> None:
    mix, apart = cfg.rollout.reference_mix, cfg.rollout.reference_problems
    if not 0.0 <= mix <= 1.0:
        raise UserError(f"rollout.reference_mix={mix}: a fraction of the groups, in [0, 1]")
    if apart < 0:
        raise UserError(f"rollout.reference_problems={apart}: a number of problems (0 = the "
                        "group's own problem's reference)")
    if mix == 0:
        if apart > 0:
            raise UserError("rollout.reference_problems sets where the mixed-in references come "
                            "from; it needs rollout.reference_mix > 0")
        return
    if workers.rollout.mode != "sample_groups":
        raise UserError(f"rollout.reference_mix mixes reference solutions into sampled groups; "
                        f"rollout.mode={workers.rollout.mode} samples none (use "
                        "rollout.mode=sample_groups, or rollout.mode=reference for references only)")
    from selfplay.learner.losses import get_loss

    if not get_loss(workers.learner.loss).demonstrations:
        raise UserError(f"rollout.reference_mix: learner.loss={workers.learner.loss} cannot train on "
                        "written solutions (a policy gradient needs each token's sampling "
                        "probability, and a written solution has none); use "
                        "learner=expert_iteration or learner=sft")


def _check_symmetries(cfg, kind: str) -> None:
    """``learner.augment_symmetries`` needs a game that declares symmetries beyond the identity."""
    from envs.protocol import symmetries_of
    from selfplay.build import build_env, game_of

    if kind != "game":
        raise UserError(f"learner.augment_symmetries=true: {cfg.env.id} is a text task; "
                        "augmentation is by the symmetries of a game's board")
    env = build_env(cfg.env)
    count = len(symmetries_of(game_of(env)))
    env.close()
    if count < 2:
        raise UserError(f"learner.augment_symmetries=true: {cfg.env.id} declares no symmetries "
                        "(a game lists them in a symmetries() method; envs/games/symmetry.py "
                        "builds mirrors and rotations)")


QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "TOKENIZERS_PARALLELISM": "false"}


def init_ray(cfg) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    # Workers inherit these on a cluster too: no per-checkpoint progress bars in the logs.
    runtime_env = {"env_vars": dict(QUIET_ENV)}
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, log_to_driver=True, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env=runtime_env)


def train_main(cfg) -> int:
    summary = train(cfg)
    print(summary_text(cfg, summary))
    return 0


def train(cfg, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Run the training job to its budget; returns a summary (also written to summary.json)."""
    from selfplay.resume import save_run_config

    workers = _check_config(cfg)
    run_dir = Path(cfg.run.dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Before Ray starts: a frozen key changed on resume is one message, not a half-started run.
    save_run_config(cfg, run_dir, resume=cfg.run.resume, kind=workers.kind, clock=clock)
    init_ray(cfg)
    driver = Driver(cfg, workers, run_dir, clock)
    try:
        driver.loop()
    finally:
        driver.display.close()
    return driver.finish()


def _check_retraining(cfg, workers) -> None:
    """``feedback.retrain_every`` needs a text task and a reward model to retrain."""
    f = cfg.feedback
    _cadence(f.retrain_every, "feedback.retrain_every")
    if workers.kind != "text":
        raise UserError(f"feedback.retrain_every: {cfg.env.id} is a game; the reward model is "
                        "retrained on a text task's verified samples")
    if workers.reward_model is None:
        raise UserError("feedback.retrain_every needs a feedback source of kind reward_model with "
                        "a path (the reward model to retrain), e.g. feedback=reward_model "
                        "feedback.sources.0.path=DIR")
    if not 0.0 < f.retrain_held_out < 1.0:
        raise UserError(f"feedback.retrain_held_out={f.retrain_held_out}: must be in (0, 1)")
    for key in ("retrain_episodes", "retrain_steps", "retrain_batch_size"):
        if getattr(f, key) < 1:
            raise UserError(f"feedback.{key}={getattr(f, key)}: must be >= 1")
    if f.retrain_lr <= 0:
        raise UserError(f"feedback.retrain_lr={f.retrain_lr}: must be > 0")


def pacing_ratio(cfg, kind: str) -> float:
    """Learner draws per self-play move that pacing holds to. Pacing counts every move, but with
    playout-cap randomisation only a ``search.full_search_prob`` share of a game's moves are
    training targets: scaled by it, each target is still drawn ``samples_per_decision`` times
    on average (unscaled, a quarter of full searches would be drawn four times as often)."""
    ratio = cfg.learner.samples_per_decision
    if kind == "game" and cfg.search.full_search_prob < 1.0:
        ratio *= cfg.search.full_search_prob
    return ratio


class Driver:
    """Routes work between the actors. Every remote call is asynchronous; the loop waits on
    whichever finishes first and reacts to it, so no actor waits on another without need."""

    def __init__(self, cfg, workers, run_dir: Path, clock: Clock = SYSTEM_CLOCK):
        import ray

        from selfplay.metrics import MetricsWriter, ProgressDisplay
        from selfplay.placement import actor_resources
        from selfplay.replay.actor import remote_replay_actor
        from selfplay.workers import EvaluatorWorker, LearnerWorker, RolloutWorker

        self.cfg, self.run_dir, self.clock = cfg, run_dir, clock
        publish_every = _cadence(cfg.learner.publish_every, "learner.publish_every")
        eval_every = _cadence(cfg.run.eval_every, "run.eval_every")
        self.pacing = Pacing(pacing_ratio(cfg, workers.kind), cfg.learner.batch_size,
                             cfg.learner.min_replay_steps)
        self.kind = workers.kind
        # The actors a run has one of live on the head node (Ray's own head-node resource): a
        # lost worker node then costs only rollout actors, which replace_actor replaces.
        here = {"resources": {"node:__internal_head__": 0.001}}
        self.replay = remote_replay_actor(
            str(run_dir), cfg.learner.replay_window, cfg.learner.max_staleness,
            cfg.learner.prioritized, keep=workers.keep, resume=cfg.run.resume,
            priority_beta=cfg.learner.priority_beta,
            compact_fanout=cfg.learner.replay_compact_fanout, extra_options=here,
            augment_env=cfg.env if cfg.learner.augment_symmetries else None,
        )
        # num_cpus=0: on a 2-core laptop reserving a core per actor would leave none to start
        # the others; the OS shares the cores, and pacing (below) keeps the work balanced.
        gpus = actor_resources(cfg)  # {"num_gpus": ...} per role: selfplay/placement.py
        self.learner = ray.remote(LearnerWorker).options(num_cpus=0, **gpus["learner"], **here).remote(workers.learner, self.replay)
        self.evaluator = ray.remote(EvaluatorWorker).options(num_cpus=0, **gpus["evaluator"], **here).remote(workers.evaluator)
        self.make_rollout_actor = lambda i: ray.remote(RolloutWorker).options(num_cpus=0, **gpus["rollout"]).remote(workers.rollout, i)
        self.actors = [self.make_rollout_actor(i) for i in range(cfg.run.num_actors)]
        self.actor_failures = 0
        self.reward_model = None  # the reward-model retrainer (feedback.retrain_every)
        self.retraining = None  # its in-flight retrain call
        self.reward_model_path: str | None = None  # a retrained version the actors score with
        if workers.reward_model is not None:
            from selfplay.feedback.retrain_worker import RewardModelWorker

            self.reward_model_source = workers.reward_model.source
            self.reward_model = ray.remote(RewardModelWorker).options(num_cpus=0, **here).remote(
                workers.reward_model)
            version, path = ray.get(self.reward_model.current.remote())
            if version > 0:  # a resumed run scores with its last retrained version
                self.reward_model_path = path
                ray.get([a.set_reward_model.remote(self.reward_model_source, path)
                         for a in self.actors])
        state = ray.get(self.learner.state.remote())
        self.progress = Progress(started=clock.now(), version=state["version"],
                                 incumbent=state["incumbent"], learner_step=state["step"])
        # A resumed run keeps its publishing grid (a weekly publish stays weekly across a crash)
        # and its lineage of incumbents (staleness counts the same generations).
        anchor = read_publish_anchor(run_dir) if cfg.run.resume else None
        self.publish = Schedule(publish_every, clock, last_step=state["step"],
                                last_time=self.progress.started if anchor is None else anchor)
        self.evaluation = Schedule(eval_every, clock)  # due at once: the starting incumbent
        self.retrain_schedule = (
            Schedule(_cadence(cfg.feedback.retrain_every, "feedback.retrain_every"), clock,
                     last_step=state["step"], last_time=self.progress.started)
            if self.reward_model is not None else None)
        self.lineage = (IncumbentLineage.load(run_dir, state["incumbent"]) if cfg.run.resume
                        else IncumbentLineage(sorted({0, state["incumbent"]})))
        self.learner_starved = False  # the last check found nothing fresh enough to sample
        stats = ray.get(self.replay.stats.remote())
        self.progress.episodes, self.progress.decisions = stats["episodes"], stats["steps"]
        self.incumbent_ref = ray.put(ray.get(self.learner.weights_of.remote(self.progress.incumbent)))
        ray.get([a.set_weights.remote(self.incumbent_ref, self.progress.incumbent) for a in self.actors])
        self.metrics = MetricsWriter(run_dir / "tensorboard")
        for name, value in state.get("warm_start", {}).items():
            self.metrics.scalar(name, value, 0)
        self.display = ProgressDisplay(cfg.run.budget_minutes, cfg.run.budget_steps,
                                       enabled=cfg.run.progress)
        self.seed = cfg.run.seed * 1_000_003 + self.progress.learner_step
        self.plays: dict[Any, Any] = {}  # in-flight play call -> actor
        self.idle = list(self.actors)  # actors held back by pacing
        self.training = None  # in-flight call of learner steps
        self.gating = None  # (in-flight gate call, candidate version, candidate weights ref)
        self.evaluating = None  # in-flight evaluation against the references
        self.stop_reason = ""
        self.deadline = Deadline.after_minutes(clock, cfg.run.budget_minutes, self.progress.started)

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    # -- the loop ------------------------------------------------------------------------------

    def loop(self) -> None:
        import ray

        while not self.should_stop():
            self.maybe_play()
            waiting = list(self.plays) + [
                f for f in (self.training, self.gating and self.gating[0], self.evaluating,
                            self.retraining) if f]
            done, _ = ray.wait(waiting, num_returns=1, timeout=1.0) if waiting else ([], [])
            for ref in done:
                if ref in self.plays:
                    self.on_episodes(ref)
                elif ref is self.training:
                    self.on_learner_steps(ref)
                elif self.gating and ref is self.gating[0]:
                    self.on_gate(ref)
                elif ref is self.evaluating:
                    self.on_evaluation(ref)
                elif ref is self.retraining:
                    self.on_retrained(ref)
            self.maybe_publish()
            self.maybe_evaluate()
            self.maybe_retrain()
            self.maybe_train()
            self.display.update(self.progress)

    def should_stop(self) -> bool:
        p, run = self.progress, self.cfg.run
        if self.deadline.passed():
            self.stop_reason = "budget_minutes"
        elif run.budget_steps and p.learner_step >= run.budget_steps:
            self.stop_reason = "budget_steps"
        elif p.unbeaten and run.stop_when_unbeaten:
            self.stop_reason = f"unbeaten by {run.stop_when_unbeaten}"
        return bool(self.stop_reason)

    # -- pacing (selfplay/pacing.py) -------------------------------------------------------------

    def actors_may_play(self) -> bool:
        p = self.progress
        return self.pacing.actors_may_play(p.decisions, p.learner_step, not self.learner_starved)

    def learner_may_step(self) -> bool:
        return self.pacing.learner_may_step(self.progress.decisions, self.progress.learner_step)

    # -- events --------------------------------------------------------------------------------

    def maybe_play(self) -> None:
        while self.idle and self.actors_may_play():
            actor = self.idle.pop()
            self.plays[actor.play.remote(self.cfg.run.games_per_actor, self.next_seed())] = actor

    def on_episodes(self, ref) -> None:
        import ray

        actor = self.plays.pop(ref)
        try:
            episodes = ray.get(ref)
        except ray.exceptions.RayError as err:
            self.replace_actor(actor, err)
            return
        self.idle.append(actor)
        self.progress.decisions = ray.get(self.replay.add.remote(episodes))
        self.progress.episodes += len(episodes)
        self.metrics.episodes(episodes, self.progress.learner_step)

    def replace_actor(self, actor, err: Exception) -> None:
        """A failed rollout actor loses only its games in flight: a fresh one takes its place
        (a week-long run must not end on one bad batch); too many failures end the run."""
        import ray

        self.actor_failures += 1
        first_line = str(err).strip().splitlines()[-1][:300] if str(err).strip() else repr(err)
        self.display.note(f"rollout actor failed ({self.actor_failures}/"
                          f"{self.cfg.run.max_actor_failures}): {first_line}")
        if self.actor_failures > self.cfg.run.max_actor_failures:
            raise RuntimeError(f"rollout actors failed {self.actor_failures} times; last: {err}")
        index = self.actors.index(actor)
        ray.kill(actor)
        fresh = self.make_rollout_actor(index)
        fresh.set_weights.remote(self.incumbent_ref, self.progress.incumbent)
        if self.reward_model_path is not None:
            fresh.set_reward_model.remote(self.reward_model_source, self.reward_model_path)
        self.actors[index] = fresh
        self.idle.append(fresh)

    def maybe_train(self) -> None:
        import ray

        if self.training is not None or not self.learner_may_step():
            return
        # Staleness counts accepted incumbents (selfplay/learner/staleness.py), not versions.
        sample_version = self.lineage.sample_version(self.cfg.learner.max_staleness)
        self.learner_starved = ray.get(self.replay.num_decisions.remote(sample_version)) == 0
        if self.learner_starved:
            return  # nothing fresh enough yet: pacing lets the actors play until there is
        steps = self.cfg.learner.steps_per_call
        if self.cfg.run.budget_steps:  # never step past the budget
            steps = min(steps, self.cfg.run.budget_steps - self.progress.learner_step)
        if steps <= 0:
            return
        self.training = self.learner.train.remote(steps, self.seed, sample_version)
        self.seed += steps

    def on_learner_steps(self, ref) -> None:
        self.training = None
        results = get_learner(ref)
        self.progress.learner_step += len(results)
        self.metrics.learner(results, self.progress.learner_step)

    def maybe_publish(self) -> None:
        import ray

        p = self.progress
        if self.gating is not None or self.training is not None or p.learner_step <= self.publish.last_step:
            return
        if not self.publish.due(p.learner_step):
            return
        version, weights = get_learner(self.learner.publish.remote())
        p.version = version
        self.publish.mark(p.learner_step)
        write_publish_anchor(self.run_dir, self.publish)
        candidate_ref = ray.put(weights)
        gate_call = self.evaluator.gate.remote(
            candidate_ref, version, self.incumbent_ref, p.incumbent, self.next_seed())
        self.gating = (gate_call, version, candidate_ref)

    def on_gate(self, ref) -> None:
        import ray

        verdict = ray.get(ref)
        _, candidate, candidate_ref = self.gating
        self.gating = None
        if verdict["result"] is not None:  # a gate was played
            self.metrics.scalar("arena/gate_score", verdict["score"], self.progress.learner_step)
            verb = "accepted" if verdict["accepted"] else "rejected"
            self.display.note(f"v{candidate} {verb}: score {verdict['score']:.2f} against "
                              f"v{self.progress.incumbent}")
        if verdict["accepted"]:
            self.progress.incumbent, self.incumbent_ref = candidate, candidate_ref
            ray.get(self.learner.set_incumbent.remote(candidate))
            self.lineage.accept(candidate)
            self.lineage.save(self.run_dir)
            # Actors switch versions between games: their next play call uses it.
            for actor in self.actors:
                actor.set_weights.remote(candidate_ref, candidate)

    def maybe_retrain(self) -> None:
        """Retrain the reward model on the newest episodes, on ``feedback.retrain_every``."""
        p = self.progress
        if (self.retrain_schedule is None or self.retraining is not None
                or p.learner_step <= (self.retrain_schedule.last_step or 0)
                or not self.retrain_schedule.due(p.learner_step)):
            return
        self.retrain_schedule.mark(p.learner_step)
        self.retraining = self.reward_model.retrain.remote(self.next_seed())

    def on_retrained(self, ref) -> None:
        import ray

        self.retraining = None
        result = ray.get(ref)
        step = self.progress.learner_step
        for key in ("accuracy_before", "accuracy_after", "train_pairs", "held_out_pairs"):
            value = result[key]
            if value == value:  # nan: no held-out pairs this time
                self.metrics.scalar(f"feedback/reward_model_{key}", value, step)
        if result["version"] < 0:
            self.display.note(f"reward model not retrained: no pairs in the newest "
                              f"{result['episodes']} episodes (every sample of a prompt scored alike)")
            return
        self.metrics.scalar("feedback/reward_model_version", result["version"], step)
        self.display.note(f"reward model v{result['version']}: held-out accuracy "
                          f"{result['accuracy_before']:.3f} -> {result['accuracy_after']:.3f} "
                          f"on {result['held_out_pairs']} pairs ({result['train_pairs']} trained)")
        self.reward_model_path = result["path"]
        for actor in self.actors:  # from their next play call on
            actor.set_reward_model.remote(self.reward_model_source, result["path"])

    def maybe_evaluate(self) -> None:
        p = self.progress
        if self.evaluating is not None or not self.evaluation.due(p.learner_step):
            return
        self.evaluation.mark(p.learner_step)
        if p.incumbent == p.last_eval_version:
            return  # the incumbent has not changed since its last evaluation: nothing new to learn
        p.last_eval_version = p.incumbent
        self.evaluating = self.evaluator.evaluate.remote(
            self.incumbent_ref, p.incumbent, self.cfg.arena.eval_games, self.next_seed())

    def on_evaluation(self, ref) -> None:
        import ray

        self.evaluating = None
        self.record_evaluation(ray.get(ref))

    def record_evaluation(self, results: list[dict], announce: bool = True) -> None:
        import ray

        ratings = ray.get(self.evaluator.ratings.remote())
        self.progress.unbeaten = self.metrics.arena(
            results, ratings, self.progress.learner_step, self.cfg.run.stop_when_unbeaten)
        for r in results if announce else ():
            self.display.note(f"eval v{self.progress.incumbent}: {result_line(r)}")

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Settle what is in flight, publish the last weights, evaluate once more, summarise."""
        import ray

        from selfplay.atomic import atomic_write_json

        p = self.progress
        if self.training is not None:
            self.on_learner_steps(self.training)
        if self.gating is not None:
            self.on_gate(self.gating[0])
        # The last weights become a version of their own: a published version's checkpoint is
        # never rewritten, and a resumed run continues from here.
        if p.learner_step > self.publish.last_step:
            p.version, _ = get_learner(self.learner.publish.remote())
        if self.evaluating is not None:
            ray.get(self.evaluating)
        final = ray.get(self.evaluator.evaluate.remote(
            self.incumbent_ref, p.incumbent, self.cfg.arena.eval_games, self.next_seed()))
        self.record_evaluation(final, announce=False)
        if self.retraining is not None:
            self.on_retrained(self.retraining)
        self.metrics.close()
        summary = {
            "run_dir": str(self.run_dir),
            "stop_reason": self.stop_reason,
            "seconds": self.clock.now() - p.started,
            "episodes": p.episodes,
            "decisions": p.decisions,
            "learner_steps": p.learner_step,
            "latest_version": p.version,
            "incumbent_version": p.incumbent,
            "final_evaluation": final,
            "elo": ray.get(self.evaluator.ratings.remote()),
        }
        if self.reward_model is not None:
            summary["reward_model_version"] = ray.get(self.reward_model.current.remote())[0]
            ray.kill(self.reward_model)
        atomic_write_json(self.run_dir / "summary.json", summary)
        for handle in [*self.actors, self.learner, self.evaluator, self.replay]:
            ray.kill(handle)
        return summary


def read_publish_anchor(run_dir: Path) -> float | None:
    """The boundary the publishing cadence last fired on, as saved by a session of this run."""
    path = Path(run_dir) / SCHEDULE_FILENAME
    try:
        return float(json.loads(path.read_text())["publish"]["last_time"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: cannot read the publishing schedule ({err}); move it away "
                        "to restart the cadence from now") from None


def write_publish_anchor(run_dir: Path, publish: Schedule) -> None:
    from selfplay.atomic import atomic_write_json

    atomic_write_json(Path(run_dir) / SCHEDULE_FILENAME, {"publish": publish.state()})


def summary_text(cfg, summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"run finished ({summary['stop_reason']}) after {summary['seconds']:.0f} s: "
        f"{summary['episodes']} episodes, {summary['learner_steps']} learner steps, "
        f"incumbent v{summary['incumbent_version']} (latest v{summary['latest_version']})",
    ]
    for r in summary["final_evaluation"]:
        lines.append(f"  {result_line(r)}")
    run_dir = summary["run_dir"]
    lines += [
        f"results:     {run_dir} (checkpoints/, episodes/, elo.json, elo.png, tensorboard/)",
        f"replay:      selfplay replay {run_dir}            # list episodes",
        f"             selfplay replay {run_dir} --show -1  # play the last one back",
        f"metrics:     tensorboard --logdir {run_dir}/tensorboard",
    ]
    # The env's module goes along: an adapter's or user's id is unknown until it is imported.
    env = f"env.id={cfg.env.id}" + (f" env.module={cfg.env.module}" if cfg.env.module else "")
    if "wins" in (summary["final_evaluation"] or [{"wins": 0}])[0]:
        lines.append(f"play it:     selfplay play {env} player={run_dir}")
    else:
        lines.append(f"eval it:     selfplay eval {env} checkpoint={run_dir}")
    return "\n".join(lines)


def result_line(r: dict[str, Any]) -> str:
    """One line of an evaluation result: a match (W/D/L) or held-out text metrics."""
    if "wins" in r:
        return f"{r['a']:>12} vs {r['b']:<12} W/D/L {r['wins']}/{r['draws']}/{r['losses']}"
    metrics = "  ".join(f"{k} {v:.3f}" for k, v in r.items()
                        if k.startswith(("pass@", "maj@")) or k == "mean_reward")
    return f"{r['a']:>12} on {r['b']:<12} {metrics}"
