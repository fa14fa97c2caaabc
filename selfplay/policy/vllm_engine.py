"""The Engine protocol on vLLM (GPU): generation, scoring via ``prompt_logprobs``, priors.

Written against vLLM's offline API (``vllm.LLM``, ``vllm.SamplingParams``, token-id prompts).
It needs ``pip install 'selfplay[vllm]'`` and a GPU; nothing here runs in the CPU test suite.

Limits, stated plainly:
- vLLM does not expose hidden states, so ``evaluate`` cannot run the value head: its values are
  0.0. Use the torch engine (or a separate value model) where search needs values.
- ``load_weights`` pushes a state dict into the in-process model: ``LLM.apply_model`` where this
  vLLM has it (V1; it runs the function in every worker, so with V1 multiprocessing the function
  is pickled: set VLLM_ALLOW_INSECURE_SERIALIZATION=1), else the V0 driver-worker path.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch

try:
    import vllm
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        "engine.kind=vllm needs vLLM and a GPU: pip install 'selfplay[vllm]' "
        "(or use engine.kind=torch)"
    ) from exc

from selfplay.policy.config import EngineConfig
from selfplay.policy.engine import ActionEvaluation, Completion, SamplingParams
from selfplay.policy.sampling import mixed_seed
from selfplay.policy.priors import encode_decisions
from selfplay.policy.tokenizer import encode_continuation, encode_prompt, load_tokenizer


class VLLMEngine:
    """vLLM serving a policy directory (``PolicyModel.save`` output or any HF checkpoint)."""

    def __init__(self, path: str, cfg: EngineConfig | None = None):
        cfg = cfg if cfg is not None else EngineConfig()
        self.cfg = cfg
        self.tokenizer = load_tokenizer(path)
        kwargs = {"max_model_len": cfg.max_model_len} if cfg.max_model_len > 0 else {}
        self.llm = vllm.LLM(
            model=path,
            dtype=cfg.dtype,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_num_seqs=cfg.max_batch_size,
            enable_prefix_caching=cfg.prefix_sharing,
            enforce_eager=not cfg.compile,
            seed=cfg.seed,
            **kwargs,
        )
        self.max_len = self.llm.llm_engine.model_config.max_model_len
        self.policy_version = 0

    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[list[Completion]]:
        token_prompts = self._token_prompts(prompts)
        # One request seed per prompt, mixed with the prompt's tokens (as the embedded engine
        # does): with the seed alone every prompt of a call would draw the same random numbers.
        seeds = [None if sampling.seed is None else
                 mixed_seed(sampling.seed, zlib.crc32(np.asarray(p["prompt_token_ids"],
                                                                 dtype=np.int64).tobytes()))
                 for p in token_prompts]
        params = [self._params(sampling, seed) for seed in seeds]
        # Engine logprobs are untempered; vLLM's default mode reports the raw model's.
        outputs = self.llm.generate(token_prompts, params, use_tqdm=False)
        result = []
        for out in outputs:
            comps = []
            for c in out.outputs:
                lps = [float(step[t].logprob) for t, step in zip(c.token_ids, c.logprobs or [])]
                reason = "length" if c.finish_reason == "length" else "stop"
                comps.append(Completion(c.text, list(c.token_ids), lps, reason, self.policy_version))
            result.append(comps)
        return result

    @staticmethod
    def _params(sampling: SamplingParams, seed: int | None):
        return vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop),
            include_stop_str_in_output=True,
            seed=seed,
            ignore_eos=sampling.ignore_eos,
            logprobs=0,  # the sampled token's own logprob
        )

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        seqs, starts = [], []
        for p, c in zip(prompts, continuations):
            p_ids = encode_prompt(self.tokenizer, p)
            seqs.append(p_ids + encode_continuation(self.tokenizer, c))
            starts.append(len(p_ids))
        return self._sequence_logprobs(seqs, starts)

    def evaluate(
        self, states: Sequence[str], actions: Sequence[Sequence[str]]
    ) -> list[ActionEvaluation]:
        enc = encode_decisions(self.tokenizer, states, actions, self.max_len)
        seqs, starts = [], []
        for s_ids, acts in zip(enc.state_ids, enc.action_ids):
            for a_ids in acts:
                seqs.append(s_ids + a_ids)
                starts.append(len(s_ids))
        flat = np.asarray(self._sequence_logprobs(seqs, starts), dtype=np.float64)
        out, k = [], 0
        for acts in enc.action_ids:
            lp = flat[k : k + len(acts)]
            k += len(acts)
            p = np.exp(lp - lp.max())
            out.append(ActionEvaluation(p / p.sum(), 0.0, self.policy_version))  # no value head
        return out

    def load_weights(self, weights: Mapping[str, object], version: int) -> None:
        # vLLM's models take HF parameter names; drop our PolicyModel's "lm." prefix and the
        # value head, which vLLM does not serve.
        items = [
            (k.removeprefix("lm."), torch.as_tensor(v).detach().cpu())
            for k, v in weights.items()
            if not k.startswith("value_head.")
        ]
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda model: model.load_weights(items))
        else:  # vLLM V0
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            runner.model.load_weights(items)
        self.llm.reset_prefix_cache()  # cached keys/values came from the old weights
        self.policy_version = int(version)

    # ---- helpers -----------------------------------------------------------------------------

    def _token_prompts(self, prompts: Sequence[str]):
        return [{"prompt_token_ids": encode_prompt(self.tokenizer, p)} for p in prompts]

    def _sequence_logprobs(self, seqs: list[list[int]], starts: list[int]) -> list[float]:
        """Sum of log p(token) over positions >= start of each sequence (prompt_logprobs)."""
        params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
        outs = self.llm.generate([{"prompt_token_ids": s} for s in seqs], params, use_tqdm=False)
        scores = []
        for seq, start, out in zip(seqs, starts, outs):
            plp = out.prompt_logprobs  # per position: None at 0, else {token_id: Logprob}
            scores.append(sum(float(plp[t][seq[t]].logprob) for t in range(start, len(seq))))
        return scores


__all__ = ["VLLMEngine"]
