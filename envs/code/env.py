"""CodeEnv: write a Python function from a description and examples; rewarded by sandboxed tests.

One step per episode (``mode="single_turn"``, the default): the observation is the task prompt, the
action is a program (a fenced ```python block is unwrapped), the reward is the fraction of the
task's tests it passes (``reward="fraction"``) or 1/0 for all of them (``reward="all"``), computed
in the sandbox by ``envs.code.verify`` (the program cannot forge it). The episode then ends.

One line per action (``mode="multi_step"``, ``selfplay/CodeSteps-v0``), so search over reasoning
steps can branch inside a program: the observation is the prompt followed by the lines written so
far, each action appends one line (several, if it holds newlines), and a blank line ends the
program, which is then tested as above (``is_final_step``). Reaching ``max_steps`` lines without
it ends the episode truncated with reward 0, as a math solution that never states its answer.

Tasks come from the procedural generator (``source="procedural"``, ``level`` 1..3 or None for all)
or a MBPP/HumanEval JSONL file (``source=<path>``; a bare file name is looked up in
``envs/code/data``). ``split`` keeps evaluation honest: procedural train and test tasks are
disjoint by function; for a file, "train"/"test" filter its lines by a stable hash of the task
and "all" keeps them all.

An action that is not a string, or longer than ``max_action_chars``, is a wrong program
(reward 0, ``info["invalid_action"] = True``), never an exception.

``reference_actions()`` (after ``reset``) gives the action that solves the current task (in
``multi_step`` mode: its non-blank lines, then the blank line that ends it): its reference program (a procedural task's reference; MBPP's ``code``; HumanEval's ``prompt`` +
``canonical_solution``, which defines the entry point the tests call), for a supervised warm start
or expert iteration. Stepped from ``reset`` with the same seed it passes every test (reward 1.0; the
contract check in ``envs.checker`` and ``tests/test_reference_solutions.py`` hold every registered
env to it). It is in the observation charset (tabs expanded, a character outside it written as a
``\\uXXXX`` escape, which keeps string literals' meaning) and within ``max_action_chars``.
``ValueError`` before ``reset``, when the task has no reference (a dataset task is named by file
and line), or when it cannot be written as an action (too long, or holding a ``` fence that
``step`` would unwrap).

Programs run in ``envs.code.sandbox``. Constructing the env checks once what confines them here
(printed once per run) and raises ``SandboxUnconfined`` where nothing would (neither root nor user
namespaces) unless ``allow_unconfined=True`` (``env.kwargs.allow_unconfined``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.code.datasets import load_jsonl
from envs.code.sandbox import SandboxPool, default_pool, require_confinement
from envs.code.tasks import LEVELS, SPLITS, CodeTask, generate
from envs.code.verify import TestReport, run_tests, score

OBS_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"
OBS_MAX_LENGTH = 4096
ACTION_MAX_LENGTH = 20_000
REWARDS = ("fraction", "all")
MODES = ("single_turn", "multi_step")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def strip_fences(text: str) -> str:
    """The code of a reply: its first ```python (or bare ```) block, else the text itself."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    for lang, body in blocks:
        if lang.lower() in ("python", "py", "python3"):
            return body
    return blocks[0][1]


def jsonl_split_of(task: CodeTask) -> str:
    digest = hashlib.sha1((task.prompt + "\0" + task.entry_point).encode()).digest()
    return "test" if digest[0] % 5 == 0 else "train"


def program_to_charset(program: str) -> str:
    """A program in the observation charset: ``\\r\\n`` -> newline, tabs expanded to Python's
    8-column stops, any other character outside the charset written as a Python escape
    (``\\u00e9``): the same string inside a literal, harmless in a comment."""
    program = program.replace("\r\n", "\n").replace("\r", "\n")
    if "\t" in program:
        program = "\n".join(line.expandtabs(8) for line in program.split("\n"))
    if all(ch in OBS_CHARSET for ch in program):
        return program
    return "".join(ch if ch in OBS_CHARSET else ascii(ch)[1:-1] for ch in program)


