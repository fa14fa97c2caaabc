"""What may change across a resume: the new config against the one the run was started with.

``run_dir/config.yaml`` holds the config of the run's latest session. On ``run.resume=true`` the
new composed config is compared with it key by key: every change is printed (old -> new), the
replaced file is kept as ``config.<UTC timestamp>.yaml``, and a change to a key in
``FROZEN_KEYS`` is refused with one message naming it.

Frozen: what defines the task, the shape of the checkpoints, or the meaning of what the run has
stored (a resumed run reloads its checkpoints, replay window and Elo ladder as they are):

- ``env.id``, ``env.kwargs.*``: the task (the dataset, the game, its rules); every episode in the
  store and every rating on the ladder belongs to it;
- ``policy.path`` and the architecture keys (sizes, heads, context length, RoPE base): the
  checkpoints' tensor shapes and the tokenizer they were saved with (the tokenizer comes with
  ``policy.path``, or is the built-in one of a fresh model);
- ``learner.loss`` (resolved, so ``auto`` and the loss it stands for are the same): it decides
  which decisions the replay keeps and what the optimiser state was accumulated for;
- ``arena.elo_anchor``: the player the ladder's ratings are measured from.

``run.dir`` is not compared: the saved config is read from that directory, so it is the same run
however the path is spelled (relative to another working directory, or absolute).

Everything else may change: budgets, cadences (``learner.publish_every``, ``run.eval_every``),
learning rate and other optimiser settings, replay window and staleness, number of actors and
games per actor, search and sampling settings, the engine (device, dtype), gating, opponents,
``ray.address``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from selfplay.clock import SYSTEM_CLOCK, Clock
from selfplay.errors import UserError

CONFIG_FILENAME = "config.yaml"

FROZEN_KEYS: tuple[str, ...] = (
    "env.id",
    "env.kwargs",
    "policy.path",
    "policy.hidden_size",
    "policy.num_layers",
    "policy.num_heads",
    "policy.num_kv_heads",
    "policy.intermediate_size",
    "policy.max_seq_len",
    "policy.rope_theta",
    "learner.loss",
    "arena.elo_anchor",
)
# Keys that differ by design (run.resume) or name the run itself (run.dir): never listed.
IGNORED_KEYS: tuple[str, ...] = ("run.resume", "run.dir")

_ABSENT = "<absent>"


@dataclass(frozen=True)
class Change:
    key: str  # dotted, e.g. "learner.lr" or "env.kwargs.source"
    old: Any  # _ABSENT when the key is new
    new: Any  # _ABSENT when the key was removed

    @property
    def frozen(self) -> bool:
        return is_frozen(self.key)

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    return value if value is _ABSENT else repr(value)


def is_frozen(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FROZEN_KEYS)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested mappings; lists (and every other value) are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every leaf that differs between two (nested) configs, by key."""
    a, b = flatten(old), flatten(new)
    return [
        Change(key, a.get(key, _ABSENT), b.get(key, _ABSENT))
        for key in sorted(set(a) | set(b))
        if key not in IGNORED_KEYS and a.get(key, _ABSENT) != b.get(key, _ABSENT)
    ]


def resolved_loss(tree: dict[str, Any], kind: str) -> dict[str, Any]:
    """``tree`` with ``learner.loss: auto`` replaced by the loss it stands for on ``kind``."""
    from selfplay.learner.losses import DEFAULT_LOSS

    learner = dict(tree.get("learner") or {})
    if learner.get("loss") == "auto" and kind in DEFAULT_LOSS:
        learner["loss"] = DEFAULT_LOSS[kind]
    return {**tree, "learner": learner}


def read_saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config the run's last session saved, as plain containers; None when there is none."""
    path = Path(run_dir) / CONFIG_FILENAME
    if not path.exists():
        return None
    try:
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # noqa: BLE001 - YAML, interpolation and OS errors alike: one message
        raise UserError(f"{path}: cannot read the run's saved config ({err}); fix it, or move it "
                        "away to resume without comparing configs") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: the run's saved config is not a mapping")
    return tree


def check_resume_config(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path) -> list[Change]:
    """The changes between the saved and the new config; a UserError naming every frozen one."""
    changes = config_changes(old, new)
    frozen = [c for c in changes if c.frozen]
    if frozen:
        lines = "\n".join(f"  {c}" for c in frozen)
        first = frozen[0]
        undo = (f"{first.key}={first.old}" if first.old is not _ABSENT else f"~{first.key}")
        raise UserError(
            f"run.resume=true: {run_dir} was started with a different task or policy; "
            f"{'this key' if len(frozen) == 1 else 'these keys'} cannot change across a resume:\n"
            f"{lines}\n"
            f"resume with the values it was started with (e.g. {undo}), or start a new run "
            "in another run.dir"
        )
    return changes


def archive_name(run_dir: Path, clock: Clock) -> Path:
    """``config.<UTC timestamp>.yaml`` beside config.yaml, never an existing file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.now()))
    target = Path(run_dir) / f"config.{stamp}.yaml"
    n = 1
    while target.exists():
        target = Path(run_dir) / f"config.{stamp}-{n}.yaml"
        n += 1
    return target


def save_run_config(cfg: Any, run_dir: Path, *, resume: bool, kind: str,
                    clock: Clock = SYSTEM_CLOCK) -> list[Change]:
    """Write ``cfg`` as the run's config.yaml. On a resume, first compare it with the saved one
    (see the module docstring): refuse a frozen change, keep the old file under a timestamped
    name, print each change; returns the changes (empty on a fresh run)."""
    from selfplay.atomic import atomic_write_bytes

    run_dir = Path(run_dir)
    text = OmegaConf.to_yaml(cfg)
    changes: list[Change] = []
    saved = read_saved_config(run_dir) if resume else None
    if saved is not None:
        new = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        changes = check_resume_config(resolved_loss(saved, kind), resolved_loss(new, kind), run_dir)
        if changes:
            # A copy first, then the new file replaces the old atomically: a crash in between
            # leaves the old config in place (and a spare copy), never no config.
            kept = archive_name(run_dir, clock)
            atomic_write_bytes(kept, (run_dir / CONFIG_FILENAME).read_bytes())
            print(f"selfplay train: resuming {run_dir} with {len(changes)} changed "
                  f"key{'s' if len(changes) != 1 else ''} (the old config kept as {kept.name}):")
            for c in changes:
                print(f"  {c}")
    if saved is None or changes:
        atomic_write_bytes(run_dir / CONFIG_FILENAME, text.encode())
    return changes
