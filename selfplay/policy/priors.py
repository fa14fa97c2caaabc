"""Priors over a given set of actions: the one definition the learner and the engines share.

log p(action | state) is the sum of the log-probabilities of the action's tokens appended after
the state's tokens; the prior is that, renormalised (log_softmax) over the state's own actions, so
illegal moves get no mass at all. The value is the value head at the state's last token.

Two paths, same numbers: when every action is a single token (a game move such as "5") one
forward over the states suffices and the action logits are gathered from the last position; any
multi-token action switches to one forward over all (state + action) sequences.
Everything is differentiable: the learner backpropagates through ``action_log_priors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from selfplay.policy.engine import EngineInputError
from selfplay.policy.tokenizer import (
    encode_continuations,
    encode_prompts,
    is_encodable,
    pad_token_id,
)


@dataclass
class EncodedDecisions:
    """Token ids of a batch of decisions, validated."""

    state_ids: list[list[int]]  # per state, with the tokenizer's special tokens (e.g. <bos>)
    action_ids: list[list[list[int]]]  # per state, per action, without special tokens


def encode_decisions(
    tokenizer: PreTrainedTokenizerBase,
    states: Sequence[str],
    actions: Sequence[Sequence[str]],
    max_len: int,
) -> EncodedDecisions:
    """Encode and check states/actions; EngineInputError names the offending request index.
    States are encoded in one tokenizer call and each distinct action string once (a search
    asks about the same few moves in every state)."""
    if len(states) != len(actions):
        raise EngineInputError(
            f"evaluate: {len(states)} states but {len(actions)} action lists (one list per state)"
        )
    for i, (state, acts) in enumerate(zip(states, actions)):
        if not isinstance(state, str) or not state:
            raise EngineInputError(f"request {i}: the state is empty (or not a string)")
        if isinstance(acts, str) or len(acts) == 0:
            raise EngineInputError(f"request {i}: the action list is empty (or a bare string)")
    distinct = list({act for acts in actions for act in acts if isinstance(act, str) and act})
    encoded = dict(zip(distinct, encode_continuations(tokenizer, distinct))) if distinct else {}
    usable = {act for act, ids in encoded.items() if is_encodable(tokenizer, ids)}
    state_ids = encode_prompts(tokenizer, list(states))
    action_ids = []
    for i, (s_ids, acts) in enumerate(zip(state_ids, actions)):
        a_ids = []
        for j, act in enumerate(acts):
            ids = encoded[act] if isinstance(act, str) and act in usable else None
            if ids is None:
                raise EngineInputError(
                    f"request {i}: action {j} ({act!r}) cannot be encoded by the tokenizer "
                    f"(empty, or characters outside its vocabulary)"
                )
            a_ids.append(ids)
        longest = len(s_ids) + max(len(a) for a in a_ids)
        if longest > max_len:
            raise EngineInputError(
                f"request {i}: state + action is {longest} tokens, longer than the policy's "
                f"context of {max_len} tokens (policy.max_seq_len, or engine.max_model_len "
                "if smaller); shorten the game's rendering or raise policy.max_seq_len"
            )
        action_ids.append(a_ids)
    return EncodedDecisions(state_ids, action_ids)


def encode_generation_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_len: int
) -> list[list[int]]:
    """Token ids of each prompt (one tokenizer call), each checked: a non-empty string that
    leaves room in the context for at least one new token; EngineInputError names the request.
    Both engines' ``generate`` start here."""
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt:
            raise EngineInputError(f"request {index}: the prompt is empty (or not a string)")
    encoded = encode_prompts(tokenizer, list(prompts))
    for index, ids in enumerate(encoded):
        if len(ids) >= max_len:
            raise EngineInputError(
                f"request {index}: the prompt is {len(ids)} tokens; the policy's context is "
                f"{max_len} (policy.max_seq_len, or engine.max_model_len if smaller), so no "
                "token could be generated"
            )
    return [list(ids) for ids in encoded]


