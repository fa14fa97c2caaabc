"""Checkpoints of a run: ``RUN_DIR/checkpoints/version-<NNNNNN>/`` plus a ``latest.json`` pointer.

Each checkpoint holds the policy in Hugging Face format (loadable by transformers), the value
head, the optimiser state and ``meta.json`` (version, learner step, incumbent, wall time). The
directory and the pointer are each written atomically, so a resumed run always finds a whole one.

Readers never write: ``latest_checkpoint`` only looks (``selfplay eval``, ``play``, ``replay`` and
the viewer call it beside a live learner). The learner alone deletes leftovers of interrupted
writes (``remove_interrupted_writes``, once when it starts) and optimiser states older than the
newest ``keep_optimizer_states`` (about twice the weights each; every version's weights stay).
"""

from __future__ import annotations

import json
import pickle
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from selfplay.atomic import atomic_write_dir, atomic_write_json, remove_stale_temps
from selfplay.errors import UserError

OPTIMIZER_FILE = "optimizer.pt"


@dataclass
class CheckpointMeta:
    version: int  # policy version stored here
    learner_step: int  # optimiser steps taken when it was written
    incumbent_version: int  # the version the actors were playing (after gating)
    saved_at: float  # unix seconds


def checkpoint_dir(run_dir: Path, version: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"version-{version:06d}"


def save_checkpoint(
    run_dir: Path, model: Any, tokenizer: Any, optimizer_state: dict | None, meta: CheckpointMeta,
    keep_optimizer_states: int = 0,
) -> Path:
    """Write the checkpoint of ``meta.version`` and point ``latest.json`` at it; then keep only
    the newest ``keep_optimizer_states`` optimiser states (0 = keep all)."""
    target = checkpoint_dir(run_dir, meta.version)

    def fill(tmp: Path) -> None:
        model.save(tmp)
        if tokenizer is not None and not (tmp / "tokenizer.json").exists():
            tokenizer.save_pretrained(tmp)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2))

    atomic_write_dir(target, fill)
    atomic_write_json(
        Path(run_dir) / "checkpoints" / "latest.json",
        {"version": meta.version, "path": target.name, "written_at": time.time()},
    )
    # Only now: the new state is renamed into place and fsynced, so a crash before or during
    # the pruning still leaves the newest states whole (a leftover is pruned next time).
    prune_optimizer_states(run_dir, keep_optimizer_states)
    return target


def prune_optimizer_states(run_dir: Path, keep: int) -> list[Path]:
    """Delete the optimiser states of all but the newest ``keep`` checkpoints that hold one
    (``keep`` 0: none); returns the files deleted. Weights and meta are never touched."""
    if keep <= 0:
        return []
    states = sorted((Path(run_dir) / "checkpoints").glob(f"version-*/{OPTIMIZER_FILE}"))
    stale = states[:-keep]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_optimizer_state(checkpoint: Path) -> dict | None:
    """The optimiser state saved in ``checkpoint``, or None when it has none (pruned).

    Loaded with ``weights_only=True``: a file in a run directory is untrusted (anyone who can
    write there could otherwise run code in the learner), and tensors, numbers and plain
    containers are all a selfplay optimiser state holds."""
    path = Path(checkpoint) / OPTIMIZER_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"a reference to {found.group(1)}" if found else "objects other than tensors"
        raise UserError(f"{path}: refused to load the optimiser state: it holds {what}, which "
                        "a file selfplay wrote never does (loading it could run code). Delete it "
                        "to resume with a fresh optimiser") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:  # a torn or foreign file
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: refused to load the optimiser state, unreadable ({reason}). "
                        "Delete it to resume with a fresh optimiser") from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "step"} <= state.keys():
        raise UserError(f"{path}: not a selfplay optimiser state (it needs the keys optimizer, "
                        "scheduler and step); delete it to resume with a fresh optimiser")
    return state


def remove_interrupted_writes(run_dir: Path) -> int:
    """Delete the leftovers of checkpoint writes a crash interrupted; returns how many.

    For the learner only (the one writer of ``checkpoints/``), when it starts and before it
    writes: its own writes in flight are spared, but a reader doing this would break them."""
    return remove_stale_temps(Path(run_dir) / "checkpoints")


def latest_checkpoint(run_dir: Path) -> tuple[Path, CheckpointMeta] | None:
    """The newest complete checkpoint of a run, or None when it has none. Writes nothing."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    # Directories are renamed into place whole, so the newest one with meta.json is complete;
    # latest.json is for people and tools (it may lag a crash between the two writes).
    for path in sorted(folder.glob("version-*"), reverse=True):
        if (path / "meta.json").exists():
            return path, CheckpointMeta(**json.loads((path / "meta.json").read_text()))
    return None
