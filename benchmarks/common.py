"""What every benchmark shares: the machine line, the table, the results file (DESIGN.md)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine(note: str = "") -> str:
    """CPU model and core count (and the GPU when torch sees one), plus ``note``."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{model}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f"; GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{text}; {note}" if note else text


def figure(name: str, unit: str, ours: float | None, baseline: float | None, baseline_name: str,
           goal: str, higher_is_better: bool = True, digits: int = 1) -> dict[str, Any]:
    """One row; ``ratio`` is how many times better ours is (ours/baseline, or the inverse)."""
    ratio = None
    if ours is not None and baseline:
        ratio = round(ours / baseline if higher_is_better else baseline / ours, 2) if ours else None
    return {"name": name, "unit": unit,
            "ours": None if ours is None else round(ours, digits),
            "baseline": None if baseline is None else round(baseline, digits),
            "baseline_name": baseline_name, "ratio": ratio, "goal": goal}


def print_table(benchmark: str, figures: list[dict[str, Any]]) -> None:
    print(f"{benchmark} on {machine()}")
    print(f"{'figure':<70} {'unit':>8} {'ours':>10} {'baseline':>10} {'ratio':>7}  goal")
    for f in figures:
        cells = [("-" if f[k] is None else f"{f[k]:g}") for k in ("ours", "baseline", "ratio")]
        print(f"{f['name'][:70]:<70} {f['unit']:>8} {cells[0]:>10} {cells[1]:>10} {cells[2]:>7}"
              f"  {f['goal']}")
        print(f"{'':<70}   baseline: {f['baseline_name']}")


def write_result(benchmark: str, figures: list[dict[str, Any]], *, quick: bool = False,
                 extra: dict[str, Any] | None = None, note: str = "") -> Path:
    """Write ``results/<benchmark>.json`` atomically (a quick run writes ``<benchmark>.quick.json``
    so that it never replaces the figures of a full run)."""
    result = {"benchmark": benchmark,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(note), "quick": quick, "figures": figures, **(extra or {})}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{benchmark}{'.quick' if quick else ''}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path
