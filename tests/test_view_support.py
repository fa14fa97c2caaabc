"""What the viewer's tests share: a run directory written by the project's own writers, a real
server on a free port, and an HTTP client. (Its one test checks the run it builds reads back.)

The run: two policy versions of tic-tac-toe self-play (one game by the real search, its trees
recorded) and of a text task (groups of k samples on the same prompts for both versions),
checkpoints (tiny policies, loadable), an Elo ladder with a gate match,
incumbent.json, evaluations.jsonl, TensorBoard scalars, config.yaml; plus one game and one text
episode whose every policy-written field holds markup.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from selfplay.arena.elo import EloLadder
from selfplay.atomic import atomic_write_json
from selfplay.learner.checkpoint import CheckpointMeta, checkpoint_dir
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode, SampledTokens, SearchStats, Step
from selfplay.view.synthetic import text_episode, tictactoe_episode

SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
HOSTILE_GAME_ID = "e0" * 16
HOSTILE_TEXT_ID = "e1" * 16
T0 = 1_800_000_000.0


def _hostile_game() -> Episode:
    obs = f"X to move\n...\n...\n...\n{SCRIPT}\n"
    search = SearchStats(actions=[SCRIPT, IMG, "5"], visits=[3.0, 1.0, 0.0],
                         priors=[0.5, 0.25, 0.25], q_values=[0.5, -0.25, 0.0],
                         root_value=0.25, simulations=4)
    steps = [Step(observation=obs, action=SCRIPT, player=0, reward=0.0, search=search,
                  legal_actions=[SCRIPT, IMG, "5"]),
             Step(observation=f"O to move\n{IMG}\n", action=IMG, player=1, reward=1.0,
                  search=None, legal_actions=[IMG])]
    return Episode(episode_id=HOSTILE_GAME_ID, env_id="selfplay/TicTacToe-v0", seed=1,
                   policy_version=1, steps=steps, outcome=-1.0, started_at=T0 + 500,
                   finished_at=T0 + 501, actor=f"rollout-{IMG}", info={"termination": SCRIPT})


def _hostile_text() -> Episode:
    prompt = f"What is 2 + 2? {SCRIPT}"
    steps = [Step(observation=prompt, action=IMG, player=0, reward=0.0,
                  tokens=SampledTokens(ids=[1, 2], logprobs=[-0.5, -1.5], version=1)),
             Step(observation=prompt + "\n" + IMG, action=f"The answer is {SCRIPT}", player=0,
                  reward=0.0, tokens=SampledTokens(ids=[3], logprobs=[-0.25], version=1))]
    return Episode(episode_id=HOSTILE_TEXT_ID, env_id="selfplay/MathArithmetic-v0", seed=2,
                   policy_version=1, steps=steps, outcome=0.0, started_at=T0 + 502,
                   finished_at=T0 + 503, actor="rollout-1", group_id="g-hostile",
                   info={"predicted": SCRIPT, "answer": "4", "correct": "False",
                         "termination": IMG, "env_reward": "0.0",
                         "feedback": json.dumps({"judge": 0.5, IMG: 1.0})})


SEARCHED_GAME_ID = "1a" + "5".rjust(30, "0")


def searched_game(episode_id: str, version: int) -> Episode:
    """A game of self-play by the real search (uniform priors, 64 simulations a move), with the
    64 most-visited nodes of each decision's tree recorded."""
    from envs.games.tictactoe import TicTacToe
    from selfplay.rollout.games import play_selfplay_games
    from selfplay.search.game_adapter import GameSearch, uniform_evaluator

    game = TicTacToe()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=64, record_nodes=64)
    (e,) = play_selfplay_games(game, search, num_games=1, env_id="selfplay/TicTacToe-v0",
                               policy_version=version, seed=7)
    e.episode_id = episode_id
    return e


