"""Atomic file and directory writes: temp name in the same folder, fsync, rename, fsync folder.

A reader (or a resumed run) sees either the old content or the new, never a torn file, whatever
moment a kill -9 lands. A kill -9 can leave a ``.tmp-`` name behind; only the folder's one writer
may delete those (``remove_stale_temps``), and never while another process may be writing there.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Temp names of this process's writes in flight: remove_stale_temps never touches them.
_in_flight: set[str] = set()  # real paths
_in_flight_lock = threading.Lock()


@contextmanager
def _temp_name(path: Path) -> Iterator[Path]:
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    key = os.path.realpath(tmp)
    with _in_flight_lock:
        _in_flight.add(key)
    try:
        yield tmp
    finally:
        with _in_flight_lock:
            _in_flight.discard(key)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_name(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            # A failed write (a full disk, a kill of the thread) leaves no half file behind.
            Path(tmp).unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def atomic_write_dir(path: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory ``path`` by calling ``fill(tmp_dir)`` and renaming it into place.

    Every file ``fill`` wrote is fsynced before the rename, so the directory either exists
    complete or not at all. An existing ``path`` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_name(path) as tmp:
        tmp.mkdir()
        try:
            fill(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    with open(file, "rb") as f:
                        os.fsync(f.fileno())
            fsync_dir(tmp)
            if path.exists():
                shutil.rmtree(path)
            os.rename(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


def remove_stale_temps(folder: Path) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder``; returns how many.

    This process's own writes in flight are spared; another process's are not, so only the
    folder's one writer calls this, when it starts (a reader that did would break its writes)."""
    count = 0
    # Listed before the in-flight set is read: a temp is registered before it is created.
    for leftover in list(Path(folder).glob(".tmp-*")):
        with _in_flight_lock:
            ours = os.path.realpath(leftover) in _in_flight
        if ours:
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        count += 1
    return count
