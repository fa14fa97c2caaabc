"""A learned reward model: the policy's architecture with a scalar head, trained on preference
pairs with Llama 2's Bradley–Terry loss with a margin.

The body is a ``PolicyModel``'s LM (so any policy checkpoint can start a reward model, and the
reward model is served and saved like a policy); its LM head and tanh value head go unused. A
``Linear(hidden, 1)`` reads the final-norm hidden state of the LAST token of prompt + response:
the one position that has seen the whole response. No tanh: a Bradley–Terry reward is a logit,
and squashing it would cap how confidently two clear-cut responses can be told apart.

On disk: the policy's HF directory (``config.json``, weights, tokenizer) plus
``reward_head.safetensors``, written atomically.

Where pairs come from: ``pairs_from_verifier`` (a passing and a failing response to one prompt;
environment feedback distilled into a reward that generalises to unverifiable prompts) and
``pairs_from_judge`` (an LLM judge's pairwise preferences). Retrain on the newest policy's samples
to keep the reward model in distribution (Llama 2's weekly batches).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from selfplay.atomic import atomic_write_dir
from selfplay.feedback.base import PairwiseFeedback
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import PolicyModel, build_policy
from selfplay.policy.priors import right_pad
from selfplay.policy.tokenizer import encode_continuation, encode_prompt, pad_token_id

REWARD_HEAD_FILE = "reward_head.safetensors"


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is preferred to ``rejected`` as a response to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    # How clearly chosen wins (Llama 2: larger for "significantly better"); 0 = unknown.
    margin: float = 0.0


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Llama 2's ranking loss: mean over pairs of -log(sigmoid(r_chosen - r_rejected - margin)).

    r_chosen, r_rejected, margin: [B] -> scalar. The margin asks a clearly preferred pair to be
    separated by at least that much before its loss fades; margin 0 is plain Bradley–Terry
    (p(chosen wins) = sigmoid(r_chosen - r_rejected)). logsigmoid keeps it finite for any gap."""
    if margin is None:
        margin = torch.zeros_like(r_chosen)
    if not (r_chosen.shape == r_rejected.shape == margin.shape) or r_chosen.dim() != 1:
        raise ValueError(
            f"bradley_terry_loss: shapes {tuple(r_chosen.shape)}, {tuple(r_rejected.shape)}, "
            f"{tuple(margin.shape)}; expected three equal [B]"
        )
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()


