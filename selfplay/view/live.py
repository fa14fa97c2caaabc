"""Two checkpoints of a run evaluated live on the same position or prompt, for the compare page.

    live = LivePolicies(run_dir)
    live.evaluate([0, 3], "X to move\n...", ["1", "2", ...])   # games: priors and value of each
    live.complete([0, 3], "What is 2 + 3?", sampled=False)     # text: a greedy completion of each

Each version's checkpoint (``checkpoints/version-NNNNNN/``) is loaded with the embedded torch
engine on the CPU, read only, and the last ``keep`` loaded stay cached. The compute is bounded:
one evaluation at a time (a lock: the viewer shares the machine with the run), a prompt of at
most ``MAX_PROMPT_CHARS``, completions of at most ``MAX_TOKENS`` tokens, ``MAX_SAMPLES`` samples.
Whatever goes wrong with a checkpoint or an input comes back as one ``LiveError`` sentence.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfplay.learner.checkpoint import checkpoint_dir
from selfplay.policy.engine import Engine, EngineInputError, SamplingParams

KEEP_LOADED = 2  # checkpoints kept loaded (least recently used goes first)
MAX_PROMPT_CHARS = 4000
MAX_TOKENS = 128
DEFAULT_TOKENS = 64
MAX_SAMPLES = 4
SAMPLE_SEED = 0  # the same seed for both versions: differences come from the weights


class LiveError(Exception):
    """A checkpoint that cannot be loaded, or an input it cannot be run on (one sentence)."""


class LivePolicies:
    """The checkpoints of one run directory, loaded on demand."""

    def __init__(self, run_dir: str | Path, *, keep: int = KEEP_LOADED):
        self.run_dir = Path(run_dir)
        self.keep = keep
        self._engines: OrderedDict[int, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # checkpoints loaded so far (a cached one is not loaded again)

    def _engine(self, version: int) -> Engine:
        if version in self._engines:
            self._engines.move_to_end(version)
            return self._engines[version]
        folder = checkpoint_dir(self.run_dir, version)
        if not (folder / "meta.json").exists():
            raise LiveError(f"v{version}: no checkpoint at {folder.relative_to(self.run_dir)}")
        if not (folder / "config.json").exists():
            raise LiveError(f"v{version}: {folder.relative_to(self.run_dir)} holds no weights "
                            "to load (no config.json)")
        from selfplay.policy.config import EngineConfig, PolicyConfig
        from selfplay.policy.factory import make_engine

        try:
            engine = make_engine(PolicyConfig(path=str(folder)),
                                 EngineConfig(kind="torch", device="cpu", max_batch_size=8))
            engine.policy_version = int(json.loads((folder / "meta.json").read_text())["version"])
        except Exception as err:  # noqa: BLE001 - a run directory is untrusted: one line, any error
            reason = " ".join(str(err).split())[:240] or type(err).__name__
            raise LiveError(f"v{version}: the checkpoint at {folder.relative_to(self.run_dir)} "
                            f"does not load ({reason})") from None
        self.loads += 1
        self._engines[version] = engine
        while len(self._engines) > self.keep:
            self._engines.popitem(last=False)
        return engine

    def evaluate(self, versions: Sequence[int], observation: str,
                 actions: Sequence[str]) -> list[dict[str, Any]]:
        """Each version's priors over ``actions`` at ``observation`` (most likely first) and its
        value for the player to move."""
        _check_prompt(observation)
        if not actions:
            raise LiveError("no legal moves at this position to put priors on")
        out = []
        with self._lock:
            for v in versions:
                engine = self._engine(v)
                started = time.perf_counter()
                try:
                    ev = engine.evaluate([observation], [list(actions)])[0]
                except EngineInputError as err:
                    raise LiveError(f"v{v}: {err}") from None
                priors = sorted(zip(actions, (float(p) for p in ev.priors)),
                                key=lambda pa: (-pa[1], pa[0]))
                out.append({"version": v, "value": float(ev.value),
                            "priors": [{"action": a, "prior": p} for a, p in priors],
                            "top": priors[0][0], "seconds": time.perf_counter() - started})
        return out

    def complete(self, versions: Sequence[int], prompt: str, *, sampled: bool = False,
                 max_tokens: int = DEFAULT_TOKENS, samples: int = 1,
                 stop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Each version's continuation of ``prompt`` (as the rollouts prompt it: the observation
        and a newline): greedy, or ``samples`` samples at temperature 1 with one seed for all."""
        from selfplay.textgen.rollout import prompt_of

        _check_prompt(prompt)
        if not 1 <= max_tokens <= MAX_TOKENS:
            raise LiveError(f"tokens={max_tokens}: expected 1 .. {MAX_TOKENS}")
        n = min(max(samples, 1), MAX_SAMPLES) if sampled else 1
        params = SamplingParams(n=n, temperature=1.0 if sampled else 0.0, max_tokens=max_tokens,
                                stop=stop, seed=SAMPLE_SEED if sampled else None)
        out = []
        with self._lock:
            for v in versions:
                engine = self._engine(v)
                started = time.perf_counter()
                try:
                    completions = engine.generate([prompt_of(prompt)], params)[0]
                except EngineInputError as err:
                    raise LiveError(f"v{v}: {err}") from None
                out.append({"version": v, "seconds": time.perf_counter() - started,
                            "completions": [{"text": c.text, "tokens": len(c.token_ids),
                                             "logprob": float(sum(c.logprobs)),
                                             "finish": c.finish_reason} for c in completions]})
        return out


def _check_prompt(text: str) -> None:
    if not text.strip():
        raise LiveError("the position or prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise LiveError(f"the position or prompt has {len(text)} characters; at most "
                        f"{MAX_PROMPT_CHARS} are run live")
