"""`benchmarks/learn_arithmetic.py --merge`: every arm is compared with the start it trained from,
through a merge of a merge (the sft start has moved between versions of the code)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import learn_arithmetic as la  # noqa: E402

START_OLD = {"pass@1": 0.1275, "pass@4": 0.245, "maj@4": 0.155, "greedy": 0.175}
START_MID = {"pass@1": 0.0775, "pass@4": 0.15, "maj@4": 0.09, "greedy": 0.125}
START_NEW = {"pass@1": 0.1, "pass@4": 0.2, "maj@4": 0.1, "greedy": 0.15}


def _committed(tmp_path: Path, monkeypatch) -> None:
    """A JSON as the 2026-12-03 run wrote it: its own start, arms merged from an older start
    (marked "measured", no start_pass@1), step arms from the step start."""
    results = {
        "sft start": START_MID, "sft start (merged run)": START_OLD,
        "sft start (steps)": {"pass@1": 0.01875},
        "control": {"pass@1": 0.28875, "measured": "2026-12-02"},
        "expert_iteration": {"pass@1": 0.53125, "measured": "2026-12-02"},
        "grpo": {"pass@1": 0.295, "measured": "2026-12-02"},
        "step_mcts_expert_iteration": {"pass@1": 0.05125},
        "grpo_steps": {"pass@1": 0.025},
    }
    (tmp_path / "learn_arithmetic.json").write_text(json.dumps(
        {"date": "2026-12-03", "results": results, "curves": {"grpo": [[1, 0.2, 3]]}}))
    monkeypatch.setattr(la, "RESULTS", tmp_path)


def test_a_merge_of_a_merge_keeps_each_arms_own_start(tmp_path, monkeypatch):
    _committed(tmp_path, monkeypatch)
    today = {"sft start": START_NEW, "grpo": {"pass@1": 0.3, "start_pass@1": 0.1},
             "trl": {"pass@1": 0.2, "start_pass@1": 0.1}}
    curves: dict = {}
    assert la.merge_previous(today, curves) == "2026-12-03"
    assert today["grpo"]["pass@1"] == 0.3  # rerun today: not overwritten
    assert today["expert_iteration"]["start_pass@1"] == 0.1275  # the start it was merged with
    assert today["expert_iteration"]["measured"] == "2026-12-02"  # not the JSON's date
    assert today["step_mcts_expert_iteration"]["start_pass@1"] == 0.01875
    assert today["sft start (steps)"]["pass@1"] == 0.01875
    assert today["sft start (merged run)"] == START_MID  # the committed run's own start
    assert curves == {"grpo": [[1, 0.2, 3]]}  # a merged run's curve fills in where none ran
    figures = {f["name"]: f for f in la.build_figures(today, 30)[0]}
    best = figures["best RL (expert_iteration) pass@1 held-out vs sft start (30 min/arm)"]
    assert (best["ours"], best["baseline"]) == (53.1, 12.8)  # figures round to 0.1
    assert figures["grpo pass@1 held-out vs sft start (30 min/arm)"]["baseline"] == 10.0
    peer = figures["grpo pass@1 held-out vs TRL GRPOTrainer (30 min/arm)"]
    assert (peer["ours"], peer["baseline"]) == (30.0, 20.0)
    assert peer["baseline_name"] == "TRL GRPOTrainer, same start, reward and minutes"
    vs_trl = figures["best RL (expert_iteration) pass@1 held-out vs TRL GRPOTrainer (30 min/arm)"]
    assert "another sft start" in vs_trl["baseline_name"]
    steps = figures["step_mcts_expert_iteration pass@1 held-out vs sft start (steps) (30 min/arm)"]
    assert steps["baseline"] == 1.9


def test_today_arms_are_compared_with_todays_start(tmp_path, monkeypatch):
    monkeypatch.setattr(la, "RESULTS", tmp_path)  # no committed JSON: nothing merged
    today = {"sft start": START_NEW, "expert_iteration": {"pass@1": 0.4}}
    assert la.merge_previous(today, {}) is None
    figures = la.build_figures(today, 30)[0]
    assert figures[0]["baseline"] == 10.0 and figures[0]["ours"] == 40.0