class RewardModel(nn.Module):
    """A PolicyModel's LM body + ``head``: Linear(hidden, 1) at the last real token, no tanh."""

    def __init__(self, policy: PolicyModel, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__()
        self.policy = policy
        self.tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
        if self.tokenizer is None:
            raise ValueError("RewardModel needs a tokenizer (the policy carries none)")
        hidden = policy.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        # Small random weights, not zeros: a zero head passes no gradient to the body at step 0.
        nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.head.to(device=policy.device, dtype=policy.lm.dtype)
        self.max_len = int(policy.config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The transformer body and the reward head (not the unused LM head or value head)."""
        return list(self.policy.lm.model.parameters()) + list(self.head.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, T] (right-padded) -> float32 rewards [B]."""
        h = self.policy.hidden(input_ids, attention_mask)  # [B, T, H]
        last = attention_mask.long().sum(dim=1) - 1  # [B] index of the last real token
        h_last = h[torch.arange(h.shape[0], device=h.device), last]  # [B, H]
        return self.head(h_last).squeeze(-1).float()  # [B]

    def encode(self, prompt: str, response: str) -> list[int]:
        """prompt (with special tokens) + response; cut to the context, so an overlong response
        is judged on the part that fits."""
        ids = encode_prompt(self.tokenizer, prompt) + encode_continuation(self.tokenizer, response)
        return ids[: self.max_len]

    def batch(self, prompts: Sequence[str], responses: Sequence[str]):
        """Right-padded ids and mask [B, T] on the model's device."""
        seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        return right_pad(seqs, pad_token_id(self.tokenizer), self.device)

    @torch.no_grad()
    def rewards(
        self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32
    ) -> np.ndarray:
        """float64 [B]: the reward of each response (eval mode, no gradients)."""
        if len(prompts) != len(responses):
            raise ValueError(f"rewards: {len(prompts)} prompts but {len(responses)} responses")
        was_training = self.training
        self.eval()
        out = []
        for s in range(0, len(prompts), batch_size):
            ids, mask = self.batch(prompts[s : s + batch_size], responses[s : s + batch_size])
            out.append(self(ids, mask).double().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Atomically write the policy's HF directory plus ``reward_head.safetensors``."""

        def fill(tmp: Path) -> None:
            self.policy.save(str(tmp), self.tokenizer)
            head = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
            save_file(head, str(tmp / REWARD_HEAD_FILE))

        return atomic_write_dir(Path(directory), fill)

    @classmethod
    def load(
        cls, directory: str | Path, dtype: torch.dtype = torch.float32
    ) -> tuple[RewardModel, PreTrainedTokenizerBase]:
        head_path = Path(directory) / REWARD_HEAD_FILE
        if not head_path.exists():
            raise FileNotFoundError(
                f"reward model: {str(directory)!r} has no {REWARD_HEAD_FILE} (not a saved RewardModel)"
            )
        policy = PolicyModel.load(str(directory), dtype=dtype)
        model = cls(policy)
        model.head.load_state_dict(load_file(str(head_path)))
        model.eval()
        return model, model.tokenizer


def build_reward_model(cfg: PolicyConfig) -> tuple[RewardModel, PreTrainedTokenizerBase]:
    """A reward model on a fresh policy body of ``cfg``'s sizes (or the checkpoint at cfg.path);
    the head's initialisation is seeded by ``cfg.seed`` too."""
    policy, tokenizer = build_policy(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = RewardModel(policy, tokenizer)
    return model, tokenizer


# ---- training ----------------------------------------------------------------------------------


@dataclass
class RewardTrainMetrics:
    steps: int  # optimiser steps taken
    loss: float  # mean loss over the last tenth of the steps
    train_accuracy: float  # fraction of training pairs ranked right after training
    seconds: float  # wall-clock time of the loop


def _pair_loss(model: RewardModel, pairs: Sequence[PreferencePair]) -> torch.Tensor:
    """One forward over chosen and rejected together ([2B, T]), then the BT loss."""
    prompts = [p.prompt for p in pairs]
    ids, mask = model.batch(prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    r = model(ids, mask)  # [2B]
    n = len(pairs)
    margin = torch.tensor([p.margin for p in pairs], dtype=r.dtype, device=r.device)  # [B]
    return bradley_terry_loss(r[:n], r[n:], margin)


def train_reward_model(
    model: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
) -> RewardTrainMetrics:
    """AdamW on minibatches of ``pairs`` (shuffled epochs, seeded), Bradley–Terry with margin.

    ``tokenizer`` is the one the model reads with (normally the one it was built with); it is
    stored on the model, so later ``rewards`` and ``save`` use the same one."""
    if not pairs:
        raise ValueError("train_reward_model: no preference pairs")
    if steps < 1 or batch_size < 1:
        raise ValueError(
            f"train_reward_model: steps and batch_size must be >= 1 ({steps}, {batch_size})"
        )
    model.tokenizer = tokenizer
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    order: list[int] = []
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="reward model", disable=not sys.stderr.isatty())
    for _ in bar:
        if len(order) < batch_size:  # next shuffled epoch
            order += list(rng.permutation(len(pairs)))
        idx, order = order[:batch_size], order[batch_size:]
        loss = _pair_loss(model, [pairs[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), max_grad_norm)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :] if losses else [float("nan")]
    return RewardTrainMetrics(
        steps=steps,
        loss=float(np.mean(tail)),
        train_accuracy=accuracy(model, pairs),
        seconds=seconds,
    )


def accuracy(model: RewardModel, pairs: Sequence[PreferencePair], batch_size: int = 64) -> float:
    """Fraction of pairs whose chosen response gets the strictly higher reward."""
    if not pairs:
        return float("nan")
    prompts = [p.prompt for p in pairs]
    r_c = model.rewards(prompts, [p.chosen for p in pairs], batch_size)
    r_r = model.rewards(prompts, [p.rejected for p in pairs], batch_size)
    return float(np.mean(r_c > r_r))


# ---- where pairs come from ---------------------------------------------------------------------


def pairs_from_verifier(
    prompts: Sequence[str],
    responses: Sequence[str],
    rewards: Sequence[float],
    *,
    min_gap: float = 0.0,
    margin_scale: float = 1.0,
    max_pairs_per_prompt: int = 16,
    seed: int = 0,
) -> list[PreferencePair]:
    """Pairs of responses to the same prompt whose verifier rewards differ by more than
    ``min_gap``: the better one chosen, margin = margin_scale * reward gap (a pass against a fail
    with rewards 1/0 gets the full margin; partial credit, e.g. a fraction of tests, less).

    Identical response texts are counted once. At most ``max_pairs_per_prompt`` pairs per prompt
    (a seeded sample), so one prompt with many samples does not dominate."""
    if not (len(prompts) == len(responses) == len(rewards)):
        raise ValueError(
            f"pairs_from_verifier: {len(prompts)} prompts, {len(responses)} responses, "
            f"{len(rewards)} rewards"
        )
    rng = np.random.default_rng(seed)
    groups: dict[str, dict[str, float]] = defaultdict(dict)  # prompt -> response -> reward
    for p, r, w in zip(prompts, responses, rewards):
        groups[p].setdefault(r, float(w))
    out: list[PreferencePair] = []
    for prompt, scored in groups.items():
        items = list(scored.items())
        candidates = [(a, b, wa - wb) for a, wa in items for b, wb in items if wa - wb > min_gap]
        if len(candidates) > max_pairs_per_prompt:
            keep = rng.choice(len(candidates), size=max_pairs_per_prompt, replace=False)
            candidates = [candidates[i] for i in sorted(keep)]
        out += [PreferencePair(prompt, a, b, margin_scale * gap) for a, b, gap in candidates]
    return out


def pairs_from_judge(
    judge: PairwiseFeedback,
    prompts: Sequence[str],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    *,
    min_confidence: float = 0.1,
    margin_scale: float = 1.0,
) -> list[PreferencePair]:
    """Pairs from a judge's p(a better): the preferred side chosen, margin = margin_scale *
    2|p - 0.5| (0 for a coin flip, margin_scale for certainty); pairs with |p - 0.5| below
    ``min_confidence`` are near-ties and dropped (they teach noise)."""
    p = np.asarray(judge.compare(prompts, responses_a, responses_b), dtype=np.float64)
    out = []
    for prompt, a, b, pa in zip(prompts, responses_a, responses_b, p):
        confidence = abs(pa - 0.5)
        if confidence < min_confidence:
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        out.append(PreferencePair(prompt, chosen, rejected, margin_scale * 2.0 * confidence))
    return out


class RewardModelFeedback:
    """Feedback: a reward model's raw reward (an unbounded logit; scale it with the source's
    weight)."""

    def __init__(
        self,
        model: RewardModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        batch_size: int = 32,
    ):
        if tokenizer is not None and tokenizer is not model.tokenizer:
            model.tokenizer = tokenizer
        self.model, self.batch_size = model, batch_size

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.model.rewards(prompts, responses, self.batch_size)


__all__ = [
    "REWARD_HEAD_FILE",
    "PreferencePair",
    "RewardModel",
    "RewardModelFeedback",
    "RewardTrainMetrics",
    "accuracy",
    "bradley_terry_loss",
    "build_reward_model",
    "pairs_from_judge",
    "pairs_from_verifier",
    "train_reward_model",
]
