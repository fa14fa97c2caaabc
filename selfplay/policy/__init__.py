"""The policy: model (LM + value head), tokenizer, and the engines that serve it.

Imports are lazy (PEP 562) so ``import selfplay.policy`` does not pull in torch/transformers
for code that only needs the configs or the Engine protocol."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ActionEvaluation": "selfplay.policy.engine",
    "Completion": "selfplay.policy.engine",
    "Engine": "selfplay.policy.engine",
    "EngineInputError": "selfplay.policy.engine",
    "SamplingParams": "selfplay.policy.engine",
    "EngineConfig": "selfplay.policy.config",
    "PolicyConfig": "selfplay.policy.config",
    "PolicyModel": "selfplay.policy.model",
    "build_policy": "selfplay.policy.model",
    "action_log_priors": "selfplay.policy.priors",
    "TorchEngine": "selfplay.policy.torch_engine",
    "make_engine": "selfplay.policy.factory",
    "build_char_tokenizer": "selfplay.policy.tokenizer",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'selfplay.policy' has no attribute {name!r}")


__all__ = list(_EXPORTS)
