"""Checkpoints and the learner's safety: readers never write, loads are safe, optimiser states
are pruned crash-safely, and a non-finite step is skipped rather than applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from selfplay.arena.players import resolve_checkpoint
from selfplay.atomic import atomic_write_dir, remove_stale_temps
from selfplay.build import build_env
from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.learner.checkpoint import (
    CheckpointMeta,
    checkpoint_dir,
    latest_checkpoint,
    save_checkpoint,
)
from selfplay.learner.config import LearnerConfig
from selfplay.learner.learner import Learner
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import build_policy
from selfplay.replay.sampler import Batch
from selfplay.workers import LearnerWorker, LearnerWorkerConfig, WarmStartConfig

REPO = Path(__file__).resolve().parent.parent
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
        "intermediate_size": 64}


@pytest.fixture(scope="module")
def policy():
    return build_policy(PolicyConfig(**TINY))


def tictactoe_batch(value_target: float = 0.5, size: int = 4) -> Batch:
    """``size`` copies of the opening position of a real tic-tac-toe game, uniform visits."""
    obs, info = build_env(EnvConfig()).reset(seed=0)
    actions = list(info["legal_actions"])
    return Batch(
        observations=[obs] * size, actions=[actions] * size,
        target_visits=[np.full(len(actions), 1 / len(actions), np.float32)] * size,
        value_targets=np.full(size, value_target, np.float32),
        policy_versions=np.zeros(size, np.int64), chosen=[actions[0]] * size,
        players=np.zeros(size, np.int32), root_values=np.zeros(size, np.float32),
        keys=[("ep", i) for i in range(size)], probs=np.full(size, 1 / size))


def worker(run_dir: Path, resume: bool, **learner) -> LearnerWorker:
    cfg = LearnerWorkerConfig(str(run_dir), resume, "alphazero", LearnerConfig(**learner),
                              PolicyConfig(**TINY), EnvConfig(), WarmStartConfig("none", 0, 0, 0.0))
    return LearnerWorker(cfg, replay=None)


def weights_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def versions_with_optimizer(run_dir: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1])
                  for p in (run_dir / "checkpoints").glob("version-*/optimizer.pt"))


# ---- readers never write ------------------------------------------------------------------------


def test_lookup_leaves_temps_of_writes_in_flight_in_place(tmp_path: Path, policy):
    model, tok = policy
    save_checkpoint(tmp_path, model, tok, None, CheckpointMeta(0, 0, 0, time.time()))
    folder = tmp_path / "checkpoints"
    (folder / ".tmp-version-000001-0123abcd").mkdir()
    (folder / ".tmp-latest.json-0123abcd").write_text("{}")
    assert latest_checkpoint(tmp_path)[0].name == "version-000000"
    assert resolve_checkpoint(tmp_path).name == "version-000000"
    assert (folder / ".tmp-version-000001-0123abcd").is_dir()
    assert (folder / ".tmp-latest.json-0123abcd").exists()


def test_a_reader_polling_beside_the_learner_never_breaks_a_save(tmp_path: Path, policy):
    model, tok = policy
    save_checkpoint(tmp_path, model, tok, None, CheckpointMeta(0, 0, 0, time.time()))
    stop, reads, reader_errors = threading.Event(), [0], []

    def read() -> None:
        while not stop.is_set():
            try:
                latest_checkpoint(tmp_path)
                resolve_checkpoint(tmp_path)
                reads[0] += 1
            except (OSError, ValueError, UserError) as err:  # it must not break a save
                reader_errors.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for version in range(1, 16):
            save_checkpoint(tmp_path, model, tok, {"step": version},
                            CheckpointMeta(version, version, 0, time.time()))
    finally:
        stop.set()
        reader.join(10)
    assert reads[0] > 15 and not reader_errors
    assert latest_checkpoint(tmp_path)[1].version == 15


def test_cleanup_spares_this_process_writes_in_flight(tmp_path: Path):
    (tmp_path / ".tmp-stale-deadbeef").mkdir()  # a crash's leftover

    def fill(tmp: Path) -> None:
        (tmp / "a.txt").write_text("a")
        assert remove_stale_temps(tmp_path) == 1  # the leftover, not this write's own temp
        (tmp / "b.txt").write_text("b")

    atomic_write_dir(tmp_path / "target", fill)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert (tmp_path / "target" / "b.txt").read_text() == "b"


# ---- safe loading, retention, resume ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A learner that took one real step and published versions 1..4 (plus version 0)."""
    run_dir = tmp_path_factory.mktemp("run")
    learner = worker(run_dir, resume=False, keep_optimizer_states=2)
    learner.learner.train_step(tictactoe_batch())
    for _ in range(4):
        learner.publish()
    return run_dir


