"""Print the README's benchmark table from benchmarks/results/*.json (full runs only).

    python benchmarks/table.py > /tmp/table.md   # then paste it under "## Benchmarks"
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def main() -> None:
    print("| benchmark | figure | ours | baseline | ratio | goal | run |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted(RESULTS.glob("*.json")):
        if path.name.endswith(".quick.json"):
            continue
        result = json.loads(path.read_text())
        run = f"{result['date'][:10]}, {result['machine']}"
        for f in result["figures"]:
            ratio = f"{f['ratio']:.2f}x" if f.get("ratio") else "–"
            print(f"| {result['benchmark']} | {f['name']} ({f['unit']}) | {cell(f['ours'])} | "
                  f"{cell(f['baseline'])} ({f['baseline_name']}) | {ratio} | {f['goal']} | {run} |")


if __name__ == "__main__":
    main()
