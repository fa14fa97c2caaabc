"""reasoning-gym's tasks as selfplay text envs (``pip install 'selfplay[reasoning-gym]'``).

Each reasoning-gym dataset (``basic_arithmetic``, ``chain_sum``, ``spell_backward``, ... 100 or
so) becomes a single-turn text task like ``selfplay/MathArithmetic-v0``: the observation is the
task's question, one action is the whole solution, and the reward is the task's own scorer,
``dataset.score_answer(answer, entry)`` (1.0 correct, partial credit where the task gives it).
The text loop (``rollout.mode=sample_groups``, GRPO, expert iteration, SFT on references) and
``selfplay eval`` (pass@k, maj@k on the held-out split) use it unchanged.

    selfplay eval env=reasoning_gym games=20                   # conf/env/reasoning_gym.yaml
    selfplay eval env=reasoning_gym env.id=reasoning_gym/chain_sum-v0 games=20
    selfplay train env=reasoning_gym learner=grpo run.dir=runs/rg
    selfplay envs --import selfplay.adapters.reasoning_gym

    import selfplay.adapters.reasoning_gym           # registers reasoning_gym/<task>-v0, once
    env = selfplay.make_env("reasoning_gym/basic_arithmetic-v0", config={"max_terms": 3})

Importing this module registers ``reasoning_gym/<task>-v0`` for every task (``register()``; a
config names the module in ``env.module``). Kwargs: ``config`` (the task's own config fields),
``split``, ``dataset_seed``, ``size`` (see ``ReasoningGymEnv``).

The answer read from an action: the last ``<answer>...</answer>`` (reasoning-gym's format), else
the project's (``Answer: X``, ``\\boxed{X}``, ``#### X``, or a bare one-line answer). The answer is
untrusted input: the scorer runs in a separate process, its memory capped and no file writable,
killed after ``scorer_timeout_s``; a timed-out or crashing scorer gives 0.0, marked in the info.
That is a limit, not a sandbox: some tasks read answers with sympy's ``parse_expr``, which
evaluates Python (the code sandbox, ``envs.code.sandbox``, does not yet host such a server).
``reference_actions()`` states the entry's own answer (``Answer: X``, or ``<answer>X</answer>``
for a multi-line one) when the task's scorer gives it 1.0.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

from envs.math.answers import extract_answer
from envs.math.env import ascii_spelling, final_answer
from envs.math.tasks import split_of
from envs.registration import register_env

try:
    import reasoning_gym
    from reasoning_gym.utils import extract_answer as extract_tagged
except ImportError as err:  # the extra is not installed
    raise ImportError(
        "selfplay.adapters.reasoning_gym needs reasoning-gym: pip install "
        f"'selfplay[reasoning-gym]' (reasoning-gym==0.1.25); {err}"
    ) from None

OBS_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"
OBS_MAX_LENGTH = 16_384  # a longer question is cut (the policy's context is far shorter anyway)
ACTION_MAX_LENGTH = 8_192
SPLITS = ("train", "test", "all")
MAX_DRAWS = 1_000  # entries tried for one in the split (one in five is a test question)
SCORER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "_reasoning_gym_scorer.py")
SCORER_START_S = 120.0  # the scorer process imports reasoning_gym first (seconds on 2 cores)
SCORER_MEMORY_BYTES = 2 << 30  # its address space: a huge power in an answer fails, not the host


# ------------------------------------------------------------------------------------------------
# The scorer process


class ScorerProcess:
    """One persistent ``_reasoning_gym_scorer.py`` process, shared by the envs of this process;
    a call that runs past its limit kills it (the next call starts a new one)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._lock = threading.Lock()

    def _start(self) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-s", SCORER_SCRIPT, str(SCORER_MEMORY_BYTES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, env=env)
        self._buf = b""
        if self._read_line(SCORER_START_S) != "ready":
            self.close()
            raise RuntimeError(f"the reasoning-gym scorer process ({SCORER_SCRIPT}) did not start "
                               f"within {SCORER_START_S:.0f} s")

    def _read_line(self, timeout_s: float) -> Any:
        """The next JSON line, or None when the process died or ``timeout_s`` passed."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def score(self, request: dict[str, Any], timeout_s: float) -> tuple[float, str]:
        """(score, "") or (0.0, why): "timeout" or the scorer's error."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError:
                self.close()
                return 0.0, "the scorer process died"
            reply = self._read_line(timeout_s)
            if reply is None:
                self.close()
                return 0.0, "timeout"
            if "error" in reply:
                return 0.0, str(reply["error"])
            return float(reply["score"]), ""

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        proc.wait()


