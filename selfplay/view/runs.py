"""The files of a run other than its episodes, read for the viewer (read-only, each re-read only
when it changed):

    config.yaml                      the composed config (written once at start)
    summary.json                     written when a run finishes (atomically)
    incumbent.json                   the version the actors play now (atomically)
    checkpoints/version-NNNNNN/meta.json   per published version (directories renamed whole)
    elo.json                         the ladder: every match and the fitted ratings (atomically)
    evaluations.jsonl                per evaluation: games' match results, text's pass@k
                                     (appended; a line still being written is left for later)
    tensorboard/                     losses, throughput and the rest (``scalars``)

A version's gate: the gating match is the ladder's match of ``vN`` against another version,
recorded with ``version=N``; whether it was accepted shows in the next version's checkpoint,
whose ``incumbent_version`` is the incumbent when it was published (gating ends before the next
publish), and for the newest version in ``incumbent.json``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfplay.view.plots import Line, chart
from selfplay.view.scalars import ScalarReader

_VERSION_DIR = re.compile(r"^version-(\d+)$")
_VERSION_NAME = re.compile(r"^v(\d+)(-prior)?$")  # how the arena names policy versions
LIVE_SECONDS = 120.0  # a run that wrote something this recently is shown as running


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class _FileCache:
    """Parsed contents of files, re-parsed only when a file's size or mtime changes."""

    def __init__(self):
        self._entries: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, parse: Callable[[Path], Any]) -> Any:
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._entries.get(path)
            if hit is not None and hit[0] == key:
                return hit[1]
        try:
            value = parse(path)
        except (OSError, ValueError) as err:
            value = {"error": f"{path.name}: {err}"}
        with self._lock:
            self._entries[path] = (key, value)
        return value


