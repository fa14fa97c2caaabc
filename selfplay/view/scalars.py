"""The scalars a run logged to TensorBoard (``RUN_DIR/tensorboard/events.out.tfevents.*``),
read incrementally and read-only.

An event file is a sequence of TFRecords: ``uint64 length, uint32 crc, data, uint32 crc``, each
``data`` an ``Event`` protocol buffer. A live run appends to its file, so the last record may be
cut short: the reader stops before it and starts there on the next refresh (each file is read
from where the previous refresh stopped, never twice). Only the ``Event`` message of the
``tensorboard`` package is used (a 40 ms import), not its event accumulator.
"""

from __future__ import annotations

import struct
import threading
from array import array
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = struct.Struct("<QI")  # length, masked crc of the length
_FOOTER = 4  # masked crc of the data


@dataclass
class Series:
    """One scalar tag: (learner) steps, values and wall times, in the order logged."""

    steps: array = field(default_factory=lambda: array("d"))
    values: array = field(default_factory=lambda: array("d"))
    walls: array = field(default_factory=lambda: array("d"))

    def add(self, step: float, value: float, wall: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        self.walls.append(wall)

    def points(self, max_points: int = 400) -> list[tuple[float, float]]:
        """(step, value) pairs sorted by step, thinned to at most ``max_points`` (the last kept)."""
        pairs = sorted(zip(self.steps, self.values), key=lambda p: p[0])
        if len(pairs) > max_points:
            stride = len(pairs) / max_points
            pairs = [pairs[int(i * stride)] for i in range(max_points - 1)] + [pairs[-1]]
        return pairs


def _scalar_value(value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):  # the newer scalar summaries keep the number in a tensor
        tensor = value.tensor
        if tensor.float_val:
            return float(tensor.float_val[0])
        if tensor.double_val:
            return float(tensor.double_val[0])
        if len(tensor.tensor_content) == 4:
            return struct.unpack("<f", tensor.tensor_content)[0]
        if len(tensor.tensor_content) == 8:
            return struct.unpack("<d", tensor.tensor_content)[0]
    return None


class ScalarReader:
    """Every scalar of the event files under one directory, kept current (thread-safe)."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.series: dict[str, Series] = {}
        self._offsets: dict[Path, int] = {}
        self._lock = threading.Lock()

    def refresh(self) -> dict[str, Series]:
        with self._lock:
            if self.logdir.is_dir():
                for path in sorted(self.logdir.rglob("events.out.tfevents.*")):
                    if path.is_file():
                        self._read_new(path)
            return dict(self.series)

    def _read_new(self, path: Path) -> None:
        start = self._offsets.get(path, 0)
        try:
            size = path.stat().st_size
        except OSError:
            return
        if size <= start:
            return
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2

        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        pos = 0
        while pos + _HEADER.size <= len(data):
            (length, _) = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length + _FOOTER
            if end > len(data):
                break  # a record still being written: read it on the next refresh
            record = data[pos + _HEADER.size:pos + _HEADER.size + length]
            pos = end
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError:  # a damaged record: skip it, as TensorBoard does
                continue
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = _scalar_value(value)
                if number is not None:
                    self.series.setdefault(value.tag, Series()).add(
                        float(event.step), number, float(event.wall_time))
        self._offsets[path] = start + pos