_SCORER = ScorerProcess()
atexit.register(_SCORER.close)


# ------------------------------------------------------------------------------------------------
# Answers


def answer_of(text: str) -> str | None:
    """The final answer an action states (module docstring), or None."""
    tagged = extract_tagged(text)
    if tagged is not None:
        return tagged
    return final_answer(text)


def reference_text(answer: str) -> str:
    """An action that states ``answer`` so that ``answer_of`` reads it back exactly."""
    line = f"Answer: {answer}"
    if "\n" not in answer and extract_answer(line) == answer:
        return line
    return f"<answer>{answer}</answer>"


# ------------------------------------------------------------------------------------------------
# The env


class ReasoningGymEnv(gym.Env):
    """One reasoning-gym question per episode; text in, text out, the task's scorer as reward.

    - ``task``: a reasoning-gym dataset name; ``config``: its config fields (not seed or size);
    - ``split``: "train" (default), "test" or "all"; train and test questions are disjoint, by a
      hash of the question (as MathEnv's), so ``selfplay eval`` measures held-out questions;
    - ``dataset_seed``, ``size``: the reasoning-gym dataset the questions come from
      (``reset(seed)`` picks entry ``seed``-derived in ``0..size-1``, then the next ones until
      one is in the split);
    - ``max_action_chars``: a longer action is not scored (0.0, ``invalid_action``);
    - ``scorer_timeout_s``: the limit on one scorer call (0: score in this process, no limit).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    mode = "single_turn"  # one action is the whole solution (selfplay.textgen reads this)

    def __init__(self, task: str = "basic_arithmetic", config: Mapping[str, Any] | None = None,
                 split: str | None = None, dataset_seed: int = 0, size: int = 10_000,
                 max_action_chars: int = 4_000, scorer_timeout_s: float = 5.0,
                 render_mode: str | None = None):
        known = reasoning_gym.factory.DATASETS
        if task not in known:
            raise ValueError(f"reasoning_gym: unknown task {task!r}; tasks: "
                             f"{', '.join(sorted(known))}")
        config = dict(config or {})
        for key in ("seed", "size"):
            if key in config:
                raise ValueError(f"reasoning_gym: config.{key} is set by the env; use the kwarg "
                                 f"{'dataset_seed' if key == 'seed' else 'size'}")
        self.split = split or "train"
        if self.split not in SPLITS:
            raise ValueError(f"reasoning_gym: split={split!r}; expected one of {', '.join(SPLITS)}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"reasoning_gym: size must be a positive integer, got {size!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"reasoning_gym: render_mode={render_mode!r}; supported: 'ansi' "
                             "or None")
        try:
            self.dataset = reasoning_gym.create_dataset(task, **config, seed=int(dataset_seed),
                                                        size=size)
        except (TypeError, ValueError, AssertionError) as err:
            raise ValueError(f"reasoning_gym: task {task!r} with config {config}: {err}") from None
        self.task, self.config = task, config
        self.dataset_seed, self.size = int(dataset_seed), size
        self.max_action_chars = int(max_action_chars)
        self.scorer_timeout_s = float(scorer_timeout_s)
        self.render_mode = render_mode
        self.observation_space = spaces.Text(OBS_MAX_LENGTH, min_length=1, charset=OBS_CHARSET)
        self.action_space = spaces.Text(ACTION_MAX_LENGTH, min_length=0, charset=OBS_CHARSET)
        self.index: int | None = None
        self.entry: dict[str, Any] | None = None
        self.done = True

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        start = int(self.np_random.integers(self.size))
        for k in range(min(MAX_DRAWS, self.size)):
            index = (start + k) % self.size
            entry = self.dataset[index]
            if self.split == "all" or split_of(str(entry["question"])) == self.split:
                break
        else:
            raise ValueError(f"reasoning_gym {self.task}: no question of split {self.split!r} in "
                             f"{min(MAX_DRAWS, self.size)} entries; use split=all or a larger size")
        self.index, self.entry, self.done = index, entry, False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done or self.entry is None:
            raise RuntimeError("reasoning_gym: the episode is over; call reset() first")
        self.done = True
        info = self._info()
        valid = isinstance(action, str) and len(action) <= self.max_action_chars
        predicted = answer_of(action) if valid else None
        score, why = (0.0, "") if predicted is None else self.score(predicted)
        info.update(answer=str(self.entry["answer"]), correct=score >= 1.0,
                    predicted=(predicted or "")[:200], invalid_action=not valid, num_steps=1,
                    scorer_error=why)
        return self._observation(), score, True, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._observation() if self.entry is not None else ""
        gym.logger.warn("render() needs render_mode='ansi'")
        return None

    def reference_actions(self) -> list[str]:
        """The action that states the current entry's answer, when the task's scorer gives it
        1.0; ``ValueError`` before ``reset`` or when the entry has no such answer."""
        if self.entry is None:
            raise ValueError("reasoning_gym: no current question; call reset() first")
        answer = self.entry.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"reasoning_gym {self.task}: entry {self.index} has no answer")
        if ascii_spelling(answer) != answer:
            raise ValueError(f"reasoning_gym {self.task}: entry {self.index}'s answer has "
                             "characters outside the action charset")
        action = reference_text(answer)
        if len(action) > self.max_action_chars or self.score(answer_of(action) or "")[0] != 1.0:
            raise ValueError(f"reasoning_gym {self.task}: entry {self.index}'s answer, stated as "
                             "an action, does not score 1.0")
        return [action]

    # -- what search uses: a cheap copy of the state -------------------------------------------

    def get_state(self) -> tuple[int | None, dict[str, Any] | None, bool]:
        return self.index, self.entry, self.done

    def set_state(self, state: tuple[int | None, dict[str, Any] | None, bool]) -> None:
        self.index, self.entry, self.done = state[0], state[1], bool(state[2])

    # -- helpers --------------------------------------------------------------------------------

    def score(self, answer: str) -> tuple[float, str]:
        """The task's score of ``answer`` for the current entry, clipped to [0, 1], and why it is
        0.0 when the scorer failed ("" otherwise)."""
        assert self.entry is not None and self.index is not None
        if self.scorer_timeout_s <= 0:
            try:
                raw, why = float(self.dataset.score_answer(answer, self.entry)), ""
            except Exception as err:  # noqa: BLE001  (the task's scorer on an untrusted answer)
                raw, why = 0.0, f"{type(err).__name__}: {err}"[:500]
        else:
            raw, why = _SCORER.score({"task": self.task, "config": self.config,
                                      "seed": self.dataset_seed, "size": self.size,
                                      "index": self.index, "answer": answer},
                                     self.scorer_timeout_s)
        return (min(max(raw, 0.0), 1.0) if math.isfinite(raw) else 0.0), why

    def _observation(self) -> str:
        assert self.entry is not None
        return ascii_spelling(str(self.entry["question"]))[:OBS_MAX_LENGTH] or "?"

    def _info(self) -> dict[str, Any]:
        return {"task": self.task, "index": self.index, "mode": self.mode,
                "source": f"reasoning_gym/{self.task}:{self.index}"}


def register() -> list[str]:
    """Register ``reasoning_gym/<task>-v0`` for every reasoning-gym task; returns the ids.
    Calling it again changes nothing."""
    ids = []
    for task, (dataset_cls, _) in sorted(reasoning_gym.factory.DATASETS.items()):
        doc = (dataset_cls.__doc__ or "").strip().splitlines()
        summary = f"reasoning-gym {task}: {doc[0].strip() if doc else 'procedural task'}"
        register_env(f"reasoning_gym/{task}-v0", "selfplay.adapters.reasoning_gym:ReasoningGymEnv",
                     summary[:100], task=task)
        ids.append(f"reasoning_gym/{task}-v0")
    return ids


REGISTERED_IDS = register()
