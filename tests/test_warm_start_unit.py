"""run.warm_start_unit: a multi-step env's warm start can count whole solutions, not lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from selfplay.config import register_configs
from selfplay.errors import UserError
from selfplay.workers import WarmStartConfig, warm_start, warm_start_step_count, worker_configs

CONF = Path(__file__).resolve().parent.parent / "conf"
TINY_POLICY = ["policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
               "policy.num_kv_heads=1", "policy.intermediate_size=64"]


def _learner_cfg(tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *TINY_POLICY, "env=math_steps", f"run.dir={tmp_path}", "run.warm_start=sft",
            "run.warm_start_problems=6", "run.warm_start_steps=2", "learner.batch_size=4",
            *overrides])
    return worker_configs(cfg).learner


def test_step_count_scales_by_decisions_per_solution_only_when_asked():
    decisions = WarmStartConfig("sft", 8, 10, 1e-3, "decisions")
    solutions = WarmStartConfig("sft", 8, 10, 1e-3, "solutions")
    assert warm_start_step_count(decisions, 30, 8) == 10
    assert warm_start_step_count(solutions, 30, 8) == 38  # 10 * 30 / 8 = 37.5
    assert warm_start_step_count(solutions, 8, 8) == 10  # single-turn: the same either way


@pytest.mark.parametrize("unit", ["decisions", "solutions"])
def test_math_steps_warm_start_runs_the_scaled_number_of_steps(tmp_path: Path, unit: str):
    from selfplay.policy.model import build_policy

    cfg = _learner_cfg(tmp_path, f"run.warm_start_unit={unit}")
    model, tokenizer = build_policy(cfg.policy)
    summary = warm_start(model, tokenizer, cfg)
    written = json.loads((tmp_path / "warm_start.json").read_text())
    lines_per_solution = summary["warm_start/decisions"] / summary["warm_start/problems"]
    assert lines_per_solution > 1  # math_steps writes one line per action
    expected = 2 if unit == "decisions" else round(2 * lines_per_solution)
    assert summary["warm_start/steps"] == written["warm_start/steps"] == expected


def test_a_misspelt_unit_names_the_key(tmp_path: Path):
    from selfplay.policy.model import build_policy

    cfg = _learner_cfg(tmp_path, "run.warm_start_unit=lines")
    model, tokenizer = build_policy(cfg.policy)
    with pytest.raises(UserError, match="run.warm_start_unit"):
        warm_start(model, tokenizer, cfg)