def _to_charset(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    return "".join(ch if ch in OBS_CHARSET else "?" for ch in text)


class CodeEnv(gym.Env):
    """A program-synthesis task per episode; text observation, text action, test reward."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        source: str = "procedural",
        level: int | None = None,
        reward: str = "fraction",
        timeout_s: float = 5.0,
        split: str = "train",
        per_test_timeout_s: float = 1.0,
        memory_mb: int = 512,
        max_action_chars: int = ACTION_MAX_LENGTH,
        sandbox_mode: str = "fork",
        pool: SandboxPool | None = None,
        render_mode: str | None = None,
        allow_unconfined: bool = False,
        mode: str = "single_turn",
        max_steps: int = 16,
    ):
        if mode not in MODES:
            raise ValueError(f"CodeEnv: mode must be one of {MODES}, not {mode!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 2:
            raise ValueError(f"CodeEnv: max_steps must be an integer >= 2 (a line and the blank "
                             f"line that ends the program), not {max_steps!r}")
        if reward not in REWARDS:
            raise ValueError(f"CodeEnv: reward must be one of {REWARDS}, not {reward!r}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"CodeEnv: level must be one of {LEVELS} or None, not {level!r}")
        if split not in SPLITS + ("all",):
            raise ValueError(f"CodeEnv: split must be 'train', 'test' or 'all', not {split!r}")
        if source == "procedural" and split == "all":
            raise ValueError("CodeEnv: split='all' is only for a JSONL source")
        if timeout_s <= 0 or per_test_timeout_s <= 0:
            raise ValueError("CodeEnv: timeout_s and per_test_timeout_s must be positive")
        self.source, self.level, self.reward_kind, self.split = source, level, reward, split
        self.timeout_s, self.per_test_timeout_s = float(timeout_s), float(per_test_timeout_s)
        self.memory_mb, self.max_action_chars = int(memory_mb), int(max_action_chars)
        self.sandbox_mode, self.pool, self.render_mode = sandbox_mode, pool, render_mode
        self.tasks: list[CodeTask] | None = None
        if source != "procedural":
            tasks = load_jsonl(source)
            if split != "all":
                tasks = [t for t in tasks if jsonl_split_of(t) == split]
            if level is not None:
                tasks = [t for t in tasks if t.level in (0, level)]
            if not tasks:
                raise ValueError(f"CodeEnv: {source!r} has no tasks in split={split!r}")
            self.tasks = tasks
        self.observation_space = spaces.Text(OBS_MAX_LENGTH, min_length=1, charset=OBS_CHARSET)
        self.action_space = spaces.Text(ACTION_MAX_LENGTH, min_length=0, charset=OBS_CHARSET)
        self.mode, self.max_steps = mode, max_steps
        self.task: CodeTask | None = None
        self.lines: list[str] = []  # multi_step: the program written so far
        self.done = False
        self.last_report: TestReport | None = None
        # Last: a bad argument above is reported before any sandbox process starts.
        self.allow_unconfined = bool(allow_unconfined)
        self.isolation = require_confinement(pool or default_pool(), self.allow_unconfined,
                                             "env.kwargs.allow_unconfined=true")

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.tasks is None:
            task_seed = int(self.np_random.integers(0, 2**31 - 1))
            self.task = generate(task_seed, self.level, self.split)
        else:
            self.task = self.tasks[int(self.np_random.integers(0, len(self.tasks)))]
        self.done = False
        self.lines = []
        self.last_report = None
        return self._observation(), self._info()

    def step(self, action: Any):
        if self.task is None or self.done:
            raise RuntimeError("CodeEnv.step called before reset or after the episode ended")
        if not isinstance(action, str) or len(action) > self.max_action_chars:
            self.done = True
            info = self._info()
            info.update(invalid_action=True, passed=0, total=len(self.task.tests))
            return self._observation(), 0.0, True, False, info
        if self.mode == "single_turn":
            return self._tested(strip_fences(action))
        if self.is_final_step(action):
            return self._tested("\n".join(self.lines) + "\n")
        self.lines.extend(line.rstrip() for line in action.rstrip("\n").split("\n"))
        if len(self.lines) >= self.max_steps:
            self.done = True
            info = self._info()
            info.update(invalid_action=False, passed=0, total=len(self.task.tests),
                        unfinished=True)
            return self._observation(), 0.0, False, True, info
        return self._observation(), 0.0, False, False, self._info()

    @staticmethod
    def is_final_step(step: str) -> bool:
        """multi_step: a blank line ends the program (the rule search uses to call a state final)."""
        return step.strip() == ""

    def _tested(self, program: str):
        """The episode's end: ``program`` run against the task's tests in the sandbox."""
        assert self.task is not None
        self.done = True
        info = self._info()
        report = run_tests(
            self.task, program, pool=self.pool, timeout_s=self.timeout_s,
            per_test_timeout_s=self.per_test_timeout_s, memory_mb=self.memory_mb,
            mode=self.sandbox_mode, allow_unconfined=self.allow_unconfined,
        )
        self.last_report = report
        reward = score(report, self.reward_kind)
        info.update(
            invalid_action=False,
            passed=sum(report.passed),
            total=len(report.passed),
            tests=report.details,
            sandbox_status=report.run.status if report.run else "",
            opaque_tests=report.opaque,
        )
        return self._observation(), float(reward), True, False, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._observation()
        return None

    def reference_actions(self) -> list[str]:
        """The one action that solves the current task from ``reset`` (see the module docstring);
        ``ValueError`` before ``reset`` or when the task has no usable reference."""
        if self.task is None:
            raise ValueError("CodeEnv.reference_actions: no current task; call reset() first")
        task = self.task
        where = f"task {task.task_id or '?'} ({task.source or 'unknown source'})"
        if not task.reference_solution.strip():
            raise ValueError(f"CodeEnv: {where} has no reference solution")
        program = program_to_charset(task.reference_solution)
        if not program.endswith("\n"):
            program += "\n"
        if strip_fences(program) != program:
            raise ValueError(
                f"CodeEnv: {where}: the reference solution holds a ``` fence, which step() would "
                "unwrap; it cannot be written as an action"
            )
        limit = min(self.max_action_chars, ACTION_MAX_LENGTH)
        if len(program) > limit:
            raise ValueError(
                f"CodeEnv: {where}: the reference solution is {len(program)} characters, over "
                f"max_action_chars={limit}"
            )
        if self.mode == "single_turn":
            return [program]
        lines = [line for line in program.split("\n") if line.strip()]
        if len(lines) + 1 > self.max_steps:
            raise ValueError(f"CodeEnv: {where}: the reference solution has {len(lines)} lines; "
                             f"with the blank line that ends it, over max_steps={self.max_steps}")
        return [*lines, ""]

    # -- helpers ----------------------------------------------------------------------------

    def _observation(self) -> str:
        assert self.task is not None
        prompt = _to_charset(self.task.prompt)[:OBS_MAX_LENGTH]
        if not self.lines:
            return prompt
        return (prompt + "\n" + "\n".join(_to_charset(line) for line in self.lines))[:OBS_MAX_LENGTH]

    def _info(self) -> dict[str, Any]:
        assert self.task is not None
        return {"task_id": self.task.task_id, "level": self.task.level,
                "source": self.task.source, "entry_point": self.task.entry_point}
