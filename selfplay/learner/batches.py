"""From a replay ``Batch`` to the typed tensors a loss reads (see ``losses.base``).

``decision_batch``: the policy's priors over each decision's candidate actions and its value
(identical decisions merged into one weighted row; every row weighs its draws' importance-sampling
weights, 1 unless the replay drew by priority), each candidate's Q, and the priors under a
reference version for a loss that needs one (DPO). ``priority_updates``: each drawn decision's value
error, the replay's new priority of it. ``token_batch``: the log-probability, under
the current weights and under a reference version, of every token each sample drew, gathered at
the completion positions only (the LM head runs on those rows, not on the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfplay.learner.losses.alphazero import pad_log_priors
from selfplay.learner.losses.base import DecisionBatch, TokenBatch
from selfplay.policy.model import PolicyModel, action_log_priors
from selfplay.policy.priors import right_pad
from selfplay.policy.tokenizer import encode_prompts, pad_token_id
from selfplay.replay.sampler import Batch
from selfplay.textgen.rollout import prompt_of


@dataclass
class MergedDecision:
    """Identical decisions of one batch, merged: one forward pass, weighted by ``count``."""

    observation: str
    actions: list[str]
    target: np.ndarray  # [A] mean visit distribution of the merged decisions (weighted)
    value_target: float  # mean value target (weighted)
    count: int
    weight: float = 0.0  # sum of the merged draws' importance-sampling weights (count if uniform)
    q_values: np.ndarray | None = None  # [A] mean Q of each candidate (weighted); None: not recorded


def mixed_value_targets(outcomes: np.ndarray, root_values: np.ndarray, mix: float) -> np.ndarray:
    """``(1 - mix) * outcome + mix * root value`` per decision, both from the view of the player
    to move; a decision without a root value (nan: no search) keeps its outcome.

    The outcome is unbiased but noisy (one game's result for every position of it); the root
    value is the search's lower-variance, biased estimate (KataGo and others mix the two)."""
    outcomes = np.asarray(outcomes, dtype=np.float32)
    roots = np.asarray(root_values, dtype=np.float32)
    mixed = (1.0 - mix) * outcomes + mix * roots
    return np.where(np.isfinite(roots), mixed, outcomes).astype(np.float32)


def merge_duplicates(batch: Batch) -> list[MergedDecision]:
    """Group decisions with the same observation and candidate actions.

    Games revisit positions constantly (every game starts from the same board), so a batch
    often holds one position many times; the loss over the merged group with weight ``count`` is
    the same as over the copies, at the price of one forward pass. Decisions without search
    statistics are left out. Copies drawn with different importance-sampling weights merge into
    their weighted means (the losses are linear in the targets, so the gradient is the same).
    """
    weights = np.asarray(batch.weights, dtype=np.float64)
    merged = []
    for (observation, actions), rows in _duplicate_groups(batch).items():
        w = weights[rows] if weights[rows].sum() > 0 else np.ones(len(rows))
        qs = [batch.q_values[i] for i in rows]
        merged.append(MergedDecision(
            observation=observation,
            actions=list(actions),
            target=np.average([batch.target_visits[i] for i in rows], axis=0, weights=w),
            value_target=float(np.average([batch.value_targets[i] for i in rows], weights=w)),
            count=len(rows),
            weight=float(weights[rows].sum()),
            q_values=(np.average(qs, axis=0, weights=w) if all(len(q) == len(actions) for q in qs)
                      else None),
        ))
    return merged


def _duplicate_groups(batch: Batch) -> dict[tuple[str, tuple[str, ...]], list[int]]:
    """Rows of the decisions with search statistics, by (observation, candidate actions)."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, visits in enumerate(batch.target_visits):
        if len(visits) > 0:
            groups.setdefault((batch.observations[i], tuple(batch.actions[i])), []).append(i)
    return groups


def decision_batch(model: PolicyModel, tokenizer, batch: Batch,
                   reference: PolicyModel | None = None,
                   sequence_priors: bool = False) -> tuple[DecisionBatch, dict]:
    """``sequence_priors``: each candidate's own log-probability under the LM, not a softmax over
    the candidates (``learner.step_prior=sequence``, for reasoning steps)."""
    groups = merge_duplicates(batch)
    if not groups:
        raise ValueError("batch has no decisions with search statistics")
    observations, actions = [g.observation for g in groups], [g.actions for g in groups]
    normalise = not sequence_priors
    log_priors, values = action_log_priors(model, tokenizer, observations, actions, normalise)
    padded, mask = pad_log_priors(log_priors)
    target = torch.zeros_like(padded)
    q = torch.full_like(padded, float("nan"))
    for row, g in enumerate(groups):
        target[row, : len(g.target)] = torch.tensor(g.target, dtype=padded.dtype)
        if g.q_values is not None:
            q[row, : len(g.q_values)] = torch.tensor(g.q_values, dtype=padded.dtype)
    ref = None
    if reference is not None:
        with torch.no_grad():
            ref, _ = pad_log_priors(action_log_priors(reference, tokenizer, observations, actions,
                                                      normalise)[0])
    out = DecisionBatch(
        log_priors=padded,
        action_mask=mask,
        values=values,
        target_policy=target,
        target_values=torch.tensor([g.value_target for g in groups], dtype=values.dtype),
        weights=torch.tensor([g.weight for g in groups], dtype=values.dtype),
        target_q=q,
        ref_log_priors=ref,
    )
    return out, {"learner/unique_fraction": len(groups) / len(batch)}


def priority_updates(model: PolicyModel, tokenizer, batch: Batch) -> tuple[list, np.ndarray]:
    """(keys, errors [n]): ``|value - value_target|`` of each drawn decision with search
    statistics under ``model`` now (no gradient; one forward pass per distinct position), the
    error prioritised replay draws by. Decisions without search statistics are left out."""
    groups = _duplicate_groups(batch)
    if not groups:
        return [], np.zeros(0)
    with torch.no_grad():
        _, values = action_log_priors(model, tokenizer, [o for o, _ in groups],
                                      [list(a) for _, a in groups])
    keys, errors = [], []
    for value, rows in zip(values.detach().cpu().tolist(), groups.values()):
        for i in rows:
            keys.append(batch.keys[i])
            errors.append(abs(value - float(batch.value_targets[i])))
    return keys, np.asarray(errors, dtype=np.float64)


@dataclass
class EncodedSamples:
    """Prompt + sampled tokens of each decision, as one right-padded batch."""

    ids: torch.Tensor  # [B, L]
    attention: torch.Tensor  # [B, L]
    positions: torch.Tensor  # [B, T] position whose logits predict each sampled token
    targets: torch.Tensor  # [B, T] the sampled tokens (pad where masked)
    mask: torch.Tensor  # [B, T] True on real tokens


def encode_samples(tokenizer, batch: Batch, device) -> EncodedSamples:
    usable = [i for i, t in enumerate(batch.token_ids) if len(t) > 0]
    if len(usable) != len(batch):
        raise ValueError(f"{len(batch) - len(usable)} decisions of the batch carry no sampled "
                         "tokens (a token loss needs the tokens the policy sampled)")
    prompts = encode_prompts(tokenizer, [prompt_of(o) for o in batch.observations])
    completions = [list(map(int, t)) for t in batch.token_ids]
    pad = pad_token_id(tokenizer)
    ids, attention = right_pad([p + c for p, c in zip(prompts, completions)], pad, device)
    width = max(len(c) for c in completions)
    positions = np.zeros((len(batch), width), dtype=np.int64)
    targets = np.full((len(batch), width), pad, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=bool)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        positions[b, : len(c)] = np.arange(len(p) - 1, len(p) - 1 + len(c))
        targets[b, : len(c)] = c
        mask[b, : len(c)] = True
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return EncodedSamples(ids, attention, as_t(positions), as_t(targets), as_t(mask))


def sampled_logprobs(model: PolicyModel, enc: EncodedSamples) -> torch.Tensor:
    """[B, T] log p of each sampled token (differentiable unless called under no_grad)."""
    hidden = model.hidden(enc.ids, enc.attention)  # [B, L, H]
    picked = hidden.gather(1, enc.positions[..., None].expand(-1, -1, hidden.shape[-1]))
    logp = torch.log_softmax(model.logits_of(picked), dim=-1)  # [B, T, V]
    return logp.gather(-1, enc.targets[..., None]).squeeze(-1)


def token_batch(
    model: PolicyModel, tokenizer, batch: Batch, reference: PolicyModel | None
) -> tuple[TokenBatch, dict]:
    enc = encode_samples(tokenizer, batch, model.device)
    logprobs = sampled_logprobs(model, enc)
    ref = None
    if reference is not None:
        with torch.no_grad():
            ref = sampled_logprobs(reference, enc)
    sample = torch.zeros_like(logprobs)
    for b, lp in enumerate(batch.sample_logprobs):
        sample[b, : len(lp)] = torch.tensor(np.asarray(lp, dtype=np.float32), dtype=sample.dtype)
    k = max(len(g) for g in batch.group_rewards)
    rewards = torch.full((len(batch), k), float("nan"), dtype=torch.float32)
    for b, g in enumerate(batch.group_rewards):
        rewards[b, : len(g)] = torch.tensor(np.asarray(g, dtype=np.float32))
    out = TokenBatch(
        logprobs=logprobs,
        sample_logprobs=sample,
        ref_logprobs=ref,
        mask=enc.mask,
        group_rewards=rewards,
        group_index=torch.as_tensor(np.asarray(batch.group_index, dtype=np.int64)),
        weights=torch.as_tensor(np.asarray(batch.weights, dtype=np.float32), device=logprobs.device,
                                dtype=logprobs.dtype),
    )
    tokens = enc.mask.sum(-1).to(torch.float32)
    return out, {"learner/tokens_per_sample": float(tokens.mean()),
                 "learner/reward_mean": float(np.mean([g[i] for g, i in
                                                       zip(batch.group_rewards, batch.group_index)]))}


BUILDERS = {"decisions": decision_batch, "tokens": token_batch}