def build_run(run_dir: Path) -> dict:
    """Write a small, complete run into ``run_dir``; returns what the tests check against."""
    rng = np.random.default_rng(0)
    store = EpisodeStore(run_dir)
    problems = [(12, 30), (41, 7)]
    made: list[Episode] = []
    for version in (0, 1):
        games = []
        for i in range(6):
            if version == 1 and i == 5:
                e = searched_game(f"{version}a{i:030d}", version)
            else:
                e = tictactoe_episode(rng, f"{version}a{i:030d}", version=version)
            e.started_at = T0 + version * 100 + i
            e.finished_at = e.started_at + 0.5
            e.actor = f"rollout-{i % 2}"
            games.append(e)
        texts = []
        for p, (a, b) in enumerate(problems):
            for j in range(4):
                e = text_episode(rng, f"{version}b{p}{j:029d}", f"group-{version}-{p}", a, b,
                                 version=version)
                e.started_at = T0 + version * 100 + 50 + p * 4 + j
                e.finished_at = e.started_at + 0.25
                e.actor = f"rollout-{j % 2}"
                texts.append(e)
        store.append(games)
        store.append(texts)
        made += games + texts
    store.append([_hostile_game(), _hostile_text()])
    made += [_hostile_game(), _hostile_text()]

    for version, step, incumbent in ((0, 0, 0), (1, 8, 0)):
        folder = checkpoint_dir(run_dir, version)
        folder.mkdir(parents=True)
        meta = CheckpointMeta(version=version, learner_step=step, incumbent_version=incumbent,
                              saved_at=T0 + version * 100)
        (folder / "meta.json").write_text(json.dumps(asdict(meta), indent=2))
    save_weights(run_dir, (0, 1))
    atomic_write_json(run_dir / "incumbent.json", {"version": 1, "at": T0 + 150})

    ladder = EloLadder(run_dir / "elo.json")

    def match(a, b, w, d, l, version):
        ladder.record(SimpleNamespace(a=a, b=b, wins=w, draws=d, losses=l), version=version,
                      recorded_at=T0 + version * 100)

    match("v0", "random", 5, 1, 2, 0)
    match("v0-prior", "random", 3, 1, 4, 0)
    match("v1", "v0", 6, 1, 1, 1)  # the gate
    match("v1", "random", 7, 1, 0, 1)
    match("v1-prior", "random", 5, 1, 2, 1)
    ladder.save()

    rows = [{"version": 0, "at": T0 + 10, "a": "v0", "b": "random", "wins": 5, "draws": 1,
             "losses": 2, "games": 8, "score": 0.6875},
            {"version": 1, "at": T0 + 110, "a": "v1", "b": "random", "wins": 7, "draws": 1,
             "losses": 0, "games": 8, "score": 0.9375},
            {"version": 0, "at": T0 + 20, "a": "v0", "b": "held-out", "problems": 4, "k": 4,
             "pass@1": 0.25, "pass@4": 0.5, "maj@4": 0.25, "mean_reward": 0.25},
            {"version": 1, "at": T0 + 120, "a": "v1", "b": "held-out", "problems": 4, "k": 4,
             "pass@1": 0.5, "pass@4": 0.75, "maj@4": 0.5, "mean_reward": 0.5}]
    with open(run_dir / "evaluations.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)

    from selfplay.metrics import MetricsWriter  # the run's own TensorBoard writer

    metrics = MetricsWriter(run_dir / "tensorboard")
    for step in range(1, 9):
        metrics.scalar("loss/total", 2.0 / step, step)
        metrics.scalar("loss/value_mse", 1.0 / step, step)
        metrics.scalar("selfplay/episodes_per_s", 10.0 + step, step)
        metrics.scalar("learner/steps_per_s", 3.0, step)
    metrics.close()

    (run_dir / "config.yaml").write_text(f"env:\n  id: selfplay/TicTacToe-v0\nnote: '{SCRIPT}'\n")
    return {"episodes": made, "problems": problems}


TINY_POLICY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
               "intermediate_size": 64, "max_seq_len": 128}


def save_weights(run_dir: Path, versions) -> None:
    """Tiny policies (one seed per version, so they differ) into the versions' checkpoint
    directories, as ``save_checkpoint`` lays them out: what the compare page runs live."""
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.model import build_policy

    for version in versions:
        model, tokenizer = build_policy(PolicyConfig(seed=version, **TINY_POLICY))
        model.save(str(checkpoint_dir(run_dir, version)), tokenizer)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time (to prove no writes)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------------------------------------
# A real server and a client


@contextmanager
def serve(run_dir: Path, refresh_s: float = 0.0):
    """The viewer of ``run_dir`` on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    from selfplay.view.app import make_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(run_dir, refresh_s=refresh_s),
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the viewer did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def get(url: str) -> tuple[int, dict, str]:
    """(status, headers with lower-case names, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, _lower(r.headers), r.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers), err.read().decode("utf-8")


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def get_json(url: str, status: int = 200) -> dict:
    code, headers, body = get(url)
    assert code == status, (url, code, body[:500])
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def test_built_run_reads_back(tmp_path):
    info = build_run(tmp_path)
    store = EpisodeStore(tmp_path, read_only=True)
    ids = [e.episode_id for e in store.episodes()]
    assert sorted(ids) == sorted(e.episode_id for e in info["episodes"])
    assert EloLadder.load(tmp_path).ratings()["v1"] > EloLadder.load(tmp_path).ratings()["v0"]
