"""OpenSpiel's own AlphaZero on connect four, trained for the same wall-clock on the same machine,
then played against a selfplay run's final version, both sides: issue 11's peer, side by side.

OpenSpiel 2.0.2's AlphaZero (``open_spiel.python.algorithms.alpha_zero``: an MLP or ResNet in
JAX/Flax, MCTS in Python, actor processes feeding a learner) runs in a child process for
``--minutes`` and is stopped as its own example is (an interrupt: it saves the latest weights as
checkpoint -1). Its settings are its example's, scaled to 2 cores so that the learner steps within
the hour (the example's 65,536-state buffer reused 3 times would take one learner step per ~1,000
games); they are recorded in the JSON. Then, with the same number of simulations per move on
both sides (``--sims``): selfplay's incumbent (its LM prior and value through ``GameSearch``)
against OpenSpiel's MCTS bot on its trained evaluator, ``--games`` games, half with each side
first, and the OpenSpiel bot against the same reference players as
``learn_connect_four.py`` (alpha-beta depth 2 and 4), so the two tables line up.

    python benchmarks/openspiel_alphazero_peer.py --ours runs/bench-connect-four   # 60 min + games
    python benchmarks/openspiel_alphazero_peer.py --quick --ours RUN_DIR   # 1 min, 10 games, 16 sims

Needs the ``[bench]`` extra (open-spiel, jax, flax, optax, orbax-checkpoint, chex). ``--ours`` is
a run directory of ``selfplay train env=connect_four`` (its newest incumbent plays) or a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result  # noqa: E402
from learn_arithmetic import compose  # noqa: E402

# OpenSpiel's example flags (open_spiel/python/examples/alpha_zero.py), with the buffer scaled
# to 2 cores: 16,384 states reused 4 times, a learner step every ~4,096 new states (~200 games).
PEER_SETTINGS = {
    "game": "connect_four", "learning_rate": 0.001, "weight_decay": 1e-4,
    "decouple_weight_decay": False, "train_batch_size": 256, "replay_buffer_size": 2**14,
    "replay_buffer_reuse": 4, "max_steps": 0, "checkpoint_freq": 1_000_000, "actors": 2,
    "evaluators": 0, "evaluation_window": 100, "eval_levels": 7, "uct_c": 2.0,
    "max_simulations": 100, "policy_alpha": 1.0, "policy_epsilon": 0.25, "temperature": 1.0,
    "temperature_drop": 10, "nn_model": "mlp", "nn_width": 128, "nn_depth": 4,
    "observation_shape": None, "output_size": None, "verbose": False, "quiet": True,
    "nn_api_version": "nnx",
}
REFERENCES = ("alphabeta:2", "alphabeta:4")


def train_peer(path: Path, settings: dict, minutes: float) -> dict:
    """OpenSpiel's AlphaZero in a child process for ``minutes``, then interrupted (it saves the
    latest weights as checkpoint -1 and stops its actors). Returns what its learner logged."""
    path.mkdir(parents=True, exist_ok=True)
    log = open(path / "train.log", "w")
    child = subprocess.Popen([sys.executable, __file__, "--train-peer", str(path),
                              json.dumps(settings)], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    started = time.time()
    while child.poll() is None and time.time() - started < minutes * 60:
        time.sleep(1.0)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGINT)  # what its example's Ctrl-C does: save, then stop
        try:
            child.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    log.close()
    learner = [json.loads(line) for line in (path / "learner.jsonl").read_text().splitlines()
               if line.strip()] if (path / "learner.jsonl").exists() else []
    if not learner:
        sys.exit(f"OpenSpiel's AlphaZero logged no learner step; its log:\n"
                 f"{(path / 'train.log').read_text()[-3000:]}")
    last = learner[-1]
    return {"seconds": round(time.time() - started, 1), "learner_steps": last.get("step"),
            "states": last.get("total_states"), "trajectories": last.get("total_trajectories"),
            "exit_code": child.returncode}


def run_peer_training(path: str, settings_json: str) -> None:
    from open_spiel.python.algorithms.alpha_zero import alpha_zero as az

    settings = json.loads(settings_json)
    config = az.Config(path=path, **{k: v for k, v in settings.items() if k != "path"})
    az.alpha_zero(config)


class OpenSpielBot:
    """A ``Player`` of our connect four backed by OpenSpiel's MCTS bot on its trained evaluator:
    each of our states is rebuilt as a pyspiel state (any move order that stacks every column as
    it stands; the bot reads only the board), and its column is our action."""

    def __init__(self, path: Path, simulations: int, seed: int):
        import pyspiel
        from open_spiel.python.algorithms import mcts
        from open_spiel.python.algorithms.alpha_zero import alpha_zero as az
        from open_spiel.python.algorithms.alpha_zero import evaluator as evaluator_lib

        saved = json.loads((path / "config.json").read_text())
        saved["observation_shape"] = tuple(saved["observation_shape"])
        config = az.Config(**saved)
        self.game = pyspiel.load_game("connect_four")
        model = az._init_model_from_config(config)  # noqa: SLF001 - its own loader's first half
        model.load_checkpoint(-1)
        self.bot = mcts.MCTSBot(
            self.game, config.uct_c, simulations, evaluator_lib.AlphaZeroEvaluator(self.game, model),
            random_state=np.random.RandomState(seed), solve=False, dirichlet_noise=None,
            child_selection_fn=mcts.SearchNode.puct_value, dont_return_chance_node=True)
        self.name = f"openspiel-az ({simulations} sims)"

    def choose(self, game, state: np.ndarray, rng: np.random.Generator) -> int:
        spiel_state = self.game.new_initial_state()
        for column in move_order(tuple(int(x) for x in state[:42])):
            spiel_state.apply_action(column)
        return int(self.bot.step(spiel_state))


def move_order(cells: tuple[int, ...]) -> list[int]:
    """Columns, in an order the two players could have played them, that stack every column of
    ``cells`` (our layout: row 0 at the bottom, 1 = first player, 2 = second). A position in play
    holds no four, so no prefix of any such order does: only alternation constrains it."""
    stacks = [[cells[r * 7 + c] for r in range(6) if cells[r * 7 + c]] for c in range(7)]
    total = sum(len(s) for s in stacks)

    @lru_cache(maxsize=None)
    def order_from(heights: tuple[int, ...]) -> tuple[int, ...] | None:
        placed = sum(heights)
        if placed == total:
            return ()
        piece = placed % 2 + 1
        for c in range(7):
            if heights[c] < len(stacks[c]) and stacks[c][heights[c]] == piece:
                rest = order_from(heights[:c] + (heights[c] + 1,) + heights[c + 1:])
                if rest is not None:
                    return (c, *rest)
        return None

    found = order_from((0,) * 7)
    if found is None:
        raise ValueError("no move order reaches this connect-four position")
    return list(found)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--train-peer":
        run_peer_training(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", required=True, help="a selfplay connect-four run dir or checkpoint")
    parser.add_argument("--minutes", type=float, default=60.0, help="OpenSpiel AlphaZero's budget")
    parser.add_argument("--games", type=int, default=200, help="games per match, half each side")
    parser.add_argument("--sims", type=int, default=128, help="simulations per move, both sides")
    parser.add_argument("--peer-dir", default="runs/openspiel-az-c4", help="kept for replay")
    parser.add_argument("--quick", action="store_true", help="1-minute budget, 10 games")
    args = parser.parse_args()
    settings = dict(PEER_SETTINGS)
    if args.quick:  # small enough that its learner steps within the minute
        args.minutes, args.games, args.sims = 1.0, 10, 16
        settings.update(max_simulations=20, replay_buffer_size=512, train_batch_size=64)

    from envs.games.players import AlphaBetaPlayer
    from selfplay.arena.match import play_match
    from selfplay.arena.players import policy_player_from_checkpoint
    from selfplay.build import build_env, game_of

    peer_dir = Path(args.peer_dir).resolve()
    trained = train_peer(peer_dir, settings, args.minutes)
    print(f"openspiel alphazero: {trained}", flush=True)

    cfg = compose(["env=connect_four"])  # the game's defaults: the view our policy reads
    env_cfg = cfg.env
    game = game_of(build_env(env_cfg))
    ours = policy_player_from_checkpoint(args.ours, game, engine_cfg=cfg.engine,
                                         search_cfg=cfg.search, num_simulations=args.sims,
                                         env_cfg=env_cfg)
    peer = OpenSpielBot(peer_dir, args.sims, seed=0)
    rows = {}
    started = time.time()
    rows["ours vs openspiel-az"] = play_match(game, ours, peer, args.games, seed=1)
    for ref in REFERENCES:
        depth = int(ref.split(":")[1])
        rows[f"openspiel-az vs {ref}"] = play_match(game, peer, AlphaBetaPlayer(depth), args.games,
                                                    seed=2)
    print(f"matches: {time.time() - started:.0f} s", flush=True)
    scores = {name: r.score for name, r in rows.items()}
    label = f"OpenSpiel AZ trained {args.minutes:g} min, {args.sims} sims/move, {args.games} games"
    figures = [figure(f"selfplay vs OpenSpiel AlphaZero on connect four, score ({label})",
                      "score", scores["ours vs openspiel-az"], 0.5, "an even match", "> 0.5",
                      digits=3)]
    for ref in REFERENCES:
        figures.append(figure(f"OpenSpiel AlphaZero vs {ref}, score ({label})", "score",
                              scores[f"openspiel-az vs {ref}"], None, "-", "report", digits=3))
    print_table("openspiel_alphazero_peer", figures)
    write_result("openspiel_alphazero_peer", figures, quick=args.quick, extra={
        "ours": str(Path(args.ours).resolve()), "peer_dir": str(peer_dir), "peer": trained,
        "peer_settings": settings, "minutes": args.minutes, "simulations": args.sims,
        "matches": {name: {**r.to_dict(), "ci95": list(r.confidence_interval())}
                    for name, r in rows.items()}})


if __name__ == "__main__":
    main()
