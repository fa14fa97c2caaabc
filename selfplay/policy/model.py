"""The policy model: a Hugging Face causal LM body plus a scalar value head.

The body is transformers' own ``LlamaForCausalLM`` (fresh, from ``PolicyConfig`` sizes) or any
local HF causal LM directory (Llama and Qwen2 families are what the embedded engine serves). The
value head reads the final-norm hidden state of a position and says, in [-1, 1], how good the
state ending there is for the player to move.

On disk a policy is a plain HF directory (``config.json``, ``model.safetensors``, tokenizer
files), so transformers and vLLM load it as they load any model, with ``value_head.safetensors``
beside it. ``save`` writes into the directory it is given; callers that need atomicity (the
learner's checkpoints) save into a temporary directory and rename it.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from selfplay.policy.config import PolicyConfig
from selfplay.policy.tokenizer import build_char_tokenizer, load_tokenizer

VALUE_HEAD_FILE = "value_head.safetensors"


class PolicyModel(nn.Module):
    """An HF causal LM (``self.lm``) plus ``value_head``: Linear(hidden, 1) then tanh."""

    def __init__(self, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer  # kept so save() writes a self-contained directory
        hidden = lm.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # Zero so a fresh head (or a checkpoint without one) predicts value 0 everywhere.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(device=lm.device, dtype=lm.dtype)

    @property
    def config(self):
        return self.lm.config

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Final-norm hidden states [B, T, H] (the input of both the LM head and the value head)."""
        return self.lm.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def logits_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on hidden states [..., H] -> float32 logits [..., V]."""
        return self.lm.lm_head(hidden).float()

    def values_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """Value head on hidden states [..., H] -> float32 values [...] in [-1, 1]."""
        return torch.tanh(self.value_head(hidden).squeeze(-1)).float()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask [B, T] (right-padded) -> logits [B, T, V], values [B, T]."""
        h = self.hidden(input_ids, attention_mask)  # [B, T, H]
        return self.lm.lm_head(h), self.values_of(h)

    # ---- persistence (HF format) -------------------------------------------------------------

    def save(self, directory: str, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Write an HF directory: LM weights + config, tokenizer files, value_head.safetensors."""
        os.makedirs(directory, exist_ok=True)
        self.lm.save_pretrained(directory)
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is not None:
            tok.save_pretrained(directory)
        head = {k: v.detach().contiguous().cpu() for k, v in self.value_head.state_dict().items()}
        save_file(head, os.path.join(directory, VALUE_HEAD_FILE))

    @classmethod
    def load(cls, directory: str, dtype: torch.dtype = torch.float32) -> PolicyModel:
        """Load a directory written by ``save`` or any local HF causal LM (fresh value head)."""
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"policy.path: no such directory: {directory!r}")
        lm = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype)
        model = cls(lm, load_tokenizer(directory))
        head_path = os.path.join(directory, VALUE_HEAD_FILE)
        if os.path.exists(head_path):
            model.value_head.load_state_dict(load_file(head_path))
        return model


def llama_config(cfg: PolicyConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """A LlamaConfig of the PolicyConfig sizes with the tokenizer's vocabulary and special ids."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_seq_len,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def build_policy(cfg: PolicyConfig) -> tuple[PolicyModel, PreTrainedTokenizerBase]:
    """A fresh tiny Llama (seeded by ``cfg.seed``) or the local HF checkpoint at ``cfg.path``."""
    if cfg.path:
        model = PolicyModel.load(cfg.path)
        return model, model.tokenizer
    tokenizer = build_char_tokenizer()
    with torch.random.fork_rng(devices=[]):  # seed the init without moving the global RNG
        torch.manual_seed(cfg.seed)
        lm = LlamaForCausalLM(llama_config(cfg, tokenizer))
    lm.eval()
    return PolicyModel(lm, tokenizer), tokenizer


# The learner and the engine share one definition of the priors (see priors.py).
from selfplay.policy.priors import action_log_priors

__all__ = ["VALUE_HEAD_FILE", "PolicyModel", "action_log_priors", "build_policy", "llama_config"]
