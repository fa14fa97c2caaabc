"""Policy sampling on single-agent text tasks through the Engine.

- ``sample_solutions``: k completions per prompt, as strings;
- ``rollout_text_env``: episodes of a text env (single-turn: one sampled solution per episode;
  multi-step: one sampled reasoning step per action), as ``Episode`` records with ``search=None``;
- ``TextSamplingConfig``: k, temperature and token budgets for `selfplay eval` on text tasks.
"""

from selfplay.textgen.config import TextSamplingConfig
from selfplay.textgen.rollout import (
    is_multi_step,
    prompt_of,
    rollout_text_env,
    sample_solutions,
)

__all__ = [
    "TextSamplingConfig",
    "is_multi_step",
    "prompt_of",
    "rollout_text_env",
    "sample_solutions",
]
