"""`selfplay view`: the pages and their JSON twins over real HTTP, on a run written by the
project's own writers; read-only and live; paging a store of hundreds of thousands of rows;
untrusted text escaped; and the parts (queries, boards, charts, TensorBoard reader) on their own.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from urllib.parse import urlencode

import pandas as pd
import pytest
from test_view_support import (
    HOSTILE_GAME_ID,
    HOSTILE_TEXT_ID,
    IMG,
    SCRIPT,
    SEARCHED_GAME_ID,
    build_run,
    get,
    get_json,
    serve,
    snapshot,
)

from selfplay.replay.store import EpisodeStore
from selfplay.view.boards import boards_of, parse_board
from selfplay.view.episodes import EpisodeIndex, EpisodeQuery, QueryError
from selfplay.view.plots import Line, line_chart, nice_ticks
from selfplay.view.scalars import ScalarReader
from selfplay.view.synthetic import template_episodes, write_store

GAME = "selfplay/TicTacToe-v0"
TEXT = "selfplay/MathArithmetic-v0"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("view-run")
    info = build_run(run_dir)
    with serve(run_dir) as base:
        yield {"dir": run_dir, "base": base, **info}


def _frame(run_dir) -> pd.DataFrame:
    """One row per episode, from the store through pandas (the reference the listing must match)."""
    steps = EpisodeStore(run_dir, read_only=True).to_pandas()
    return steps[steps.step_index == 0].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Every page, as HTML and as JSON


PAGES = ["/", "/episodes", "/episodes?env=selfplay%2FTicTacToe-v0&version=1",
         f"/episodes/{'0a' + '0' * 30}", f"/episodes/{'0a' + '0' * 30}/steps/1/search",
         f"/episodes/{'0b0' + '0' * 29}", "/compare", "/compare?a=0&b=1"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_json_twin(run, path):
    status, headers, body = get(run["base"] + path)
    assert status == 200, body[:500]
    assert headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    twin = ("/run.json" if path == "/" else path.replace("?", ".json?", 1) if "?" in path
            else path + ".json")
    assert f'href="{twin.replace("&", "&amp;")}"' in body  # the page links its twin
    data = get_json(run["base"] + twin)
    assert isinstance(data, dict) and data


def test_run_page(run):
    data = get_json(run["base"] + "/run.json")
    assert data["counts"]["episodes"] == len(run["episodes"])
    assert data["counts"]["steps"] == sum(e.length for e in run["episodes"])
    assert data["envs"] == [TEXT, GAME]
    v0, v1 = data["versions"]
    assert (v0["version"], v0["learner_step"], v0["accepted"]) == (0, 0, True)
    assert v1["gate"] == {"against": "v0", "wins": 6, "draws": 1, "losses": 1, "games": 8,
                          "score": 6.5 / 8}
    assert v1["accepted"] is True and v1["incumbent"] and data["incumbent"] == 1
    assert v1["elo"] > v0["elo"]
    assert data["ladder"][0]["player"] == "v1"  # best first
    titles = [c["title"] for c in data["charts"]]
    for title in ("Elo by version", "Held-out pass@k by version", "Losses",
                  "Score against the references by version", "Throughput (per second)"):
        assert title in titles
    losses = next(c for c in data["charts"] if c["title"] == "Losses")
    total = next(ln for ln in losses["lines"] if ln["name"] == "loss/total")
    assert [x for x, _ in total["points"]] == [float(s) for s in range(1, 9)]
    assert [y for _, y in total["points"]] == pytest.approx([2.0 / s for s in range(1, 9)],
                                                            rel=1e-6)  # float32 in the file
    passk = next(c for c in data["charts"] if c["title"] == "Held-out pass@k by version")
    assert [ln["name"] for ln in passk["lines"]] == ["pass@1", "pass@4", "maj@4", "mean_reward"]
    assert data["status"]["state"] in ("running", "idle")  # no summary.json: not finished
    assert "TicTacToe" in data["config"]
    _, _, html = get(run["base"] + "/")
    assert html.count("<polyline") >= 5  # the plots are drawn on the server


def test_finished_run_status(tmp_path):
    build_run(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"stop_reason": "budget_steps",
                                                       "seconds": 12.0}))
    with serve(tmp_path) as base:
        status = get_json(base + "/run.json")["status"]
    assert status["state"] == "finished" and "budget_steps" in status["text"]


# ---------------------------------------------------------------------------------------------
# The episode table: filters, facets, paging


def _listing(base, **params):
    return get_json(base + "/episodes.json?" + urlencode(params))


def test_filters_match_pandas(run):
    frame = _frame(run["dir"])
    base = run["base"]
    cases = [
        ({"env": GAME}, frame.env_id == GAME),
        ({"version": 1}, frame.policy_version == 1),
        ({"version_min": 0, "version_max": 0}, frame.policy_version == 0),
        ({"outcome_min": 0.5}, frame.outcome >= 0.5),
        ({"outcome_min": -1, "outcome_max": 0}, frame.outcome.between(-1, 0)),
        ({"length_min": 6, "length_max": 7}, frame.num_steps.between(6, 7)),
        ({"actor": "rollout-1"}, frame.actor == "rollout-1"),
        ({"group": "group-1-0"}, frame.group_id == "group-1-0"),
        ({"since": 1_800_000_100, "until": 1_800_000_160}, frame.finished_at.between(
            1_800_000_100, 1_800_000_160)),
        ({"env": TEXT, "outcome_min": 1}, (frame.env_id == TEXT) & (frame.outcome >= 1)),
    ]
    for params, expected in cases:
        data = _listing(base, **params)
        assert data["matching"] == int(expected.sum()), params
        assert sorted(r["episode_id"] for r in data["rows"]) == sorted(
            frame[expected].episode_id), params
        assert data["total"] == len(frame)


def test_time_filter_takes_iso_local_time(run):
    frame = _frame(run["dir"])
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_800_000_100))
    data = _listing(run["base"], since=since)
    assert data["matching"] == int((frame.finished_at >= 1_800_000_100).sum())


def test_sorting_and_facets(run):
    data = _listing(run["base"], sort="length", order="asc", env=GAME)
    lengths = [r["num_steps"] for r in data["rows"]]
    assert lengths == sorted(lengths)
    data = _listing(run["base"])
    finished = [r["finished_at"] for r in data["rows"]]
    assert finished == sorted(finished, reverse=True)  # newest first by default
    facets = {f["value"]: f["count"] for f in data["facets"]["env"]}
    frame = _frame(run["dir"])
    assert facets == frame.env_id.value_counts().to_dict()
    # A facet counts among the other filters: choosing an env still lists the others.
    data = _listing(run["base"], env=GAME)
    assert {f["value"] for f in data["facets"]["env"]} == {GAME, TEXT}
    assert {f["value"] for f in data["facets"]["version"]} == {0, 1}


@pytest.mark.parametrize("params, name", [({"version": "x"}, "version"),
                                           ({"outcome_min": "high"}, "outcome_min"),
                                           ({"since": "yesterday"}, "since"),
                                           ({"sort": "colour"}, "sort"),
                                           ({"page": "0"}, "page"),
                                           ({"size": "100000"}, "size")])
def test_bad_filters_are_named(run, params, name):
    data = get_json(run["base"] + "/episodes.json?" + urlencode(params), status=400)
    assert data["param"] == name and name in data["error"]
    status, _, body = get(run["base"] + "/episodes?" + urlencode(params))
    assert status == 400 and name in body


def test_unknown_episode_is_404(run):
    data = get_json(run["base"] + "/episodes/nope.json", status=404)
    assert "nope" in data["error"]
    status, _, body = get(run["base"] + f"/episodes/{'0a' + '0' * 30}/steps/99/search")
    assert status == 404 and "steps 1 .." in body


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """40,000 episodes, about 210,000 rows, in 80 shards."""
    run_dir = tmp_path_factory.mktemp("view-big")
    rows = write_store(run_dir, 40_000, per_shard=500, versions=8, actors=4)
    with serve(run_dir) as base:
        yield {"dir": run_dir, "base": base, "rows": rows}


def test_paging_a_large_store(big):
    assert big["rows"] > 200_000
    base = big["base"]
    started = time.perf_counter()
    first = _listing(base, size=100)
    first_s = time.perf_counter() - started  # includes building the index, once
    assert first["total"] == first["matching"] == 40_000 and first["pages"] == 400
    assert len(first["rows"]) == 100
    started = time.perf_counter()
    last = _listing(base, size=100, page=400)
    page_s = time.perf_counter() - started
    assert len(last["rows"]) == 100 and last["links"]["next"] is None
    ids_first = {r["episode_id"] for r in first["rows"]}
    assert not ids_first & {r["episode_id"] for r in last["rows"]}
    # Consecutive pages tile the listing: no episode twice, none left out.
    seen = []
    for page in range(1, 6):
        seen += [r["episode_id"] for r in _listing(base, size=500, page=page, version=3)["rows"]]
    frame = pd.read_parquet(big["dir"] / "episodes", columns=["episode_id", "policy_version",
                                                              "step_index", "outcome",
                                                              "finished_at", "env_id"])
    ep = frame[frame.step_index == 0]
    v3 = ep[ep.policy_version == 3].sort_values("finished_at", ascending=False, kind="stable")
    assert seen == list(v3.episode_id[:2500])
    started = time.perf_counter()
    filtered = _listing(base, env=GAME, outcome_min=1, version_min=2, version_max=5)
    filter_s = time.perf_counter() - started
    expected = ep[(ep.env_id == GAME) & (ep.outcome >= 1) & ep.policy_version.between(2, 5)]
    assert filtered["matching"] == len(expected)
    print(f"\nfirst page (cold index) {first_s:.2f} s, last page {page_s:.3f} s, "
          f"filter {filter_s:.3f} s")
    # Generous bounds for a loaded 2-core machine; the speed claim itself belongs in a benchmark.
    assert page_s < 5 and filter_s < 5


def test_an_episode_of_the_large_store(big):
    data = _listing(big["base"], sort="length", order="desc", size=1)
    row = data["rows"][0]
    episode = get_json(big["base"] + f"/episodes/{row['episode_id']}.json")
    assert episode["episode"]["num_steps"] == row["num_steps"] == len(episode["steps"])
    short = get_json(big["base"] + f"/episodes/{row['episode_id'][:12]}.json")  # an id prefix
    assert short["episode"]["episode_id"] == row["episode_id"]


# ---------------------------------------------------------------------------------------------
# One episode, its search, two versions


def test_game_episode_page(run):
    game = next(e for e in run["episodes"] if e.env_id == GAME and e.length >= 5
                and e.episode_id != HOSTILE_GAME_ID)
    base = run["base"] + f"/episodes/{game.episode_id}"
    data = get_json(base + ".json?step=3")
    assert data["step"] == 3 and len(data["steps"]) == game.length
    s2 = data["steps"][1]
    assert s2["action"] == game.steps[1].action and s2["observation"] == game.steps[1].observation
    assert s2["board"]["rows"] == game.steps[1].observation.split("\n")[1:4]
    assert s2["board"]["last_move"] is not None  # the cell the first move filled
    tree = s2["search"]
    visits = [c["visits"] for c in tree["children"]]
    assert visits == sorted(visits, reverse=True)  # most visited first
    assert abs(sum(c["share"] for c in tree["children"]) - 1) < 1e-6
    assert sum(c["chosen"] for c in tree["children"]) == 1
    _, _, html = get(base + "?step=3")
    assert html.count('class="step"') == game.length
    assert html.count(" hidden>") == game.length - 1  # one step shown, server-side
    step3 = html[html.index('id="step-3"'):]
    assert step3[:step3.index(">")].rstrip().endswith('"')  # ... and it is step 3, not hidden
    assert '<table class="board">' in html


def test_text_episode_page(run):
    text = next(e for e in run["episodes"] if e.env_id == TEXT and e.policy_version == 1
                and e.episode_id != HOSTILE_TEXT_ID)
    data = get_json(run["base"] + f"/episodes/{text.episode_id}.json")
    assert data["prompt"] == text.steps[0].observation
    assert [s["action"] for s in data["steps"]] == [s.action for s in text.steps]
    assert data["steps"][0]["tokens"]["count"] == len(text.steps[0].tokens.ids)
    verdict = dict(data["verdict"])
    assert verdict["answer"] == text.info["answer"] and verdict["correct"] == text.info["correct"]
    assert verdict["reward"] == f"{text.outcome:+g}" and "env reward" in verdict
    assert data["episode"]["group_id"] == text.group_id
    group = _listing(run["base"], group=text.group_id)
    assert group["matching"] == 4


def test_search_page(run):
    game = next(e for e in run["episodes"] if e.env_id == GAME and e.policy_version == 0)
    data = get_json(run["base"] + f"/episodes/{game.episode_id}/steps/2/search.json")
    s = game.steps[1].search
    assert data["tree"]["simulations"] == s.simulations and data["action"] == game.steps[1].action
    assert data["tree"]["visits"] == sum(s.visits)
    children = {c["action"]: c for c in data["tree"]["children"]}
    for a, v, p, q in zip(s.actions, s.visits, s.priors, s.q_values):
        assert children[a]["visits"] == v
        assert children[a]["prior"] == pytest.approx(p)
        assert children[a]["q"] == pytest.approx(q)
        assert children[a]["children"] is None  # deeper nodes: not recorded in this one
    text = next(e for e in run["episodes"] if e.env_id == TEXT)
    data = get_json(run["base"] + f"/episodes/{text.episode_id}/steps/1/search.json")
    assert data["tree"] is None
    _, _, html = get(run["base"] + f"/episodes/{text.episode_id}/steps/1/search")
    assert 'id="no-search"' in html


def _depth(node) -> int:
    return 1 + max((_depth(c) for c in node["children"] or []), default=0)


def test_search_tree_beyond_the_root(run):
    game = next(e for e in run["episodes"] if e.episode_id == SEARCHED_GAME_ID)
    for number, step in enumerate(game.steps, 1):
        nodes = step.search.nodes
        data = get_json(run["base"] + f"/episodes/{game.episode_id}/steps/{number}/search.json")
        tree = data["tree"]
        assert tree["recorded_nodes"] == len(nodes) - 1
        flat, todo = [], list(tree["children"])
        while todo:
            n = todo.pop()
            flat.append(n)
            todo += n["children"] or []
        # Every candidate of the root is there, and every recorded node once beneath it.
        depth1 = sum(p == 0 for p in nodes.parent)
        assert len(flat) == len(nodes) - 1 - depth1 + len(tree["children"])
        recorded = [n["visits"] for n in flat if n["children"] is not None and n["visits"] > 0]
        assert sorted(recorded) == sorted(nodes.visits[1:])
        for node in flat:  # a parent's recorded children never hold more visits than it has
            kids = node["children"] or []
            assert sum(k["visits"] for k in kids) <= node["visits"] - 1 or node["terminal"]
        assert _depth(tree) - 1 == tree["depth_recorded"]
    first = get_json(run["base"] + f"/episodes/{game.episode_id}/steps/1/search.json")["tree"]
    assert first["depth_recorded"] >= 2 and "most-visited nodes" in get(
        run["base"] + f"/episodes/{game.episode_id}/steps/1/search")[2]


def test_compare_games_and_prompts(run):
    base = run["base"]
    shared = get_json(base + "/compare.json?a=0&b=1")
    assert shared["a"] == 0 and shared["b"] == 1 and shared["method"].startswith("from the episodes")
    observations = [p["observation"] for p in shared["positions"]]
    start = "X to move\n...\n...\n...\n"
    assert start in observations  # every game starts there
    for a, b in run["problems"]:
        assert f"What is {a} + {b}?" in observations
    first = next(p for p in shared["positions"] if p["observation"] == start)
    assert (first["n_a"], first["n_b"]) == (6, 6)

    games = get_json(base + "/compare.json?" + urlencode({"a": 0, "b": 1, "at": start}))
    a, b = games["position"]["sides"]
    assert games["position"]["game"] and (a["decisions"], b["decisions"]) == (6, 6)
    assert sum(n for _, n in a["played"]) == 6
    assert abs(sum(c["share"] for c in a["children"]) - 1) < 1e-6

    prompt = "What is 12 + 30?"
    texts = get_json(base + "/compare.json?" + urlencode({"a": 0, "b": 1, "at": prompt}))
    a, b = texts["position"]["sides"]
    assert not texts["position"]["game"] and a["decisions"] == b["decisions"] == 4
    expected = [e for e in run["episodes"] if e.steps[0].observation == prompt
                and e.policy_version == 1]
    assert b["mean_reward"] == pytest.approx(sum(e.outcome for e in expected) / 4)
    assert {s["episode_id"] for s in b["samples"]} == {e.episode_id for e in expected}


@functools.lru_cache(maxsize=4)
def _engine(run_dir, version):
    from selfplay.learner.checkpoint import checkpoint_dir
    from selfplay.policy.config import EngineConfig, PolicyConfig
    from selfplay.policy.factory import make_engine

    return make_engine(PolicyConfig(path=str(checkpoint_dir(run_dir, version))), EngineConfig())


def test_compare_runs_both_checkpoints_live(run):
    from selfplay.policy.engine import SamplingParams

    base, start = run["base"], "X to move\n...\n...\n...\n"
    before = snapshot(run["dir"])
    page = get_json(base + "/compare.json?" + urlencode({"a": 0, "b": 1, "at": start}))
    assert page["live"] is None and "live=1" in page["live_url"]  # only on request
    live = get_json(base + "/compare.json?" + urlencode({"a": 0, "b": 1, "at": start,
                                                          "live": 1}))["live"]
    assert live["kind"] == "game" and live["error"] is None
    legal = [str(i) for i in range(1, 10)]
    for side, version in zip(live["sides"], (0, 1)):
        expected = _engine(run["dir"], version).evaluate([start], [legal])[0]
        got = {p["action"]: p["prior"] for p in side["priors"]}
        assert side["version"] == version and sorted(got) == legal
        assert [got[a] for a in legal] == pytest.approx(expected.priors.tolist())
        assert side["value"] == pytest.approx(expected.value)
    assert live["sides"][0]["priors"] != live["sides"][1]["priors"]  # two different policies

    prompt = "What is 12 + 30?"
    live = get_json(base + "/compare.json?" + urlencode({"a": 0, "b": 1, "at": prompt,
                                                          "live": 1, "tokens": 12}))["live"]
    assert live["kind"] == "text" and live["mode"] == "greedy"
    for side, version in zip(live["sides"], (0, 1)):
        # The stored episodes of this prompt have two steps each: one line is one action.
        greedy = _engine(run["dir"], version).generate(
            [prompt + "\n"], SamplingParams(temperature=0.0, max_tokens=12, stop=("\n",)))[0][0]
        assert [c["text"] for c in side["completions"]] == [greedy.text]
    sampled = get_json(base + "/compare.json?" + urlencode(
        {"a": 0, "b": 1, "at": "Any prompt of my own", "live": 1, "mode": "sampled",
         "tokens": 8}))["live"]
    assert [len(side["completions"]) for side in sampled["sides"]] == [4, 4]
    assert all(c["tokens"] <= 8 for side in sampled["sides"] for c in side["completions"])
    _, _, html = get(base + "/compare?" + urlencode({"a": 0, "b": 1, "at": start, "live": 1}))
    assert html.count('class="side live-side"') == 2 and 'id="live-error"' not in html
    assert snapshot(run["dir"]) == before  # loading and running the checkpoints wrote nothing


@pytest.mark.parametrize("params, name", [({"tokens": "1000"}, "tokens"),
                                           ({"tokens": "many"}, "tokens"),
                                           ({"mode": "beam"}, "mode")])
def test_live_compare_bad_parameters_are_named(run, params, name):
    query = {"a": 0, "b": 1, "at": "What is 12 + 30?", "live": 1, **params}
    data = get_json(run["base"] + "/compare.json?" + urlencode(query), status=400)
    assert data["param"] == name


def test_live_compare_says_what_cannot_run(run, tmp_path):
    long = get_json(run["base"] + "/compare.json?" + urlencode(
        {"a": 0, "b": 1, "at": "x" * 5000, "live": 1}))["live"]
    assert "5000 characters" in long["error"]
    tmp_path = tmp_path / "broken"
    shutil.copytree(run["dir"], tmp_path)
    for version in (0, 1):  # a run whose checkpoints lost their weights
        (tmp_path / "checkpoints" / f"version-{version:06d}" / "config.json").unlink()
    (tmp_path / "checkpoints" / "version-000001" / "config.json").write_text("{not json")
    with serve(tmp_path) as base:
        live = get_json(base + "/compare.json?" + urlencode(
            {"a": 0, "b": 1, "at": "X to move\n...\n...\n...\n", "live": 1}))["live"]
        assert live["error"].startswith("v0: checkpoints/version-000000 holds no weights")
        live = get_json(base + "/compare.json?" + urlencode(
            {"a": 1, "b": 0, "at": "What is 12 + 30?", "live": 1}))["live"]
        assert live["error"].startswith("v1: the checkpoint at checkpoints/version-000001 "
                                        "does not load (")
        _, _, html = get(base + "/compare?" + urlencode(
            {"a": 1, "b": 0, "at": "What is 12 + 30?", "live": 1}))
        assert 'id="live-error"' in html


def test_live_policies_stay_loaded(run):
    from selfplay.view.live import LivePolicies

    live = LivePolicies(run["dir"], keep=1)
    for _ in range(2):
        live.complete([0], "What is 1 + 1?", max_tokens=2)
    assert live.loads == 1  # cached
    live.complete([1, 0], "What is 1 + 1?", max_tokens=2)
    assert live.loads == 3  # keep=1: the older one was let go


def test_episode_links_compare_at_its_position(run):
    game = next(e for e in run["episodes"] if e.env_id == GAME and e.policy_version == 0)
    data = get_json(run["base"] + f"/episodes/{game.episode_id}.json")
    link = data["steps"][0]["compare_url"]
    assert link.startswith("/compare?a=0&b=1&at=")
    assert get_json(run["base"] + link.replace("/compare?", "/compare.json?"))["position"]


# ---------------------------------------------------------------------------------------------
# Untrusted text


HOSTILE_PAGES = [f"/episodes/{HOSTILE_GAME_ID}", f"/episodes/{HOSTILE_GAME_ID}?step=2",
                 f"/episodes/{HOSTILE_GAME_ID}/steps/1/search", f"/episodes/{HOSTILE_TEXT_ID}",
                 "/episodes", "/episodes?version=1&" + urlencode({"actor": f"rollout-{IMG}"}),
                 "/compare?a=1&b=1", "/compare?" + urlencode({"a": 1, "b": 0, "at": f"What is 2 + 2? {SCRIPT}"}),
                 "/"]


@pytest.mark.parametrize("path", HOSTILE_PAGES)
def test_policy_text_is_escaped(run, path):
    status, _, html = get(run["base"] + path)
    assert status == 200, html[:300]
    assert "<script>window" not in html and "<img src=x" not in html
    assert "onerror=" not in html.replace("onerror=&#34;", "").replace("onerror=&quot;", "")
    assert html.count("<script") == 1  # the viewer's own, from /static
    if "hostile" in path or HOSTILE_GAME_ID in path or HOSTILE_TEXT_ID in path:
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html


def test_hostile_episode_json_keeps_the_text(run):
    data = get_json(run["base"] + f"/episodes/{HOSTILE_GAME_ID}.json")
    assert data["steps"][0]["action"] == SCRIPT and data["steps"][1]["action"] == IMG
    assert data["steps"][0]["search"]["children"][0]["action"] == SCRIPT
    data = get_json(run["base"] + f"/episodes/{HOSTILE_TEXT_ID}.json")
    assert dict(data["verdict"])["predicted"] == SCRIPT


# ---------------------------------------------------------------------------------------------
# Read-only, and live beside a writer


def test_viewing_never_writes(tmp_path):
    build_run(tmp_path)
    before = snapshot(tmp_path)
    with serve(tmp_path) as base:
        for path in PAGES + HOSTILE_PAGES:
            status, _, _ = get(base + path)
            assert status == 200
        for path in PAGES:
            get(base + (path + ".json" if "?" not in path else path.replace("?", ".json?")))
    assert snapshot(tmp_path) == before


def test_new_shards_appear_and_temp_files_are_ignored(tmp_path):
    build_run(tmp_path)
    writer = EpisodeStore(tmp_path)  # the live run's writer (it cleans temps when it opens)
    with serve(tmp_path) as base:
        n = get_json(base + "/episodes.json")["total"]
        # A half-written append: the writer's temp file, cut short.
        (tmp_path / "episodes" / ".tmp-shard-00000099-deadbeef.parquet").write_bytes(b"PAR1\x00")
        assert get_json(base + "/episodes.json")["total"] == n
        more = template_episodes(games=3, problems=1, k=2, seed=5)
        for i, e in enumerate(more):
            e.episode_id = f"new{i:029d}"
            e.policy_version = 2
        writer.append(more)
        listing = get_json(base + "/episodes.json?version=2")
        assert listing["total"] == n + len(more) and listing["matching"] == len(more)
        assert get_json(base + f"/episodes/{more[0].episode_id}.json")["episode"]["policy_version"] == 2
        # evaluations.jsonl: a line still being written is left for the next refresh.
        with open(tmp_path / "evaluations.jsonl", "a") as f:
            f.write('{"version": 2, "a": "v2", "b": "held-out", "pass@1": 0.')
        rows = get_json(base + "/run.json")["evaluations"]
        assert all(r["version"] != 2 for r in rows)
        with open(tmp_path / "evaluations.jsonl", "a") as f:
            f.write('875, "pass@4": 1.0}\n')
        rows = get_json(base + "/run.json")["evaluations"]
        assert rows[-1]["pass@1"] == 0.875


def test_an_empty_run_directory(tmp_path):
    (tmp_path / "config.yaml").write_text("env: {}\n")  # a run that has just started
    with serve(tmp_path) as base:
        assert get_json(base + "/episodes.json")["total"] == 0
        assert get_json(base + "/run.json")["counts"]["episodes"] == 0
        status, _, html = get(base + "/episodes")
        assert status == 200 and 'id="no-episodes"' in html
        assert get(base + "/compare")[0] == 200
        EpisodeStore(tmp_path).append(template_episodes(games=2, problems=0))
        assert get_json(base + "/episodes.json")["total"] == 2
        assert 'id="one-version"' in get(base + "/compare")[2]  # v0 alone: nothing to compare
    assert not (tmp_path / "summary.json").exists()


def test_tensorboard_reader_waits_for_a_cut_record(tmp_path):
    from selfplay.metrics import MetricsWriter

    logdir = tmp_path / "tb"
    metrics = MetricsWriter(logdir)
    for step in range(5):
        metrics.scalar("loss/total", float(step), step)
    metrics.close()
    source = next(logdir.glob("events.out.tfevents.*"))
    data = source.read_bytes()
    live = tmp_path / "live"
    live.mkdir()
    target = live / source.name
    target.write_bytes(data[:-7])  # the last record is still being written
    reader = ScalarReader(live)
    assert list(reader.refresh()["loss/total"].values) == [0.0, 1.0, 2.0, 3.0]
    with open(target, "ab") as f:
        f.write(data[-7:])
    assert list(reader.refresh()["loss/total"].values) == [0.0, 1.0, 2.0, 3.0, 4.0]


# ---------------------------------------------------------------------------------------------
# The command


def test_view_command(tmp_path):
    build_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "selfplay.cli", "view", str(tmp_path),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = lines[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and str(tmp_path) in lines[0]
        status, _, html = get(url)
        assert status == 200 and "Versions" in html
        # A page elsewhere that rebinds its own name to 127.0.0.1 is refused.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url + "run.json", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_view_command_errors(tmp_path):
    from selfplay.cli import main

    assert main(["view", str(tmp_path / "missing")]) == 2
    assert main(["view", str(tmp_path)]) == 2  # an empty folder is not a run
    build_run(tmp_path)
    assert main(["view", str(tmp_path), "--port", "70000"]) == 2


def test_view_command_errors_name_the_problem(tmp_path, capsys):
    from selfplay.cli import main

    main(["view", str(tmp_path / "missing")])
    assert "no such run directory" in capsys.readouterr().err
    main(["view", str(tmp_path)])
    assert "not a run directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The parts


def test_query_reads_back_from_its_params():
    q = EpisodeQuery.from_params({"env": GAME, "version": "3", "outcome_min": "-0.5",
                                  "since": "1800000000", "sort": "length", "order": "asc",
                                  "actor": "", "group": "  "})
    assert (q.version_min, q.version_max, q.outcome_min, q.actor, q.group) == (3, 3, -0.5, None, None)
    assert EpisodeQuery.from_params(q.to_params()) == q
    assert EpisodeQuery().to_params() == {}
    with pytest.raises(QueryError, match="length_min"):
        EpisodeQuery.from_params({"length_min": "2.5"})
    with pytest.raises(QueryError, match="outcome_max"):
        EpisodeQuery.from_params({"outcome_max": "nan"})


def test_boards_from_game_text():
    board = parse_board("O to move\nX..\n.O.\n..X\n")
    assert board.above == ["O to move"] and board.rows == ["X..", ".O.", "..X"] and not board.below
    four = parse_board("x to move\n.......\n.......\n.......\n.......\n.......\nxo.....\n1234567\n")
    assert len(four.rows) == 6 and four.labels() == "1234567"
    assert four.to_json()["below"] == []
    assert parse_board("x to move\n.x.\no..\n...\n").rows[1] == "o.."  # the mover views
    assert parse_board("What is 2 + 2?\nThe answer is 4.") is None
    boards = boards_of(["X to move\n...\n...\n...\n", "O to move\n...\n.X.\n...\n",
                        "x to move\n...\n.o.\nx..\n"])  # colours swap in the mover views
    assert boards[0].marked is None and boards[1].marked == (1, 1) and boards[2].marked == (2, 0)


def test_charts():
    assert [round(t, 6) for t in nice_ticks(0, 1)] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-188, 425) == [-200.0, 0.0, 200.0, 400.0, 600.0]
    assert nice_ticks(0, 9) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    svg = str(line_chart([Line("<b>x</b>", [(0, 1), (1, 2), (2, float("nan"))])]))
    assert svg.startswith("<svg") and "<polyline" in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert "no data yet" in str(line_chart([Line("empty", [])]))


def test_index_reads_only_new_shards(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append(template_episodes(games=4, problems=1, k=2))
    index = EpisodeIndex(tmp_path, refresh_s=0)
    assert index.table().num_rows == 6
    first = index.table()
    store.append(template_episodes(games=2, problems=0, seed=1))
    assert index.table().num_rows == 8 and len(index.shard_paths()) == 2
    shutil.rmtree(tmp_path / "episodes")  # the folder replaced: a different run now
    EpisodeStore(tmp_path).append(template_episodes(games=1, problems=0, seed=2))
    assert index.table().num_rows == 1 and first.num_rows == 6
