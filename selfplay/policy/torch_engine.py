"""The embedded torch engine: batched generation over a slot-scheduled KV cache, scoring, and
priors/values for search. CPU by default (float32, or bfloat16 where the CPU has bf16 units:
oneDNN-packed matmuls and numba kernels, ``selfplay.policy.decoder``); on a GPU with bfloat16 and
a compiled decode step.

How ``generate`` runs: every (prompt, completion index) pair is a sequence in a queue. The cache
has ``max_batch_size`` slots; between decode steps free slots are refilled from the queue
(continuous batching), so short completions never hold a batch back. Admission prefills each
distinct prompt once (prefix sharing: the n completions of a prompt, and requests with the same
prompt, copy one prefill's keys/values into their slots) and samples the first token from its
last position. Every sequence draws from its own generator, seeded by (seed, completion index)
only, so a seeded prompt samples the same tokens whatever else is in the call or the batch; a
decode step samples every row in one vectorised pass (``sampling.sample``). Public methods hold a
lock, so concurrent callers (threads of one actor) are served one call at a time.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from selfplay.policy.config import EngineConfig
from selfplay.policy.decoder import Decoder
from selfplay.policy.engine import (
    ActionEvaluation,
    Completion,
    EngineInputError,
    SamplingParams,
)
from selfplay.policy.priors import (
    EncodedDecisions,
    encode_decisions,
    encode_generation_prompts,
    log_priors_from_ids,
    right_pad,
)
from selfplay.policy.sampling import draw_uniforms, sample, sequence_generator
from selfplay.policy.tokenizer import (
    encode_continuation,
    is_encodable,
    pad_token_id,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class _Sequence:
    """One completion being generated."""

    request: int  # index of its prompt in the generate() call
    prompt: tuple[int, ...]  # prompt token ids
    budget: int  # new tokens allowed (max_tokens capped by the context left)
    uniforms: list[float]  # one per token it may sample
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    text: str | None = None  # set when a stop string cut it
    running: str = ""  # the text so far, kept only where the tokenizer's pieces concatenate


@dataclass
class EngineStats:
    """Counters for tests and benchmarks."""

    prefill_tokens: int = 0  # prompt tokens run through prefill
    decode_steps: int = 0  # batched decode forwards
    max_active: int = 0  # most sequences decoded together


class _DecoderView:
    """The engine's own forward, shaped like a PolicyModel for ``log_priors_from_ids``."""

    def __init__(self, decoder: Decoder, device: torch.device):
        self.decoder, self.device = decoder, device

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder.prefill(ids)[0]  # right padding: causality alone masks it

    def logits_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.head(hidden)

    def values_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.value(hidden)


