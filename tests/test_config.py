"""Every YAML under conf/ composes against the typed schema; mistakes are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from selfplay.config import SelfplayConfig, register_configs

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUP_FILES = sorted(p for p in CONF.rglob("*.yaml") if p.parent != CONF)


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_root_config_composes_to_the_schema():
    cfg = _compose([])
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, SelfplayConfig)
    assert typed.env.id == "selfplay/TicTacToe-v0"


def test_conf_has_every_group_and_is_searched_recursively():
    groups = {p.relative_to(CONF).parts[0] for p in GROUP_FILES}
    assert {"env", "policy", "engine", "search", "learner", "run"} <= groups
    # the recursive glob must see nested folders too, should a group grow sub-folders
    assert all(p.suffix == ".yaml" for p in GROUP_FILES) and len(GROUP_FILES) >= 8


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: str(p.relative_to(CONF)))
def test_every_group_yaml_composes(path: Path):
    rel = path.relative_to(CONF).with_suffix("")
    group, name = "/".join(rel.parts[:-1]), rel.parts[-1]
    cfg = _compose([f"{group}={name}"])
    OmegaConf.to_object(cfg)  # raises on a value of the wrong type


def test_mistyped_key_is_an_error():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        _compose(["learner.lrr=0.1"])


def test_wrong_type_is_an_error():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        _compose(["run.num_actors=many"])


def test_group_yaml_with_unknown_key_is_rejected(tmp_path: Path):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "typo.yaml").write_text("idd: selfplay/TicTacToe-v0\n")
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises((ConfigCompositionException, ConfigKeyError)):
            compose(
                config_name="config",
                overrides=[f"hydra.searchpath=[file://{tmp_path}]", "env=typo"],
            )


def _schema_classes(cls, seen=None):
    import dataclasses

    seen = seen if seen is not None else []
    if cls not in seen:
        seen.append(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                _schema_classes(f.default_factory, seen)
    return seen


def test_every_config_key_has_a_one_line_doc():
    """Each leaf key of the schema carries a comment on its line (its one-line doc)."""
    import dataclasses
    import inspect

    undocumented = []
    for cls in _schema_classes(SelfplayConfig):
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                continue  # a group: documented by its own class
            line = next((ln for ln in source.splitlines() if ln.strip().startswith(f"{f.name}:")), "")
            if "#" not in line:
                undocumented.append(f"{cls.__name__}.{f.name}")
    assert not undocumented, f"config keys without a one-line doc: {undocumented}"


@pytest.mark.parametrize("overrides", [
    ["env=math", "learner=grpo", "run.warm_start=sft"],
    ["env=math_steps", "learner=expert_iteration"],
    ["env=code", "learner=sft", "rollout.mode=reference", "rollout.problems=16"],
    ["arena.gate_test=sprt", "arena.gate_p1=0.7"],
])
def test_text_training_keys_compose(overrides):
    typed = OmegaConf.to_object(_compose(overrides))
    assert isinstance(typed, SelfplayConfig)
    for o in overrides:
        key, value = o.split("=", 1)
        if "." in key:
            node = typed
            for part in key.split("."):
                node = getattr(node, part)
            assert str(node) == value


def test_an_env_brings_its_own_training_defaults_and_the_command_line_wins():
    tuned = _compose(["env=connect_four"])
    assert tuned.search.num_simulations == 128 and tuned.search.full_search_prob == 0.25
    assert tuned.learner.augment_symmetries and not tuned.arena.gate
    assert tuned.learner.samples_per_decision == 16  # the learner-bound setting measured best
    assert tuned.arena.search_simulations == 128  # evaluations search as self-play does
    assert tuned.arena.eval_opening_plies == 2  # evaluations from paired random openings
    assert tuned.env.kwargs.view == "mover_short"
    assert isinstance(OmegaConf.to_object(tuned), SelfplayConfig)
    # an env without a conf/env_defaults file keeps the groups' own values
    plain = _compose(["env=tictactoe"])
    assert plain.search.num_simulations == 64 and plain.arena.gate and "view" not in plain.env.kwargs
    assert plain.learner.samples_per_decision == 4
    assert plain.arena.eval_opening_plies == 0  # tic-tac-toe: perfect play from the initial position
    # keys on the command line beat the env's defaults, which beat the group files
    mine = _compose(["env=connect_four", "search.num_simulations=8", "env.kwargs.view=absolute",
                     "learner=sft"])
    assert mine.search.num_simulations == 8 and mine.env.kwargs.view == "absolute"
    assert mine.learner.replay_window == 100000  # the env's default over learner/sft.yaml's
