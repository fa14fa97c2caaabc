"""`selfplay view` beside a live `selfplay train`: the pages follow the run as it writes, and the
run finishes as it would alone (the real command, a tiny budget)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from test_view_support import get, get_json, serve

from selfplay.replay.store import EpisodeStore

TINY = ["env=tictactoe", "run.budget_steps=16", "policy.hidden_size=32", "policy.num_layers=1",
        "policy.num_heads=2", "policy.num_kv_heads=1", "policy.intermediate_size=64",
        "search.num_simulations=8", "learner.batch_size=32", "learner.min_replay_steps=32",
        "learner.publish_every=4steps", "run.games_per_actor=1", "run.progress=false",
        "arena.gate_games=4", "arena.eval_games=4", "arena.search_simulations=4",
        "ray.num_cpus=2"]


def _train_while_watching(base: str, run_dir, *extra: str) -> tuple[list[int], list[str]]:
    """Run `selfplay train` and poll the view until it exits: the episode totals and run states seen."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.cli", "train", f"run.dir={run_dir}", *TINY, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[int] = []
    states: list[str] = []
    deadline = time.monotonic() + 280
    while proc.poll() is None and time.monotonic() < deadline:
        seen.append(get_json(base + "/episodes.json?size=1")["total"])
        states.append(get_json(base + "/run.json")["status"]["state"])
        assert get(base + "/")[0] == 200
        time.sleep(0.05)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-3000:]
    return seen, states


@pytest.mark.slow
def test_view_follows_a_live_run(tmp_path):
    run_dir = tmp_path / "run"
    with serve(run_dir, refresh_s=0.2) as base:
        assert get_json(base + "/episodes.json")["total"] == 0  # before the run has begun
        seen, states = _train_while_watching(base, run_dir)
        final = get_json(base + "/run.json")
        listing = get_json(base + "/episodes.json?size=1")
        # The run's decisions carry their search trees beyond the root (search.record_nodes).
        newest = listing["rows"][0]
        trees = [get_json(base + f"/episodes/{newest['episode_id']}/steps/{n}/search.json")["tree"]
                 for n in range(1, newest["num_steps"] + 1)]
        # The same server, not restarted, follows the run when it is resumed and writes more
        # (deterministic, where how many shards a fast machine writes between two polls is not).
        resumed_seen, resumed_states = _train_while_watching(
            base, run_dir, "run.resume=true", "run.budget_steps=24")
        after_resume = get_json(base + "/episodes.json?size=1")["total"]
        resumed_final = get_json(base + "/run.json")
    print(f"\nepisode counts the view showed while the run went on: {sorted(set(seen))}, "
          f"then resumed: {sorted(set(resumed_seen))}")
    # It updated while the run went on, never going back, and showed episodes before the run ended.
    assert seen == sorted(seen) and seen[-1] > 0, seen
    assert any(n > 0 for n, state in zip(seen, states) if state == "running"), (seen, states)
    assert "running" in states and "running" in resumed_states
    # The run is whole: every episode it wrote is in the view, and it finished normally.
    stored = EpisodeStore(run_dir, read_only=True).num_episodes()
    assert listing["total"] == final["counts"]["episodes"] > 0
    assert final["status"]["state"] == "finished"
    assert [v["version"] for v in final["versions"]][:2] == [0, 1]
    assert final["summary"]["learner_steps"] == 16
    assert all(t["recorded_nodes"] > 0 for t in trees)
    assert max(t["depth_recorded"] for t in trees) >= 2, [t["depth_recorded"] for t in trees]
    # After the resume the view shows the episodes both runs wrote, as the store holds them.
    assert resumed_seen == sorted(resumed_seen) and resumed_seen[0] >= listing["total"]
    assert after_resume == stored > listing["total"], (after_resume, stored, listing["total"])
    assert resumed_final["summary"]["learner_steps"] == 24
    assert resumed_final["status"]["state"] == "finished"
