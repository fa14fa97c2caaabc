"""The soak (benchmarks/soak.py), short: a live `selfplay train` SIGKILLed twice (once mid-write)
and resumed, a rollout actor killed mid-play, a reader beside it; nothing committed lost, changed
or doubled.

The first tests check the checker: the ledger that compares scans of a run directory must accept
a compaction (same episodes, other files) and flag each kind of damage, or the soak proves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from soak import Ledger, Soak, SoakPlan, fill_disk

from selfplay.replay.store import EpisodeStore
from selfplay.view.synthetic import tictactoe_episode


def store_with_shards(root: Path, shards: int = 4, per_shard: int = 3) -> EpisodeStore:
    rng = np.random.default_rng(0)
    store = EpisodeStore(root)
    for s in range(shards):
        store.append([tictactoe_episode(rng, f"ep-{s}-{i}") for i in range(per_shard)])
    return store


def write_version(run_dir: Path, version: int, learner_step: int) -> Path:
    path = run_dir / "checkpoints" / f"version-{version:06d}"
    path.mkdir(parents=True)
    save_file({"w": np.full((2, 2), version, dtype=np.float32)}, str(path / "model.safetensors"))
    (path / "config.json").write_text("{}")
    (path / "meta.json").write_text(json.dumps({"version": version, "learner_step": learner_step}))
    return path


def test_ledger_accepts_compaction_and_flags_lost_changed_and_doubled_episodes(tmp_path: Path):
    store = store_with_shards(tmp_path)
    ledger = Ledger()
    first = ledger.scan(tmp_path)
    assert first.problems == [] and first.episodes == 12 and first.new_episodes == 12

    store.compact(fanout=2)  # other files, the same episodes
    after = ledger.scan(tmp_path)
    assert after.problems == [] and after.lost == [] and after.episodes == 12
    assert after.shard_files < first.shard_files and after.appends == 4

    shards = sorted((tmp_path / "episodes").glob("shard-*"))
    twin = shards[-1].with_name("shard-00000009-0badbeef.parquet")  # a later append, same ids
    shutil.copy(shards[-1], twin)
    assert any("in two shards" in p for p in ledger.scan(tmp_path).problems)
    twin.unlink()

    table = pq.read_table(shards[0])
    flipped = table.set_column(table.schema.get_field_index("outcome"), "outcome",
                               [[-x for x in table["outcome"].to_pylist()]])
    pq.write_table(flipped.replace_schema_metadata(table.schema.metadata), shards[0])
    assert any("changed on disk" in p for p in ledger.scan(tmp_path).problems)

    shards[0].unlink()
    assert len(ledger.scan(tmp_path).lost) >= 3


def test_ledger_flags_torn_shards_changed_checkpoints_and_versions_going_back(tmp_path: Path):
    store_with_shards(tmp_path, shards=1)
    write_version(tmp_path, 0, 0)
    v1 = write_version(tmp_path, 1, 8)
    ledger = Ledger()
    scan = ledger.scan(tmp_path)
    assert scan.problems == [] and scan.checkpoints == scan.checkpoints_intact == 2
    assert scan.max_version == 1 and scan.learner_step == 8

    (v1 / "optimizer.pt").write_bytes(b"late")  # an optimiser state never appears afterwards
    (v1 / "model.safetensors").write_bytes(b"torn")
    problems = ledger.scan(tmp_path).problems
    assert any("version-000001" in p for p in problems)

    shutil.rmtree(v1)
    write_version(tmp_path, 1, 8)
    write_version(tmp_path, 3, 24)
    ledger.scan(tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "version-000003")
    write_version(tmp_path, 2, 16)  # a number below one already committed
    problems = ledger.scan(tmp_path).problems
    assert any("went back" in p for p in problems)
    assert any("version-000003 vanished" in p for p in problems)

    shard = next((tmp_path / "episodes").glob("shard-*"))
    torn = shard.with_name("shard-00000001-0badbeef.parquet")
    torn.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert any("does not read whole" in p for p in ledger.scan(tmp_path).problems)


@pytest.mark.slow
@pytest.mark.timeout(900)  # 2-3 minutes on 2 quiet cores; a busy machine triples it
def test_two_kills_an_actor_kill_and_a_reader_lose_nothing_committed(tmp_path: Path):
    # The first session loses a rollout actor, then the whole run at a random moment; the second
    # is killed while a write is in flight. (tests/test_train_text.py kills a text run too.)
    plan = SoakPlan(kills=2, actor_kill=True, reader=True, disk_full=False, final_steps=0,
                    kill_jitter_s=3.0, mid_write_every=2, progress_timeout_s=240.0)
    result = Soak(plan, tmp_path).run()
    assert result.violations == [], "\n".join(result.violations)
    assert result.kills == result.kills_survived == 2 and result.resumes == 1
    assert result.actor_kills == result.actor_kills_survived == 1
    assert result.episodes_lost == 0 and result.stalls == 0
    assert result.episodes > 0 and result.checkpoints == result.checkpoints_intact > 1
    assert result.reader_polls >= 1 and result.reader_failures == []
    assert [p.episodes for p in result.phases] == sorted(p.episodes for p in result.phases)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs filled to the last byte (the soak's disk-full phase, in miniature)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        fill_disk(mnt / "ballast")
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=False)


def test_a_write_that_fails_on_a_full_disk_leaves_no_temp_file(full_disk: Path):
    from selfplay.atomic import atomic_write_json

    with pytest.raises(OSError):
        atomic_write_json(full_disk / "schedule.json", {"publish": {"last_time": 1.0}})
    assert not list(full_disk.glob(".tmp-*"))


def test_the_cause_of_a_full_disk_is_found_through_ray_and_exception_chains():
    import errno

    from ray.exceptions import RayTaskError

    from selfplay.errors import disk_full_error

    full = OSError(errno.ENOSPC, "No space left on device", "/run/checkpoints/.tmp-x")
    from_actor = RayTaskError("LearnerWorker.train", "Traceback ...", full).as_instanceof_cause()
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("publishing failed") from inner
    except RuntimeError as outer:
        chained = outer
    assert disk_full_error(from_actor) is full and disk_full_error(chained) is full
    assert disk_full_error(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_error(ValueError("no")) is None


def test_train_on_a_full_disk_is_one_block_saying_what_is_safe(full_disk: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("SELFPLAY_DEBUG", "HYDRA_FULL_ERROR")}
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "train", "env=tictactoe",
         f"run.dir={full_disk / 'run'}", "run.progress=false"],
        capture_output=True, text=True, timeout=180, cwd=REPO, env=env, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "selfplay train: the disk is full" in result.stderr
    assert "run.resume=true" in result.stderr
