"""The README's screenshots of `selfplay view`, made from two small real runs in headless Chromium.

    python benchmarks/screenshots.py [--out docs/images] [--work DIR] [--reuse]

Trains a few seconds of tic-tac-toe and of step-by-step arithmetic (`selfplay train`, tiny
policies, in WORK), serves each run with the viewer, and saves a PNG of every page: the run,
the episodes, a game episode, a text episode, a decision's search tree expanded two levels, and
two versions compared live. Each is about 1100x700 and kept under 150 KB. --reuse keeps runs
already in WORK (WORK defaults to a temporary folder, removed afterwards). Needs Chromium
(/usr/bin/chromium, or SELFPLAY_CHROMIUM) and Playwright's Python package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from view_speed import Server

VIEWPORT = {"width": 1100, "height": 700}
MAX_BYTES = 150_000
POLICY = ["policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
          "policy.num_kv_heads=1", "policy.intermediate_size=64", "run.progress=false",
          "ray.num_cpus=2"]
GAME_RUN = ["env=tictactoe", "run.budget_steps=16", "search.num_simulations=32",
            "learner.batch_size=32", "learner.min_replay_steps=32", "learner.publish_every=4steps",
            "run.games_per_actor=8", "arena.gate_games=4", "arena.eval_games=4",
            "arena.search_simulations=4"]
TEXT_RUN = ["env=math_steps", "learner=grpo", "run.budget_steps=6", "run.budget_minutes=4",
            "learner.batch_size=16", "learner.min_replay_steps=16", "learner.publish_every=3steps",
            "learner.steps_per_call=1", "run.games_per_actor=4", "sampling.k=4",
            "sampling.max_tokens=24", "sampling.step_max_tokens=16", "run.eval_every=3steps",
            "arena.eval_games=4", "arena.gate_games=4", "arena.gate=false", "run.warm_start=sft",
            "run.warm_start_problems=8", "run.warm_start_steps=2"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1"]


def train(run_dir: Path, overrides: list[str]) -> None:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "selfplay.cli", "train", f"run.dir={run_dir}", *POLICY,
           *overrides]
    print("  " + " ".join(cmd[3:]), flush=True)
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"selfplay train failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def shoot(page, url: str, path: Path, prepare=None) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    if prepare is not None:
        prepare(page)
    page.screenshot(path=str(path), full_page=False)
    shrink(path)
    print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"{path.stat().st_size // 1000} KB", flush=True)


def shrink(path: Path) -> None:
    """Fewer colours where a page's PNG is over MAX_BYTES (Pillow, when installed)."""
    if path.stat().st_size <= MAX_BYTES:
        return
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64)
    small.save(path, optimize=True)


def show_live(page) -> None:
    page.evaluate("document.getElementById('live').scrollIntoView()")


def expand_two_levels(page) -> None:
    """Open the most-visited move that has replies, then its most-visited reply with replies."""
    first = page.locator("#tree li.node[data-depth='1']:has(> details) > details > summary").first
    first.click()
    second = page.locator("#tree li.node[data-depth='2']:has(> details) > details > summary").first
    if second.count():
        second.click()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--work", type=Path, default=None, help="where the two runs go")
    parser.add_argument("--reuse", action="store_true", help="keep runs already in --work")
    args = parser.parse_args()
    chromium = os.environ.get("SELFPLAY_CHROMIUM") or "/usr/bin/chromium"
    work = args.work or Path(tempfile.mkdtemp(prefix="view-shots-"))
    args.out.mkdir(parents=True, exist_ok=True)
    game_dir, text_dir = work / "ttt", work / "arith"
    try:
        for run_dir, overrides in ((game_dir, GAME_RUN), (text_dir, TEXT_RUN)):
            if not (args.reuse and (run_dir / "summary.json").exists()):
                shutil.rmtree(run_dir, ignore_errors=True)
                print(f"training {run_dir.name} ...", flush=True)
                train(run_dir, overrides)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p, Server(game_dir, 1.0) as game, Server(text_dir, 1.0) as text:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(120_000)
            out = args.out
            shoot(page, game.base + "/", out / "view-run.png")
            shoot(page, game.base + "/episodes", out / "view-episodes.png")
            longest = game.get("/episodes.json?sort=length&order=desc&size=1")[1]["rows"][0]
            episode = f"/episodes/{longest['episode_id']}"
            shoot(page, game.base + episode + "?step=3", out / "view-episode-game.png")
            # The decision whose recorded tree goes deepest (fewer moves left: deeper trees).
            depths = [game.get(f"{episode}/steps/{n}/search.json")[1]["tree"]["depth_recorded"]
                      for n in range(1, longest["num_steps"])]
            deepest = 1 + max(range(len(depths)), key=lambda i: (depths[i], -i))
            shoot(page, game.base + episode + f"/steps/{deepest}/search", out / "view-search.png",
                  expand_two_levels)
            # The checkpoints (a short run may have played its episodes with the first alone).
            versions = [v["version"] for v in game.get("/run.json")[1]["versions"]]
            start = game.get(episode + ".json")[1]["steps"][0]["observation"]
            shoot(page, game.base + "/compare?" + urlencode(
                {"a": versions[0], "b": versions[-1], "at": start, "live": 1}),
                out / "view-compare.png", show_live)
            row = text.get("/episodes.json?sort=length&order=desc&size=1")[1]["rows"][0]
            shoot(page, text.base + f"/episodes/{row['episode_id']}?step=2",
                  out / "view-episode-text.png")
            browser.close()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
