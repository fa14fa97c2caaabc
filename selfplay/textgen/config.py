"""How the policy samples on single-agent text tasks (math, code): `selfplay eval` on a held-out
split, and text rollouts. Import-light (no torch): the root config may import it at startup."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TextSamplingConfig:
    """Sampling of completions on text tasks."""

    k: int = 8  # completions (episodes) per problem: pass@k and the majority vote are over these
    temperature: float = 1.0  # 0 = greedy (every sample then the same: use k=1)
    top_p: float = 1.0  # nucleus sampling (1 = off)
    max_tokens: int = 192  # single-turn tasks: tokens of one whole solution
    step_max_tokens: int = 48  # multi-step tasks: tokens of one reasoning step (ends at a newline)
