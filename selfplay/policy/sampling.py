"""Token sampling with per-sequence randomness, so a seeded request samples the same tokens
whatever else shares its batch.

Each sequence owns a ``torch.Generator`` (seeded from the request's seed and the completion's
index) and draws its uniforms once, at admission; a step then samples every row by inverse CDF
with that row's next uniform. Rows never share random state, so batch composition cannot change
them. Log-probabilities are reported under the untempered distribution (as vLLM does).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfplay.policy.cpu_kernels import greedy_rows


def sequence_generator(seed: int | None, completion: int, fallback: np.random.Generator,
                       prompt_ids: Sequence[int] = ()):
    """The generator of one completion: from (seed, the prompt's tokens, completion index), or
    the engine's stream. The prompt is part of the key so that one seeded request over many
    prompts draws independent samples for each (with the seed alone, the k-th completion of every
    prompt would share its random numbers, and so its text, between prompts)."""
    if seed is None:
        state = int(fallback.integers(0, 2**63 - 1))
    else:
        state = mixed_seed(seed, zlib.crc32(np.asarray(prompt_ids, dtype=np.int64).tobytes()),
                           completion)
    return torch.Generator(device="cpu").manual_seed(state)


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence mixing: nearby inputs give unrelated seeds)."""
    words = [int(p) & (2**63 - 1) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def draw_uniforms(gen: torch.Generator, count: int) -> list[float]:
    """``count`` uniforms in [0, 1) (one per token the sequence may sample)."""
    return torch.rand(count, generator=gen, dtype=torch.float64).tolist()


def sample(
    logits: torch.Tensor,
    uniforms: torch.Tensor | None,
    temperature: float,
    top_k: int,
    top_p: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, V] float32, uniforms [B] (unused, may be None, when greedy) ->
    (tokens [B] long, untempered logprobs [B]). One pass over the whole batch: every row is
    drawn by inverse CDF with its own uniform, so no row's draw depends on another's."""
    if temperature <= 0.0 and logits.device.type == "cpu" and logits.dtype == torch.float32:
        # Greedy on a CPU: argmax and log-softmax of each row in one numba pass.
        tokens = torch.empty(logits.shape[0], dtype=torch.long)
        chosen = torch.empty(logits.shape[0], dtype=torch.float32)
        greedy_rows(logits.contiguous().numpy(), tokens.numpy(), chosen.numpy())
        return tokens, chosen
    logp = F.log_softmax(logits, dim=-1)  # [B, V]
    if temperature <= 0.0:
        tokens = logits.argmax(dim=-1)
    else:
        if uniforms is None:
            raise ValueError("sample: temperature > 0 needs one uniform per row")
        z = logits / temperature if temperature != 1.0 else logits
        if top_k > 0 or top_p < 1.0:
            z, order = z.sort(dim=-1, descending=True)  # [B, V]
        else:
            order = None
        probs = torch.softmax(z, dim=-1)  # [B, V]
        if top_k > 0 and top_k < probs.shape[-1]:
            probs[:, top_k:] = 0.0
        if top_p < 1.0:
            # Keep the smallest head of the sorted distribution whose mass reaches top_p
            # (the first token always stays).
            before = probs.cumsum(dim=-1) - probs  # mass strictly before each token
            probs = probs.masked_fill(before >= top_p * probs.sum(-1, keepdim=True), 0.0)
        cdf = probs.double().cumsum(dim=-1)  # [B, V] (float64: u * total stays below total)
        target = uniforms.to(cdf.dtype)[:, None] * cdf[:, -1:]  # [B, 1]
        picked = torch.searchsorted(cdf, target, right=True)  # first index with cdf > target
        # Guard the rounding edge u * total == total: never step past the last kept token.
        last_kept = (cdf < cdf[:, -1:]).sum(dim=-1, keepdim=True)  # [B, 1]
        picked = torch.minimum(picked, last_kept)
        tokens = picked.squeeze(1) if order is None else order.gather(1, picked).squeeze(1)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


__all__ = ["draw_uniforms", "sample", "sequence_generator"]