class _JsonLines:
    """An appended JSON-lines file, read from where the last read stopped; only whole lines."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self.skipped = 0  # lines that were not a JSON object (a crash can cut one)
        self._offset = 0
        self._lock = threading.Lock()

    def read(self) -> list[dict]:
        with self._lock:
            try:
                size = self.path.stat().st_size
            except OSError:
                return list(self.rows)
            if size < self._offset:  # replaced by a shorter file: start over
                self.rows, self._offset, self.skipped = [], 0, 0
            if size > self._offset:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read(size - self._offset)
                end = data.rfind(b"\n") + 1  # the part after the last newline is still coming
                for line in data[:end].splitlines():
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        self.skipped += 1
                        continue
                    if isinstance(row, dict):
                        self.rows.append(row)
                    else:
                        self.skipped += 1
                self._offset += end
            return list(self.rows)


class RunFiles:
    """Everything about a run except its episodes."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._cache = _FileCache()
        self._evaluations = _JsonLines(self.run_dir / "evaluations.jsonl")
        self.scalars = ScalarReader(self.run_dir / "tensorboard")

    # -- the files -------------------------------------------------------------------------------

    def config_text(self) -> str | None:
        return self._cache.get(self.run_dir / "config.yaml",
                               lambda p: p.read_text(encoding="utf-8", errors="replace"))

    def summary(self) -> dict | None:
        return self._cache.get(self.run_dir / "summary.json", _read_json)

    def incumbent(self) -> int | None:
        data = self._cache.get(self.run_dir / "incumbent.json", _read_json)
        if isinstance(data, dict) and isinstance(data.get("version"), int):
            return data["version"]
        summary = self.summary()
        if isinstance(summary, dict) and isinstance(summary.get("incumbent_version"), int):
            return summary["incumbent_version"]
        # No version accepted since the start (incumbent.json is written on an acceptance): the
        # incumbent when the newest version was published.
        metas = self.checkpoints()
        if metas and isinstance(metas[-1].get("incumbent_version"), int):
            return metas[-1]["incumbent_version"]
        return None

    def checkpoints(self) -> list[dict]:
        """The meta.json of every complete checkpoint, by version (a directory still being
        written is a ``.tmp-`` one, and is left out)."""
        folder = self.run_dir / "checkpoints"
        if not folder.is_dir():
            return []
        out = []
        for path in folder.iterdir():
            if not _VERSION_DIR.match(path.name):
                continue
            meta = self._cache.get(path / "meta.json", _read_json)
            if isinstance(meta, dict) and "version" in meta:
                out.append(meta)
        return sorted(out, key=lambda m: m["version"])

    def ladder(self) -> dict:
        """elo.json as written: ratings, matches, history (the fitted ratings are stored in it,
        so the viewer does not refit them); empty lists when the run has no ladder yet."""
        data = self._cache.get(self.run_dir / "elo.json", _read_json)
        if not isinstance(data, dict):
            return {"ratings": {}, "matches": [], "history": [], "anchor": None}
        if "error" in data:
            return {"ratings": {}, "matches": [], "history": [], "anchor": None,
                    "error": data["error"]}
        return data

    def evaluations(self) -> list[dict]:
        return self._evaluations.read()

    def tensorboard(self):
        return self.scalars.refresh()

    # -- what the run page shows -----------------------------------------------------------------

    def last_write(self) -> float | None:
        """The newest modification time among the files a live run keeps writing."""
        times = []
        for folder, pattern in (("episodes", "shard-*.parquet"), ("tensorboard", "events.*"),
                                ("checkpoints", "latest.json"), (".", "evaluations.jsonl"),
                                (".", "elo.json"), (".", "summary.json")):
            base = self.run_dir / folder
            if base.is_dir():
                for p in base.glob(pattern):
                    try:
                        times.append(p.stat().st_mtime)
                    except OSError:
                        pass
        return max(times) if times else None

    def status(self) -> dict[str, Any]:
        now = time.time()
        last = self.last_write()
        summary = self.summary()
        finished = isinstance(summary, dict) and "stop_reason" in summary
        summary_at = None
        if finished:
            try:
                summary_at = (self.run_dir / "summary.json").stat().st_mtime
            except OSError:
                summary_at = None
        if finished and (last is None or summary_at is None or last <= summary_at + 1.0):
            state = "finished"
            text = (f"finished ({summary.get('stop_reason')}) after "
                    f"{float(summary.get('seconds') or 0):.0f} s")
        elif last is not None and now - last <= LIVE_SECONDS:
            state, text = "running", f"running: last write {now - last:.0f} s ago"
        elif last is not None:
            state, text = "idle", f"no writes for {_duration(now - last)} (stopped, or between writes)"
        else:
            state, text = "empty", "nothing written yet"
        return {"state": state, "text": text, "last_write": last, "now": now}

    def versions(self, rated: dict[str, float] | None = None) -> list[dict]:
        """One row per published version: its checkpoint, gate match and verdict, ratings."""
        ladder = self.ladder()
        ratings = rated if rated is not None else ladder.get("ratings", {})
        metas = self.checkpoints()
        incumbent_now = self.incumbent()
        gates: dict[int, dict] = {}
        for m in ladder.get("matches", []):
            other = _VERSION_NAME.match(str(m.get("b", "")))
            if m.get("version") is not None and other and not other.group(2) \
                    and str(m.get("a")) == f"v{m['version']}":
                games = m["wins"] + m["draws"] + m["losses"]
                gates[int(m["version"])] = {
                    "against": m["b"], "wins": m["wins"], "draws": m["draws"],
                    "losses": m["losses"], "games": games,
                    "score": (m["wins"] + m["draws"] / 2) / games if games else None}
        by_version = {m["version"]: m for m in metas}
        rows = []
        for i, meta in enumerate(metas):
            v = meta["version"]
            later = metas[i + 1] if i + 1 < len(metas) else None
            accepted: bool | None = None  # unknown (a gate in flight, a version missing)
            if incumbent_now == v or (i == 0 and meta.get("incumbent_version") == v):
                accepted = True  # the incumbent now, or the run's first version
            elif later is not None and later.get("incumbent_version") == v:
                accepted = True
            elif later is not None and later["version"] == v + 1:
                accepted = False  # v+1 was published after v's gate, under another incumbent
            elif later is None and v in gates and incumbent_now is not None:
                accepted = False  # the newest version, gated, and not the incumbent
            rows.append({
                "version": v,
                "learner_step": meta.get("learner_step"),
                "saved_at": meta.get("saved_at"),
                "incumbent_at_publish": meta.get("incumbent_version"),
                "gate": gates.get(v),
                "accepted": accepted,
                "incumbent": incumbent_now == v,
                "elo": ratings.get(f"v{v}"),
                "elo_prior": ratings.get(f"v{v}-prior"),
            })
        # Versions rated but without a checkpoint here (e.g. a ladder copied from elsewhere).
        for name in ratings:
            m = _VERSION_NAME.match(name)
            if m and not m.group(2) and int(m.group(1)) not in by_version:
                rows.append({"version": int(m.group(1)), "learner_step": None, "saved_at": None,
                             "incumbent_at_publish": None, "gate": gates.get(int(m.group(1))),
                             "accepted": None, "incumbent": incumbent_now == int(m.group(1)),
                             "elo": ratings.get(name), "elo_prior": ratings.get(f"{name}-prior")})
        return sorted(rows, key=lambda r: r["version"])

    def ladder_rows(self) -> list[dict]:
        ladder = self.ladder()
        games: dict[str, int] = {}
        for m in ladder.get("matches", []):
            n = m["wins"] + m["draws"] + m["losses"]
            games[m["a"]] = games.get(m["a"], 0) + n
            games[m["b"]] = games.get(m["b"], 0) + n
        rows = [{"player": p, "rating": r, "games": games.get(p, 0),
                 "anchor": p == ladder.get("anchor")}
                for p, r in ladder.get("ratings", {}).items()]
        return sorted(rows, key=lambda r: -r["rating"])

    def charts(self) -> list[dict]:
        """The run page's plots: Elo and evaluations over versions, TensorBoard scalars over
        learner steps (losses, throughput, then every other tag)."""
        out = []
        ratings = self.ladder().get("ratings", {})
        search, prior, refs = [], [], []
        for name, r in ratings.items():
            m = _VERSION_NAME.match(name)
            if m:
                (prior if m.group(2) else search).append((float(m.group(1)), r))
            else:
                refs.append((name, r))
        if search or prior:
            xs = [x for x, _ in search + prior]
            span = (min(xs), max(xs))
            lines = [Line("with search (vN)", search)]
            if prior:
                lines.append(Line("prior only (vN-prior)", prior))
            lines += [Line(f"{name} (reference)", [(span[0], r), (span[1], r)])
                      for name, r in sorted(refs, key=lambda p: -p[1])]
            out.append(chart("Elo by version", lines, xlabel="policy version", main=True))
        evaluations = self.evaluations()
        text_keys = sorted({k for row in evaluations for k in row
                            if k.startswith(("pass@", "maj@")) or k == "mean_reward"},
                           key=_metric_order)
        if text_keys:
            lines = [Line(k, [(float(r["version"]), float(r[k])) for r in evaluations
                              if k in r and isinstance(r.get("version"), int)])
                     for k in text_keys]
            out.append(chart("Held-out pass@k by version", lines, xlabel="policy version",
                             main=True))
        matches: dict[str, list[tuple[float, float]]] = {}
        for r in evaluations:
            if "score" in r and "b" in r and isinstance(r.get("version"), int):
                kind = "prior" if str(r.get("a", "")).endswith("-prior") else "search"
                matches.setdefault(f"{kind} vs {r['b']}", []).append(
                    (float(r["version"]), float(r["score"])))
        if matches:
            out.append(chart("Score against the references by version",
                             [Line(k, v) for k, v in sorted(matches.items())],
                             xlabel="policy version", main=True))
        series = self.tensorboard()
        losses = sorted(t for t in series if t.startswith("loss/"))
        speeds = sorted(t for t in series if t.endswith("_per_s"))
        if losses:
            out.append(chart("Losses", [Line(t, series[t].points()) for t in losses],
                             xlabel="learner step", main=True))
        if speeds:
            out.append(chart("Throughput (per second)",
                             [Line(t, series[t].points()) for t in speeds],
                             xlabel="learner step", main=True))
        headline = ("rollout/reward_mean", "arena/gate_score", "selfplay/first_player_score")
        for tag in [t for t in headline if t in series] + sorted(series):
            if tag in losses or tag in speeds or tag.startswith("elo/") or \
                    any(c["title"] == tag for c in out):
                continue
            out.append(chart(tag, [Line(tag, series[tag].points())], xlabel="learner step",
                             main=tag in headline))
        return out


def _metric_order(key: str) -> tuple:
    m = re.match(r"^(pass|maj)@(\d+)$", key)
    return (0 if m and m.group(1) == "pass" else 1 if m else 2, int(m.group(2)) if m else 0, key)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
