"""``make_engine``: the one place that turns configs into an Engine."""

from __future__ import annotations

from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Engine


def make_engine(policy_cfg: PolicyConfig, engine_cfg: EngineConfig) -> Engine:
    """An engine serving ``policy_cfg``'s model: "torch" (embedded) or "vllm".

    vLLM loads weights from a directory: ``policy.path`` (a directory written by
    ``PolicyModel.save`` or any HF checkpoint) where it is set; without one (a training run's
    fresh policy) the model ``build_policy`` makes is saved to a temporary directory the engine
    owns. Either way a run's actors then load the incumbent's weights in place."""
    if engine_cfg.kind == "torch":
        from selfplay.policy.model import build_policy
        from selfplay.policy.torch_engine import TorchEngine

        model, tokenizer = build_policy(policy_cfg)
        return TorchEngine(model, tokenizer, engine_cfg)
    if engine_cfg.kind == "vllm":
        from selfplay.policy.vllm_engine import VLLMEngine  # raises a clear ImportError

        if policy_cfg.path:
            return VLLMEngine(policy_cfg.path, engine_cfg)
        from selfplay.policy.model import build_policy

        return VLLMEngine.from_model(*build_policy(policy_cfg), engine_cfg)
    raise ValueError(f"engine.kind: {engine_cfg.kind!r} is not one of 'torch', 'vllm'")
