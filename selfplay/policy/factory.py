"""``make_engine``: the one place that turns configs into an Engine."""

from __future__ import annotations

from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Engine


def make_engine(policy_cfg: PolicyConfig, engine_cfg: EngineConfig) -> Engine:
    """An engine serving ``policy_cfg``'s model: "torch" (embedded) or "vllm" (GPU).

    vLLM loads weights from a directory, so it needs ``policy.path`` (a directory written by
    ``PolicyModel.save`` or any HF checkpoint)."""
    if engine_cfg.kind == "torch":
        from selfplay.policy.model import build_policy
        from selfplay.policy.torch_engine import TorchEngine

        model, tokenizer = build_policy(policy_cfg)
        return TorchEngine(model, tokenizer, engine_cfg)
    if engine_cfg.kind == "vllm":
        from selfplay.policy.vllm_engine import VLLMEngine  # raises a clear ImportError

        if not policy_cfg.path:
            raise ValueError("engine.kind=vllm needs policy.path (a saved policy directory)")
        return VLLMEngine(policy_cfg.path, engine_cfg)
    raise ValueError(f"engine.kind: {engine_cfg.kind!r} is not one of 'torch', 'vllm'")