class TorchEngine:
    """The Engine protocol over a ``PolicyModel`` (which the engine moves to its device/dtype
    and from then on owns)."""

    def __init__(self, model, tokenizer, cfg: EngineConfig | None = None):
        cfg = cfg if cfg is not None else EngineConfig()
        if cfg.dtype not in DTYPES:
            raise ValueError(f"engine.dtype: {cfg.dtype!r} is not one of {sorted(DTYPES)}")
        if cfg.max_batch_size < 1:
            raise ValueError(f"engine.max_batch_size must be >= 1, got {cfg.max_batch_size}")
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        context = int(model.config.max_position_embeddings)
        self.max_len = min(context, cfg.max_model_len) if cfg.max_model_len > 0 else context
        self.decoder = Decoder(self.model, self.max_len)
        self.view = _DecoderView(self.decoder, self.device)
        self.policy_version = 0
        self.prefix_sharing = cfg.prefix_sharing
        self.stats = EngineStats()
        self._pad = pad_token_id(tokenizer)
        self._pieces = _concatenative_pieces(tokenizer)
        self._eos = self._eos_ids(model, tokenizer)
        self._rng = np.random.default_rng(cfg.seed)
        self._lock = threading.Lock()
        self._cache: torch.Tensor | None = None
        # CUDA graphs need fixed shapes: the compiled step always covers every slot and the
        # whole context (the mask hides what is unused).
        self._static = cfg.compile and self.device.type == "cuda"
        self._decode = self.decoder.decode
        if self._static:
            self._decode = torch.compile(
                self.decoder.decode, mode="reduce-overhead", fullgraph=True, dynamic=False
            )

    @staticmethod
    def _eos_ids(model, tokenizer) -> frozenset[int]:
        ids = {tokenizer.eos_token_id}
        gen = getattr(model.lm, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return frozenset(int(i) for i in ids if i is not None)

    # ---- Engine protocol ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[list[Completion]]:
        _check_sampling(sampling)
        encoded = self._encode_prompts(prompts)
        with self._lock, torch.inference_mode():
            seqs = []
            for i, ids in enumerate(encoded):
                budget = min(sampling.max_tokens, self.max_len - len(ids))
                for k in range(sampling.n):
                    gen = sequence_generator(sampling.seed, k, self._rng, ids)
                    seqs.append(_Sequence(i, ids, budget, draw_uniforms(gen, budget)))
            self._run(seqs, sampling)
        out: list[list[Completion]] = [[] for _ in prompts]
        for s in seqs:
            text = s.text if s.text is not None else self._decode_text(s.token_ids)
            out[s.request].append(
                Completion(text, s.token_ids, s.logprobs, s.finish_reason, self.policy_version)
            )
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        if len(prompts) != len(continuations):
            raise EngineInputError(
                f"score: {len(prompts)} prompts but {len(continuations)} continuations"
            )
        pairs = []
        for i, (p_ids, c) in enumerate(zip(self._encode_prompts(prompts), continuations)):
            c_ids = encode_continuation(self.tokenizer, c) if isinstance(c, str) else None
            if c_ids is None or (c and not is_encodable(self.tokenizer, c_ids)):
                raise EngineInputError(
                    f"request {i}: the continuation {c!r} cannot be encoded by the tokenizer"
                )
            if len(p_ids) + len(c_ids) > self.max_len:
                raise EngineInputError(
                    f"request {i}: prompt + continuation is {len(p_ids) + len(c_ids)} tokens, "
                    f"longer than the context ({self.max_len})"
                )
            pairs.append((p_ids, c_ids))
        scores: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(pairs), self.cfg.max_batch_size):
                scores.extend(self._score_batch(pairs[start : start + self.cfg.max_batch_size]))
        return scores

    def evaluate(
        self, states: Sequence[str], actions: Sequence[Sequence[str]]
    ) -> list[ActionEvaluation]:
        enc = encode_decisions(self.tokenizer, states, actions, self.max_len)
        out: list[ActionEvaluation] = []
        step = self.cfg.max_batch_size
        with self._lock, torch.inference_mode():
            for start in range(0, len(enc.state_ids), step):
                part = EncodedDecisions(
                    enc.state_ids[start : start + step], enc.action_ids[start : start + step]
                )
                log_priors, values = log_priors_from_ids(self.view, part, self._pad)
                for b, lp in enumerate(log_priors):
                    if not torch.isfinite(lp).all():
                        raise EngineInputError(
                            f"request {start + b}: the model produced non-finite priors (NaN "
                            f"weights or logits)"
                        )
                    p = lp.double().exp().cpu().numpy()
                    out.append(ActionEvaluation(p / p.sum(), float(values[b]), self.policy_version))
        return out

    def load_weights(self, weights: Mapping[str, object], version: int) -> None:
        """Copy a state dict in place (keys of the PolicyModel, or of the bare HF LM)."""
        with self._lock, torch.no_grad():
            own = self.model.state_dict(keep_vars=True)
            for key, value in weights.items():
                target = own.get(key, own.get(f"lm.{key}"))
                if target is None:
                    raise ValueError(f"load_weights: {key!r} is not a parameter of the policy")
                value = torch.as_tensor(value)
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"load_weights: {key!r} has shape {tuple(value.shape)}, the policy's is "
                        f"{tuple(target.shape)}"
                    )
                target.copy_(value)
            self.decoder.refresh()  # the fused weights are copies: rebuild them
            self.policy_version = int(version)

    # ---- generation --------------------------------------------------------------------------

    def _run(self, seqs: list[_Sequence], sampling: SamplingParams) -> None:
        """Decode every sequence to completion with at most max_batch_size in flight."""
        slots_n = min(self.cfg.max_batch_size, len(seqs))
        cache = self._slot_cache(slots_n)
        slots: list[_Sequence | None] = [None] * slots_n
        next_tok = np.full(slots_n, self._pad, dtype=np.int64)  # token each slot feeds next
        next_pos = np.zeros(slots_n, dtype=np.int64)  # position it is fed at
        queue = deque(seqs)
        waiting = Counter(self._prompt_key(s) for s in seqs)  # sequences not yet admitted
        prefilled: dict = {}  # prompt key -> (keys/values [L, 2, Hkv, T, D], logits [V])
        while queue or any(s is not None for s in slots):
            free = [i for i, s in enumerate(slots) if s is None]
            if free and queue:
                admitted = [(slot, queue.popleft()) for slot in free[: len(queue)]]
                self._admit(admitted, cache, prefilled, waiting, sampling)
                for slot, seq in admitted:
                    if seq.finish_reason is None:
                        slots[slot] = seq
                        next_tok[slot], next_pos[slot] = seq.token_ids[-1], len(seq.prompt)
            active = [i for i, s in enumerate(slots) if s is not None]
            if not active:
                continue
            width = slots_n if self._static else active[-1] + 1
            span = self.max_len if self._static else int(next_pos[:width].max()) + 1
            # Copies on a GPU; on a CPU views of the arrays, which change only after the step.
            tokens = torch.from_numpy(next_tok[:width]).to(self.device)  # [W]
            positions = torch.from_numpy(next_pos[:width]).to(self.device)  # [W]
            hidden = self._decode(cache, tokens, positions, span)  # [W, H]
            logits = self.decoder.head(hidden)  # [W, V]
            uniforms = None
            if sampling.temperature > 0:  # each row's next uniform (greedy needs none)
                uniforms = torch.tensor(
                    [s.uniforms[len(s.token_ids)] if s is not None else 0.0 for s in slots[:width]],
                    dtype=torch.float32,  # float32 as ever: the same seed gives the same tokens
                    device=self.device,
                )
            new, logp = sample(
                logits, uniforms, sampling.temperature, sampling.top_k, sampling.top_p
            )
            self.stats.decode_steps += 1
            self.stats.max_active = max(self.stats.max_active, len(active))
            new_l, logp_l = new.tolist(), logp.tolist()
            self._check_finite(logp_l, active, slots)
            for i in active:
                seq = slots[i]
                self._append(seq, new_l[i], logp_l[i], sampling)
                if seq.finish_reason is not None:
                    slots[i], next_tok[i], next_pos[i] = None, self._pad, 0
                else:
                    next_tok[i], next_pos[i] = new_l[i], next_pos[i] + 1

    def _admit(self, admitted, cache, prefilled, waiting, sampling) -> None:
        """Prefill the prompts not yet prefilled, copy their keys/values into the slots and
        sample each admitted sequence's first token."""
        missing: dict = {}
        for _, seq in admitted:
            key = self._prompt_key(seq)
            if key not in prefilled:
                missing.setdefault(key, seq.prompt)
        keys = list(missing)
        for start in range(0, len(keys), self.cfg.max_batch_size):
            chunk = keys[start : start + self.cfg.max_batch_size]
            prompts = [missing[k] for k in chunk]
            ids, _ = right_pad(prompts, self._pad, self.device)  # [P, T]
            last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)  # [P]
            hidden, kv = self.decoder.prefill(ids, last)  # [P, H], [L, 2, P, Hkv, T, D]
            logits = self.decoder.head(hidden)  # [P, V]
            self.stats.prefill_tokens += sum(len(p) for p in prompts)
            for j, (key, p) in enumerate(zip(chunk, prompts)):
                prefilled[key] = (kv[:, :, j, :, : len(p)], logits[j])
        rows = []
        for slot, seq in admitted:
            key = self._prompt_key(seq)
            kv, logits = prefilled[key]
            cache[:, :, slot, :, : len(seq.prompt)].copy_(kv)
            rows.append(logits)
            waiting[key] -= 1
            if waiting[key] == 0:
                del prefilled[key]  # every sequence of this prompt is in: free its prefill
        logits = torch.stack(rows)  # [A, V]
        seqs = [seq for _, seq in admitted]
        uniforms = torch.tensor([s.uniforms[0] for s in seqs], dtype=torch.float32,
                                device=self.device)
        new, logp = sample(logits, uniforms, sampling.temperature, sampling.top_k, sampling.top_p)
        new_l, logp_l = new.tolist(), logp.tolist()
        self._check_finite(logp_l, range(len(seqs)), seqs)
        for seq, tok, lp in zip(seqs, new_l, logp_l):
            self._append(seq, tok, lp, sampling)

    def _append(self, seq: _Sequence, token: int, logprob: float, sampling: SamplingParams):
        """Record a sampled token and decide whether the sequence is finished."""
        seq.token_ids.append(token)
        seq.logprobs.append(logprob)
        eos = token in self._eos and not sampling.ignore_eos
        if eos or sampling.stop and self._cut_at_stop(seq, sampling.stop):
            seq.finish_reason = "stop"
        elif len(seq.token_ids) >= seq.budget:
            seq.finish_reason = "length"

    def _cut_at_stop(self, seq: _Sequence, stops: Sequence[str]) -> bool:
        """If the text now contains a stop string, keep the text up to the end of the first one.
        Called once per new token. Where each token's text is a fixed piece (the character
        tokenizer) the text grows by that piece, with no decode of the whole sequence per token."""
        if self._pieces is not None:
            seq.running += self._pieces[seq.token_ids[-1]]
            text = seq.running
        else:
            text = self._decode_text(seq.token_ids)
        ends = [text.find(s) + len(s) for s in stops if s and s in text]
        if not ends:
            return False
        seq.text = text[: min(ends)]
        return True

    # ---- helpers -----------------------------------------------------------------------------

    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        ids, _ = right_pad([list(p) + c for p, c in pairs], self._pad, self.device)  # [B, T]
        hidden, _ = self.decoder.prefill(ids)  # [B, T, H]
        rows, cols, targets = [], [], []
        for b, (p, c) in enumerate(pairs):
            for k, tok in enumerate(c):  # position t predicts token t + 1
                rows.append(b)
                cols.append(len(p) - 1 + k)
                targets.append(tok)
        if not rows:
            return [0.0] * len(pairs)
        logp = F.log_softmax(self.decoder.head(hidden[rows, cols]), dim=-1)  # [M, V]
        tok_lp = logp.gather(1, torch.tensor(targets, device=self.device)[:, None])[:, 0]  # [M]
        sums = torch.zeros(len(pairs), dtype=torch.float64, device=self.device)
        sums.index_add_(0, torch.tensor(rows, device=self.device), tok_lp.double())
        if not torch.isfinite(sums).all():
            bad = int((~torch.isfinite(sums)).nonzero()[0, 0])
            raise EngineInputError(f"request {bad}: the model produced a non-finite score")
        return sums.tolist()

    def _encode_prompts(self, prompts: Sequence[str]) -> list[tuple[int, ...]]:
        """Token ids of each prompt (in one tokenizer call), each checked: a non-empty string
        that leaves room in the context for at least one new token."""
        return [tuple(ids) for ids in encode_generation_prompts(self.tokenizer, prompts, self.max_len)]

    def _prompt_key(self, seq: _Sequence):
        # Without prefix sharing every sequence is its own prompt (prefilled separately).
        return seq.prompt if self.prefix_sharing else (seq.prompt, id(seq))

    def _slot_cache(self, slots: int) -> torch.Tensor:
        """The KV cache, grown (never shrunk) to ``slots`` slots and kept between calls."""
        if self._cache is None or self._cache.shape[2] < slots:
            self._cache = None  # free the old one first
            # CUDA graphs want one fixed buffer: size it for the largest batch up front.
            size = max(slots, self.cfg.max_batch_size) if self._static else slots
            self._cache = self.decoder.new_cache(size)
            if self._static:
                torch._dynamo.mark_static_address(self._cache)  # a fixed buffer for CUDA graphs
        return self._cache

    @staticmethod
    def _check_finite(logprobs: list[float], rows, seqs) -> None:
        """NaN/inf logits mean broken weights or inputs: fail loudly instead of sampling junk.
        A NaN or +inf logit makes its whole log-softmax row NaN or -inf/NaN, so the chosen
        token's log-probability (already on the host) tells, with no extra pass over [B, V]."""
        for r in rows:
            if not math.isfinite(logprobs[r]):
                raise EngineInputError(
                    f"request {seqs[r].request}: the model produced non-finite logits (NaN "
                    f"weights?)"
                )

    def _decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _concatenative_pieces(tokenizer) -> list[str] | None:
    """Each token id's text, where decoding a sequence is exactly joining those texts: a
    WordLevel vocabulary joined by a Fuse decoder with no space clean-up (the character
    tokenizer). None for any other tokenizer (BPE merges bytes across tokens, SentencePiece
    strips a leading space, ...): those decode the whole sequence at every stop-string check."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is None
        or type(backend.model).__name__ != "WordLevel"
        or type(backend.decoder).__name__ != "Fuse"
        or getattr(tokenizer, "clean_up_tokenization_spaces", True)
        or len(tokenizer) > 4096
    ):
        return None
    ids = list(range(len(tokenizer)))
    pieces = [tokenizer.decode([i], skip_special_tokens=True) for i in ids]
    if tokenizer.decode(ids + ids[::-1], skip_special_tokens=True) != "".join(pieces + pieces[::-1]):
        return None  # not what the structure promised: keep the exact, slower path
    return pieces


def _check_sampling(s: SamplingParams) -> None:
    problems = []
    if s.n < 1:
        problems.append(f"n={s.n} (must be >= 1)")
    if s.max_tokens < 1:
        problems.append(f"max_tokens={s.max_tokens} (must be >= 1)")
    if s.temperature < 0 or s.temperature != s.temperature:
        problems.append(f"temperature={s.temperature} (must be >= 0)")
    if not 0.0 < s.top_p <= 1.0:
        problems.append(f"top_p={s.top_p} (must be in (0, 1])")
    if s.top_k < 0:
        problems.append(f"top_k={s.top_k} (must be >= 0)")
    if problems:
        raise EngineInputError("sampling params: " + "; ".join(problems))


__all__ = ["DTYPES", "EngineStats", "TorchEngine"]