def right_pad(seqs: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] and attention mask [B, T] (1 = real token)."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
        mask[b, : len(s)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def log_priors_from_ids(
    model, enc: EncodedDecisions, pad: int, normalise: bool = True
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(log-priors [A_i] per state, values [B]) from validated ids; see the module docstring.

    ``normalise=False``: each action's own log-probability under the LM (the sum over its tokens)
    instead of a log-softmax over the state's actions; for actions sampled from an open space (a
    reasoning step), where the listed ones are not all there are.

    ``model`` needs ``device``, ``hidden(ids, mask)``, ``logits_of(h)`` and ``values_of(h)``: a
    ``PolicyModel`` (the learner, differentiable) or the engine's view of its own forward."""
    if normalise and all(len(a) == 1 for acts in enc.action_ids for a in acts):
        return _single_token(model, enc, pad)
    return _multi_token(model, enc, pad, normalise)


def _single_token(model, enc: EncodedDecisions, pad: int):
    device = model.device
    ids, mask = right_pad(enc.state_ids, pad, device)  # [B, T]
    h = model.hidden(ids, mask)  # [B, T, H]
    last = torch.tensor([len(s) - 1 for s in enc.state_ids], device=device)  # [B]
    h_last = h[torch.arange(len(last), device=device), last]  # [B, H]
    logp = F.log_softmax(model.logits_of(h_last), dim=-1)  # [B, V]
    priors = []
    for b, acts in enumerate(enc.action_ids):
        a = torch.tensor([x[0] for x in acts], device=device)  # [A_b]
        priors.append(F.log_softmax(logp[b, a], dim=-1))
    return priors, model.values_of(h_last).float()


def _multi_token(model, enc: EncodedDecisions, pad: int, normalise: bool = True):
    device = model.device
    seqs, pair_pos, pair_tgt, pair_of, first_pair = [], [], [], [], []
    for b, (s_ids, acts) in enumerate(zip(enc.state_ids, enc.action_ids)):
        first_pair.append(len(seqs))
        for a_ids in acts:
            p = len(seqs)
            seqs.append(s_ids + a_ids)
            # Position t predicts token t+1: the action's tokens are predicted from
            # positions len(state)-1 ... len(state)+len(action)-2.
            for k, tok in enumerate(a_ids):
                pair_pos.append((p, len(s_ids) - 1 + k))
                pair_tgt.append(tok)
                pair_of.append(p)
    ids, mask = right_pad(seqs, pad, device)  # [N, T]
    h = model.hidden(ids, mask)  # [N, T, H]
    rows = torch.tensor([p for p, _ in pair_pos], device=device)  # [M]
    cols = torch.tensor([t for _, t in pair_pos], device=device)  # [M]
    logp = F.log_softmax(model.logits_of(h[rows, cols]), dim=-1)  # [M, V]
    tok_lp = logp.gather(1, torch.tensor(pair_tgt, device=device)[:, None]).squeeze(1)  # [M]
    seq_lp = torch.zeros(len(seqs), device=device, dtype=tok_lp.dtype).index_add(
        0, torch.tensor(pair_of, device=device), tok_lp
    )  # [N]
    priors, start = [], 0
    for acts in enc.action_ids:
        own = seq_lp[start : start + len(acts)]
        priors.append(F.log_softmax(own, dim=-1) if normalise else own)
        start += len(acts)
    state_rows = torch.tensor(first_pair, device=device)  # [B]
    state_last = torch.tensor([len(s) - 1 for s in enc.state_ids], device=device)  # [B]
    values = model.values_of(h[state_rows, state_last]).float()  # [B]
    return priors, values


def action_log_priors(
    model,
    tokenizer: PreTrainedTokenizerBase,
    states: Sequence[str],
    actions: Sequence[Sequence[str]],
    normalise: bool = True,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Log-priors over each state's actions ([A_i] tensors, each a log-distribution; with
    ``normalise=False`` each action's own sequence log-probability) and values [B] from the value
    head at each state's last token. ``model`` is a ``PolicyModel``."""
    max_len = int(model.config.max_position_embeddings)
    enc = encode_decisions(tokenizer, states, actions, max_len)
    return log_priors_from_ids(model, enc, pad_token_id(tokenizer), normalise)


__all__ = ["EncodedDecisions", "action_log_priors", "encode_decisions", "log_priors_from_ids"]
