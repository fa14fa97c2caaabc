"""Run control for week-long runs: staleness and pacing that cannot stall, wall-clock cadences on
an injected clock, an Elo ladder whose cost per record stays flat, what a resume may change, and
user-input errors from env construction as one block.

The driver's decisions are made by small pure parts (Pacing, IncumbentLineage, Schedule,
Deadline) that the tests below drive directly — the same objects ``selfplay/train.py`` calls, with
a real ReplaySampler and a FakeClock, so weeks of a run take a fraction of a second.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from selfplay.arena.elo import EloLadder, fit_elo
from selfplay.clock import FakeClock
from selfplay.errors import UserError
from selfplay.learner.cadence import Cadence, Deadline, Schedule
from selfplay.learner.staleness import IncumbentLineage
from selfplay.pacing import Pacing
from selfplay.replay.sampler import ReplaySampler
from selfplay.types import Episode, Step

REPO = Path(__file__).resolve().parent.parent
HOUR, DAY, WEEK = 3600.0, 86400.0, 604800.0


# ---- 1. staleness and pacing: no stall -----------------------------------------------------------


def _episode(name: str, version: int, steps: int = 4) -> Episode:
    return Episode(name, "selfplay/Sim-v0", 0, version,
                   [Step(f"{name}/{i}", "a", 0, 0.0) for i in range(steps)], 1.0, 0.0, 1.0)


def simulate(verdicts: list[bool], *, generations: bool, pacing_sees_starvation: bool,
             max_staleness: int = 1, target_steps: int = 120, ticks: int = 3000) -> dict:
    """The driver's loop with its pacing, staleness and publishing decisions, the actors and the
    learner reduced to what those decisions see: an actor adds a batch of decisions played by
    the incumbent; a learner step draws a real batch from a real ReplaySampler; every 5 steps a
    candidate is published and judged by the next verdict (True: accepted).

    ``generations`` measures staleness in accepted incumbents (the fix) rather than raw version
    numbers; ``pacing_sees_starvation`` lets actors play while the learner cannot sample."""
    pacing = Pacing(samples_per_decision=4.0, batch_size=8, min_replay_steps=16)
    sampler = ReplaySampler(window=100_000, max_staleness=max_staleness, keep="sampled")
    lineage = IncumbentLineage()
    publish = Schedule(Cadence.parse("5steps"), FakeClock(), last_step=0, last_time=0.0)
    verdicts = list(verdicts)
    decisions = learner_step = version = 0
    starved = False
    last_progress = 0
    for tick in range(ticks):
        if pacing.actors_may_play(decisions, learner_step, not starved or not pacing_sees_starvation):
            sampler.add([_episode(f"e{tick}", lineage.incumbent)])
            decisions += 4
        if pacing.learner_may_step(decisions, learner_step):
            current = lineage.sample_version(max_staleness) if generations else lineage.incumbent
            starved = sampler.num_eligible(current) == 0
            if not starved:
                batch = sampler.sample(8, rng=tick, current_version=current)
                if generations:  # nothing older than max_staleness incumbents back is drawn
                    assert batch.policy_versions.min() >= lineage.oldest_fresh(max_staleness)
                learner_step += 1
                last_progress = tick
        if learner_step > publish.last_step and publish.due(learner_step):
            version += 1
            publish.mark(learner_step)
            if verdicts.pop(0) if verdicts else True:
                lineage.accept(version)
        if learner_step >= target_steps:
            break
    return {"learner_step": learner_step, "idle_ticks": tick - last_progress,
            "lineage": lineage.versions, "version": version}


# Seven rejected candidates, then two acceptances in a row: the second comes before any actor
# has played the first (pacing holds them while the learner catches up), so every decision in
# the window is from v0 when v9 becomes the incumbent.
REJECTIONS_THEN_ACCEPTS = [False] * 7 + [True, True] + [False] * 3


def test_rejected_candidates_stall_a_run_that_counts_raw_versions():
    """The control: today's rule (staleness in version numbers, pacing blind to a starved
    learner) idles in this scenario for every tick that remains."""
    today = simulate(REJECTIONS_THEN_ACCEPTS, generations=False, pacing_sees_starvation=False)
    assert today["learner_step"] < 120 and today["idle_ticks"] > 2000


@pytest.mark.parametrize("generations, pacing_sees_starvation",
                         [(True, True), (False, True), (True, False)])
def test_rejected_candidates_cannot_stall_the_run(generations, pacing_sees_starvation):
    """Either fix alone ends this stall, as both together do; the pacing rule makes any stall
    impossible (only new episodes can feed a starved learner, and they are never held back)."""
    if not generations and not pacing_sees_starvation:
        pytest.skip("the control above")
    after = simulate(REJECTIONS_THEN_ACCEPTS, generations=generations,
                     pacing_sees_starvation=pacing_sees_starvation)
    assert after["learner_step"] == 120, after
    assert after["lineage"][:3] == [0, 8, 9]  # the scenario did happen: v1..v7 rejected


def test_pacing_never_waits_on_a_learner_that_cannot_sample():
    pacing = Pacing(samples_per_decision=4.0, batch_size=8, min_replay_steps=16)
    assert not pacing.actors_may_play(10_000, 0)  # far ahead of the learner: wait...
    assert pacing.actors_may_play(10_000, 0, learner_can_sample=False)  # ...unless it is starved
    assert not pacing.learner_may_step(15, 0) and pacing.learner_may_step(16, 0)


def test_staleness_counts_accepted_incumbents_not_version_numbers():
    lineage = IncumbentLineage()
    for v in (8, 9, 30):  # v1..v7 and v10..v29 were rejected
        lineage.accept(v)
    assert lineage.versions == [0, 8, 9, 30]
    assert lineage.oldest_fresh(1) == 9 and lineage.oldest_fresh(2) == 8
    assert lineage.oldest_fresh(10) == 0 and lineage.oldest_fresh(0) == 0  # 0: keep all
    sampler = ReplaySampler(window=100, max_staleness=2, keep="sampled")
    for v in (0, 8, 9, 30):
        sampler.add([_episode(f"v{v}", v, steps=1)])
    assert sampler.num_eligible(lineage.sample_version(2)) == 3  # v8, v9, v30: two generations
    assert sampler.num_eligible(30) == 1  # in version numbers only v30 itself would count


def test_lineage_survives_a_resume_and_a_crash_between_writes(tmp_path):
    lineage = IncumbentLineage()
    for v in (3, 11):
        lineage.accept(v)
    lineage.save(tmp_path)
    assert IncumbentLineage.load(tmp_path, 11).versions == [0, 3, 11]
    assert IncumbentLineage.load(tmp_path, 3).versions == [0, 3]  # the learner never saw v11
    assert IncumbentLineage.load(tmp_path, 14).versions == [0, 3, 11, 14]  # lineage.json lagged
    assert IncumbentLineage.load(tmp_path / "fresh", 5).versions == [0, 5]
    (tmp_path / "lineage.json").write_text("{not json")
    with pytest.raises(UserError, match="lineage.json"):
        IncumbentLineage.load(tmp_path, 11)


# ---- 2. wall-clock cadences on an injected clock -------------------------------------------------


def test_weekly_publishing_over_three_simulated_weeks():
    """publish_every=7d, eval_every=1d and a budget of three weeks, one hour per tick: the very
    Schedule and Deadline objects the driver uses, on a FakeClock."""
    began = time.perf_counter()
    clock = FakeClock()
    start = clock.now()
    publish = Schedule(Cadence.parse("7d"), clock, last_step=0, last_time=start)
    evaluation = Schedule(Cadence.parse("1d"), clock)
    deadline = Deadline.after_minutes(clock, 3 * 7 * 24 * 60 + 30, start)  # 3 weeks + 30 min
    published, evaluated, step = [], [], 0
    while not deadline.passed():
        if publish.due(step):
            publish.mark(step)
            published.append(clock.now() - start)
        if evaluation.due(step):
            evaluation.mark(step)
            evaluated.append(clock.now() - start)
        clock.advance(HOUR)
        step += 10
    assert published == [WEEK, 2 * WEEK, 3 * WEEK]
    assert evaluated == [d * DAY for d in range(22)]  # at the start, then daily
    assert clock.now() - start == 3 * WEEK + HOUR  # the first tick past the budget stops it
    assert time.perf_counter() - began < 2.0


def test_a_late_publish_does_not_push_the_weekly_grid_back():
    """A publish held back (a learner call in flight) fires late, but the next one still falls
    on the next week boundary: no drift over a week-long run."""
    clock = FakeClock()
    start = clock.now()
    publish = Schedule(Cadence.parse("7d"), clock, last_step=0, last_time=start)
    published, step = [], 0
    while clock.now() - start <= 3 * WEEK + 3 * HOUR:
        busy = (clock.now() - start) % WEEK < 3 * HOUR  # every boundary: 3 hours of training
        if not busy and publish.due(step):
            publish.mark(step)
            published.append(clock.now() - start)
        clock.advance(HOUR)
        step += 1
    assert published == [WEEK + 3 * HOUR, 2 * WEEK + 3 * HOUR, 3 * WEEK + 3 * HOUR]
    # A run that slept through two boundaries (weeks 4 and 5) publishes once, on the grid.
    clock.advance(2.5 * WEEK)
    assert publish.due(step)
    publish.mark(step)
    assert publish.last_time == start + 5 * WEEK and not publish.due(step + 1)


def test_a_resumed_run_keeps_its_weekly_grid(tmp_path):
    """The publishing anchor is saved when the cadence fires; a run that crashed on day 10 and
    resumed publishes on day 14, not a week after the restart."""
    from selfplay.train import read_publish_anchor, write_publish_anchor

    clock = FakeClock()
    start = clock.now()
    publish = Schedule(Cadence.parse("7d"), clock, last_step=0, last_time=start)
    clock.advance(WEEK)
    publish.mark(70)
    write_publish_anchor(tmp_path, publish)
    clock.advance(3 * DAY)  # the crash; then the resume
    anchor = read_publish_anchor(tmp_path)
    assert anchor == start + WEEK
    resumed = Schedule(Cadence.parse("7d"), clock, last_step=70, last_time=anchor)
    clock.advance(4 * DAY - HOUR)
    assert not resumed.due(100)
    clock.advance(HOUR)
    assert resumed.due(100)
    assert read_publish_anchor(tmp_path / "none") is None
    (tmp_path / "schedule.json").write_text("[]")
    with pytest.raises(UserError, match="schedule.json"):
        read_publish_anchor(tmp_path)


def test_deadline_without_a_budget_never_passes():
    clock = FakeClock()
    deadline = Deadline.after_minutes(clock, 0)
    clock.advance(52 * WEEK)
    assert not deadline.passed()


# ---- 3. the Elo ladder: flat cost per record -----------------------------------------------------


def _r(a, b, w, d, l):
    return SimpleNamespace(a=a, b=b, wins=w, draws=d, losses=l)


def _random_ladder_results(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        v = k // 3
        b = rng.choice(["random", "perfect", f"v{max(v - 1, 0)}"])
        out.append((f"v{v}", b, rng.randint(0, 10), rng.randint(0, 3), rng.randint(0, 10), v))
    return out


def test_small_ladder_is_the_dense_fit_after_every_record():
    ladder = EloLadder()
    results = [_r(a, b, w, d, l) for a, b, w, d, l, _ in _random_ladder_results(40)]
    for k, r in enumerate(results, start=1):
        ratings = ladder.record(r)
        dense = fit_elo(results[:k])
        assert dict(ratings) == pytest.approx(dense, abs=1e-6)


def test_incremental_ladder_refits_to_the_dense_fit():
    ladder = EloLadder(dense_records=0, refit_growth=0.5)  # the incremental path from record 1
    rows = _random_ladder_results(150, seed=1)
    for a, b, w, d, l, v in rows:
        ladder.record(_r(a, b, w, d, l), version=v)
    dense = fit_elo(ladder.matches())
    between = ladder.ratings()  # placed by one-player fits since the last full fit
    assert max(abs(between[p] - dense[p]) for p in dense) < 100.0  # spread: ~400
    ladder.refit()
    assert ladder.ratings() == pytest.approx(dense, abs=1e-6)


def test_adding_a_record_costs_the_same_at_ten_thousand_records():
    """Work (pair terms evaluated by the fits) per record stays flat from 1,000 to 10,000
    records — amortised over the full refits, whichever record one stops at — and a full fit
    over 10,000 records takes a handful of Newton iterations."""
    ladder = EloLadder()
    per_record = {}
    for k in range(1, 10_001):
        v = (k - 1) // 3
        opponent = ("random", "perfect", f"v{max(v - 1, 0)}")[k % 3]
        ladder.record(_r(f"v{v}", opponent, 11, 2, 7), version=v)
        per_record[k] = ladder.fit_work / k
    late = max(per_record[k] for k in range(5_000, 10_001))
    assert late < 1.25 * per_record[1_000], (late, per_record[1_000])
    assert ladder.last_refit_iterations <= 6
    ladder.refit()  # warm: the ladder's own ratings are already (nearly) the fit
    assert ladder.last_refit_iterations <= 4
    assert len(ladder.ratings()) == 3_336 and ladder.ratings()["random"] == 0.0


# ---- 4. what may change across a resume ----------------------------------------------------------


def _compose(overrides: list[str]):
    from selfplay.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_resume_refuses_a_frozen_key_and_names_it(tmp_path):
    from selfplay.resume import save_run_config
    from selfplay.train import train

    run_dir = tmp_path / "run"
    first = _compose([f"run.dir={run_dir}"])
    run_dir.mkdir()
    save_run_config(first, run_dir, resume=False, kind="game")
    saved = (run_dir / "config.yaml").read_text()
    changed = _compose([f"run.dir={run_dir}", "run.resume=true", "policy.hidden_size=128",
                        "learner.lr=0.0005"])
    with pytest.raises(UserError) as err:
        train(changed)  # the real entry point: refused before Ray starts
    message = str(err.value)
    assert "policy.hidden_size: 64 -> 128" in message and "cannot change" in message
    assert "learner.lr" not in message  # allowed changes are not the problem
    assert (run_dir / "config.yaml").read_text() == saved  # nothing overwritten
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


def test_resume_prints_allowed_changes_and_keeps_the_old_config(tmp_path, capsys, monkeypatch):
    from selfplay.resume import save_run_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_run_config(_compose([f"run.dir={run_dir}"]), run_dir, resume=False, kind="game")
    old = (run_dir / "config.yaml").read_text()
    clock = FakeClock(t=1_767_225_600.0)  # 2026-01-01T00:00:00Z
    monkeypatch.chdir(tmp_path)  # the same run, spelled relative to another working directory
    new = _compose(["run.dir=run", "run.resume=true", "learner.lr=0.0005",
                    "run.num_actors=4", "ray.address=auto", "run.budget_minutes=10080",
                    "learner=alphazero"])  # auto and the loss it stands for: no change
    changes = save_run_config(new, run_dir, resume=True, kind="game", clock=clock)
    assert [c.key for c in changes] == ["learner.lr", "ray.address", "run.budget_minutes",
                                        "run.num_actors"]
    out = capsys.readouterr().out
    assert "learner.lr: 0.001 -> 0.0005" in out and "ray.address: None -> 'auto'" in out
    assert (run_dir / "config.20260101T000000Z.yaml").read_text() == old
    assert OmegaConf.load(run_dir / "config.yaml").learner.lr == 0.0005
    # The same config again: nothing to report, nothing archived.
    assert save_run_config(new, run_dir, resume=True, kind="game", clock=clock) == []
    assert len(list(run_dir.glob("config.*.yaml"))) == 1


def test_task_keys_are_frozen_kwargs_included():
    from selfplay.resume import FROZEN_KEYS, check_resume_config, is_frozen

    old = {"env": {"id": "selfplay/MathJSONL-v0", "kwargs": {"source": "a.jsonl"}},
           "learner": {"loss": "grpo", "lr": 1e-3}}
    new = {"env": {"id": "selfplay/MathJSONL-v0", "kwargs": {"source": "b.jsonl", "split": "train"}},
           "learner": {"loss": "grpo", "lr": 1e-4}}
    with pytest.raises(UserError) as err:
        check_resume_config(old, new, Path("runs/x"))
    assert "env.kwargs.source: 'a.jsonl' -> 'b.jsonl'" in str(err.value)
    assert "env.kwargs.split: <absent> -> 'train'" in str(err.value)
    assert all(is_frozen(k) for k in ("env.id", "policy.num_layers", "learner.loss",
                                      "arena.elo_anchor", "policy.path"))
    assert not any(is_frozen(k) for k in ("learner.lr", "run.budget_minutes", "ray.address",
                                          "run.num_actors", "run.eval_every", "engine.device"))
    assert "env.kwargs" in FROZEN_KEYS


def test_unreadable_saved_config_is_one_message(tmp_path):
    from selfplay.resume import save_run_config

    (tmp_path / "config.yaml").write_text("env: [unclosed\n")
    with pytest.raises(UserError, match="config.yaml: cannot read the run's saved config"):
        save_run_config(_compose([f"run.dir={tmp_path}"]), tmp_path, resume=True, kind="game")


# ---- 5. user-input errors from env construction: one block, no traceback -------------------------


def test_malformed_dataset_is_one_block_through_the_real_cli(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1?", "answer": "#### 2"}\n{not json\n')
    env = {k: v for k, v in os.environ.items() if k not in ("SELFPLAY_DEBUG", "HYDRA_FULL_ERROR")}
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "train", "env=math_jsonl",
         f"env.kwargs.source={bad}", f"run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=180, cwd=REPO, env=env, check=False)
    assert result.returncode == 2, result.stderr
    assert f"{bad}:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run began


def _cli(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    # A subprocess, not main() in pytest's process: Hydra's logging setup outlives an in-process
    # call and writes to a capture stream pytest has closed, which later tests trip over.
    env = {k: v for k, v in os.environ.items() if k not in ("SELFPLAY_DEBUG", "HYDRA_FULL_ERROR")}
    if debug:
        env["SELFPLAY_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "selfplay.cli", *args], capture_output=True,
                          text=True, timeout=180, cwd=REPO, env=env, check=False)


@pytest.mark.parametrize("overrides, expected", [
    (["env.id=selfplay/Nope-v0"], "unknown env id 'selfplay/Nope-v0'"),
    (["env=math_jsonl", "env.kwargs.mode=weird"], "mode='weird'"),
    (["env=math_jsonl", "env.kwargs.source=/nonexistent/x.jsonl"], "x.jsonl"),
    (["env=math_jsonl", "+env.kwargs.colour=3"], "unexpected keyword argument 'colour'"),
])
def test_env_input_errors_are_one_block_in_eval(overrides, expected):
    result = _cli("eval", *overrides)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert err.startswith("selfplay eval: ") and expected in err and "Traceback" not in err, err


def test_selfplay_debug_shows_the_traceback(tmp_path):
    result = _cli("eval", "env=math_jsonl", f"env.kwargs.source={tmp_path / 'missing.jsonl'}",
                  debug=True)
    assert result.returncode != 0
    # the cause behind the one-line message is shown
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr, result.stderr[-2000:]


def test_pacing_draws_each_full_search_as_often_under_a_playout_cap():
    from types import SimpleNamespace

    from selfplay.train import pacing_ratio

    def cfg(prob: float):
        return SimpleNamespace(learner=SimpleNamespace(samples_per_decision=4.0),
                               search=SimpleNamespace(full_search_prob=prob))

    # A quarter of the moves are targets: pacing counts every move, so it holds the learner to
    # one draw per move, which is four per target, as without the cap.
    assert pacing_ratio(cfg(0.25), "game") == pytest.approx(1.0)
    assert pacing_ratio(cfg(1.0), "game") == 4.0
    assert pacing_ratio(cfg(0.25), "text") == 4.0  # text rollouts have no playout cap