def test_only_the_newest_optimizer_states_are_kept(trained_run: Path, tmp_path: Path):
    assert versions_with_optimizer(trained_run) == [3, 4]
    for version in range(5):  # every published version's weights stay
        assert (checkpoint_dir(trained_run, version) / "model.safetensors").exists()
    keep_all = worker(tmp_path, resume=False, keep_optimizer_states=0)
    for _ in range(3):
        keep_all.publish()
    assert versions_with_optimizer(tmp_path) == [0, 1, 2, 3]


def test_resume_loads_the_optimizer_state_safely(trained_run: Path):
    resumed = worker(trained_run, resume=True, keep_optimizer_states=2)
    assert resumed.version == 4 and resumed.learner.step == 1
    assert any("exp_avg" in s for s in resumed.learner.optimizer.state_dict()["state"].values())


def test_resume_without_an_optimizer_state_starts_fresh_and_says_so(trained_run: Path, tmp_path,
                                                                    capsys):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    (checkpoint_dir(run_dir, 4) / "optimizer.pt").unlink()
    resumed = worker(run_dir, resume=True)
    assert "fresh optimiser" in capsys.readouterr().out
    assert resumed.learner.step == 1  # learner steps still count from the checkpoint
    assert resumed.learner.optimizer.state_dict()["state"] == {}


class _Payload:
    """Unpickling this runs code: what a tampered optimizer.pt could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_crafted_optimizer_state_is_refused_and_never_runs(trained_run: Path, tmp_path: Path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    marker = tmp_path / "marker"
    torch.save({"optimizer": _Payload(marker)}, checkpoint_dir(run_dir, 4) / "optimizer.pt")
    with pytest.raises(UserError, match="version-000004/optimizer.pt.*refused") as err:
        worker(run_dir, resume=True)
    assert "\n" not in str(err.value)
    assert not marker.exists()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from selfplay.learner.checkpoint import CheckpointMeta, save_checkpoint
from selfplay.learner.config import LearnerConfig
from selfplay.learner.learner import Learner
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import build_policy
model, tok = build_policy(PolicyConfig(**{tiny!r}))
learner = Learner(model, tok, LearnerConfig(), loss="alphazero")
for version in range(10**6):
    print("saving", version, flush=True)
    save_checkpoint(Path(sys.argv[1]), model, tok, learner.optimizer_state(),
                    CheckpointMeta(version, 0, 0, time.time()), keep_optimizer_states=2)
"""


def test_kill_minus_nine_while_checkpointing_keeps_a_resumable_run(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(tiny=TINY), str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "saving 5":
                break
        time.sleep(0.02)  # inside the save of version 5: its directory or pointer, or the prune
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    newest = latest_checkpoint(tmp_path)[1].version
    assert newest >= 4
    # the newest two complete checkpoints still hold their optimiser states
    assert {newest - 1, newest} <= set(versions_with_optimizer(tmp_path))
    resumed = worker(tmp_path, resume=True)
    assert resumed.version == newest
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the learner's start cleaned up


# ---- non-finite steps ---------------------------------------------------------------------------


def test_a_nonfinite_step_is_skipped_and_the_streak_limit_stops(policy):
    import copy

    from selfplay.learner.learner import NonFiniteTrainingError

    model, tok = copy.deepcopy(policy[0]), policy[1]
    learner = Learner(model, tok, LearnerConfig(max_nonfinite_steps=3), loss="alphazero")
    before = weights_copy(model)
    bad_target = learner.train_step(tictactoe_batch(value_target=float("nan")))
    assert bad_target.metrics["learner/nonfinite_skipped"] == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert learner.optimizer.state_dict()["state"] == {}  # no optimiser step either
    # a finite loss whose gradient overflows (a value target of 1e19: its square's gradient)
    bad_grad = learner.train_step(tictactoe_batch(value_target=1e19))
    assert bad_grad.metrics["learner/nonfinite_skipped"] == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    good = learner.train_step(tictactoe_batch())  # a good step resets the streak
    assert good.metrics["learner/nonfinite_skipped"] == 2
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for _ in range(2):
        learner.train_step(tictactoe_batch(value_target=float("nan")))
    with pytest.raises(NonFiniteTrainingError, match="3 consecutive.*learner.max_nonfinite_steps"):
        learner.train_step(tictactoe_batch(value_target=float("nan")))


def test_a_diverged_run_stops_with_one_clear_line(tmp_path: Path):
    from test_train import TINY as TRAIN_TINY
    from test_train import selfplay_cmd

    result = subprocess.run(
        selfplay_cmd("train", *TRAIN_TINY, f"run.dir={tmp_path / 'r'}", "learner.lr=inf",
                     "learner.max_nonfinite_steps=2", "run.games_per_actor=4",
                     "learner.batch_size=8", "learner.min_replay_steps=8", "run.budget_minutes=3"),
        check=False, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("selfplay train: learner: ") and "non-finite" in last, last
    assert "learner.max_nonfinite_steps=2" in last, last
