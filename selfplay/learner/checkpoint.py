"""Checkpoints of a run: ``RUN_DIR/checkpoints/version-<NNNNNN>/`` plus a ``latest.json`` pointer.

Each checkpoint holds the policy in Hugging Face format (loadable by transformers), the value
head, the optimiser state and ``meta.json`` (version, learner step, incumbent, wall time). The
directory and the pointer are each written atomically, so a resumed run always finds a whole one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from selfplay.atomic import atomic_write_dir, atomic_write_json, remove_stale_temps


@dataclass
class CheckpointMeta:
    version: int  # policy version stored here
    learner_step: int  # optimiser steps taken when it was written
    incumbent_version: int  # the version the actors were playing (after gating)
    saved_at: float  # unix seconds


def checkpoint_dir(run_dir: Path, version: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"version-{version:06d}"


def save_checkpoint(
    run_dir: Path, model: Any, tokenizer: Any, optimizer_state: dict | None, meta: CheckpointMeta
) -> Path:
    """Write the checkpoint of ``meta.version`` and point ``latest.json`` at it."""
    target = checkpoint_dir(run_dir, meta.version)

    def fill(tmp: Path) -> None:
        model.save(tmp)
        if tokenizer is not None and not (tmp / "tokenizer.json").exists():
            tokenizer.save_pretrained(tmp)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2))

    atomic_write_dir(target, fill)
    atomic_write_json(
        Path(run_dir) / "checkpoints" / "latest.json",
        {"version": meta.version, "path": target.name, "written_at": time.time()},
    )
    return target


def latest_checkpoint(run_dir: Path) -> tuple[Path, CheckpointMeta] | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    remove_stale_temps(folder)
    # Directories are renamed into place whole, so the newest one with meta.json is complete;
    # latest.json is for people and tools (it may lag a crash between the two writes).
    for path in sorted(folder.glob("version-*"), reverse=True):
        if (path / "meta.json").exists():
            return path, CheckpointMeta(**json.loads((path / "meta.json").read_text()))
    return None
