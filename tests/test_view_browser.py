"""`selfplay view` in a real headless Chromium (Playwright driving Debian's chromium): click
through the pages, filter episodes, step through a game and a text episode with the keyboard
and the buttons, fold the search tree, see the plots, and find a policy's markup shown as text.

Skipped, with one line saying so, where no Chromium is installed (``apt-get install chromium``;
``SELFPLAY_CHROMIUM`` names another binary).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlencode

import pytest
from test_view_support import (
    HOSTILE_GAME_ID,
    HOSTILE_TEXT_ID,
    IMG,
    SCRIPT,
    SEARCHED_GAME_ID,
    build_run,
    serve,
)

CHROMIUM = os.environ.get("SELFPLAY_CHROMIUM") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium"))
pytestmark = pytest.mark.skipif(
    not CHROMIUM or not Path(CHROMIUM).exists(),
    reason="no Chromium (apt-get install chromium, or set SELFPLAY_CHROMIUM): "
           "browser tests of selfplay view skipped")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage", "--disable-extensions"]
GAME = "selfplay/TicTacToe-v0"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("view-browser-run")
    info = build_run(run_dir)
    with serve(run_dir) as base:
        yield {"base": base, **info}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    yield page
    page.close()


def test_run_page_shows_plots_and_versions(site, page):
    page.goto(site["base"] + "/")
    assert page.locator("#count-episodes").inner_text() == str(len(site["episodes"]))
    assert page.locator("#versions tbody tr").count() == 2
    assert "accepted" in page.locator("#versions tbody tr").nth(1).inner_text()
    charts = page.locator("#charts svg.chart")
    assert charts.count() >= 4
    assert page.locator("#charts svg.chart polyline").count() >= 5
    box = charts.first.bounding_box()
    assert box["width"] > 300 and box["height"] > 150  # drawn, and drawn at its size
    assert page.locator("#charts figcaption").all_inner_texts()[:2] == [
        "Elo by version", "Held-out pass@k by version"]
    page.locator("#config summary").click()
    assert SCRIPT in page.locator("#config pre").inner_text()  # the config's text, as text
    assert not page.errors


def test_filter_then_open_an_episode(site, page):
    page.goto(site["base"] + "/")
    page.locator("header nav a", has_text="episodes").click()
    page.wait_for_url("**/episodes")
    total = int(page.locator("#matching").inner_text())
    assert total == len(site["episodes"])
    page.select_option("select[name=env]", GAME)
    page.fill("input[name=version_min]", "1")
    page.fill("input[name=version_max]", "1")
    page.locator("#apply").click()
    page.wait_for_url("**/episodes?*")
    expected = [e for e in site["episodes"] if e.env_id == GAME and e.policy_version == 1]
    assert int(page.locator("#matching").inner_text()) == len(expected)
    rows = page.locator("#episodes tbody tr")
    assert rows.count() == len(expected)
    assert all(GAME in t and "v1" in t for t in rows.all_inner_texts())
    # The filters survive into the episode page, whose neighbours are those of the listing.
    rows.first.locator("a.episode-link").click()
    page.wait_for_url("**/episodes/*")
    assert page.locator("#listing-nav").inner_text().count(f"of {len(expected)}") == 1
    page.keyboard.press("]")
    page.wait_for_url("**/episodes/*")
    assert "2 of" in page.locator("#listing-nav").inner_text()
    assert not page.errors


def _visible_steps(page) -> list[str]:
    return page.eval_on_selector_all(
        "#steps [data-step]", "els => els.filter(e => !e.hidden).map(e => e.dataset.step)")


def test_step_through_a_game_with_keys_and_buttons(site, page):
    game = next(e for e in site["episodes"] if e.env_id == GAME and e.length >= 5
                and e.episode_id != HOSTILE_GAME_ID)
    page.goto(site["base"] + f"/episodes/{game.episode_id}")
    assert _visible_steps(page) == ["1"]
    assert page.locator("#step-1 table.board td.cell").count() == 9
    page.keyboard.press("ArrowRight")
    assert page.locator("#step-number").inner_text() == "2" and _visible_steps(page) == ["2"]
    assert page.url.endswith("step=2")  # the URL follows, so a reload stays on the step
    assert page.locator("#step-2 td.cell.last").count() == 1  # the first move, marked
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert _visible_steps(page) == ["2"]
    page.keyboard.press("End")
    assert _visible_steps(page) == [str(game.length)]
    page.keyboard.press("ArrowRight")  # past the end stays at the end
    assert page.locator("#step-number").inner_text() == str(game.length)
    page.keyboard.press("Home")
    assert _visible_steps(page) == ["1"]
    page.locator("#step-next").click()
    page.locator("#step-next").click()
    assert _visible_steps(page) == ["3"]
    page.locator("#step-prev").click()
    assert _visible_steps(page) == ["2"]
    shown = page.locator("#step-2 h2").inner_text()
    assert f"plays {game.steps[1].action}" in shown
    page.reload()
    assert _visible_steps(page) == ["2"]
    assert not page.errors


def test_step_through_a_text_episode(site, page):
    text = next(e for e in site["episodes"] if e.env_id != GAME and e.episode_id != HOSTILE_TEXT_ID)
    page.goto(site["base"] + f"/episodes/{text.episode_id}")
    assert page.locator("#prompt").inner_text() == text.steps[0].observation
    assert _visible_steps(page) == ["1"]
    page.keyboard.press("ArrowRight")
    assert _visible_steps(page) == ["1", "2"]  # a text episode's steps accumulate
    assert page.locator("#steps li.current").get_attribute("data-step") == "2"
    assert page.locator("#step-2 pre.action").inner_text() == text.steps[1].action
    verdict = page.locator("#verdict").inner_text()
    assert f"answer\t{text.info['answer']}" in verdict and "reward" in verdict
    page.keyboard.press("ArrowLeft")
    assert _visible_steps(page) == ["1"]
    assert not page.errors


def test_search_tree_folds_and_links(site, page):
    game = next(e for e in site["episodes"] if e.env_id == GAME and e.policy_version == 0)
    page.goto(site["base"] + f"/episodes/{game.episode_id}")
    page.locator("#step-1 a.search-link").click()
    page.wait_for_url("**/steps/1/search")
    search = game.steps[0].search
    children = page.locator("#tree li.node[data-depth='1']")
    assert children.count() == len(search.actions)
    assert children.first.is_visible()
    page.locator("#tree li.node[data-depth='0'] > details > summary").click()  # fold the root
    assert not children.first.is_visible()
    page.locator("#tree li.node[data-depth='0'] > details > summary").click()  # unfold it
    assert children.first.is_visible()
    chosen = page.locator("#tree li.node.chosen")
    assert chosen.count() == 1 and game.steps[0].action in chosen.inner_text()
    page.locator("#search-next").click()
    page.wait_for_url("**/steps/2/search")
    assert page.locator("#played").inner_text() == game.steps[1].action
    assert not page.errors


def _depth_of(nodes, i: int) -> int:
    depth = 0
    while nodes.parent[i] >= 0:
        i, depth = nodes.parent[i], depth + 1
    return depth


def test_search_tree_expands_two_levels_deep(site, page):
    game = next(e for e in site["episodes"] if e.episode_id == SEARCHED_GAME_ID)
    # A decision of the real search whose recorded tree reaches three plies below the root.
    number, step = next((n, s) for n, s in enumerate(game.steps, 1)
                        if any(_depth_of(s.search.nodes, i) >= 3 for i in range(len(s.search.nodes))))
    page.goto(site["base"] + f"/episodes/{game.episode_id}/steps/{number}/search")
    tree = page.locator("#tree")
    level = {d: tree.locator(f"li.node[data-depth='{d}']") for d in (1, 2, 3)}
    assert level[1].first.is_visible()
    assert level[2].count() > 0 and not level[2].first.is_visible()  # folded under the root's
    # Expand the move whose replies have replies, then that reply.
    nodes = step.search.nodes
    deep = next(i for i in range(len(nodes)) if _depth_of(nodes, i) == 3)
    reply, move = nodes.parent[deep], nodes.parent[nodes.parent[deep]]
    first = tree.locator("li.node[data-depth='1']").filter(
        has=page.locator(f"span.stats[data-depth='1'] .action:text-is('{nodes.action[move]}')"))
    first.locator("> details > summary").click()
    replies = first.locator("li.node[data-depth='2']")
    assert replies.first.is_visible()
    assert replies.count() == sum(1 for p in nodes.parent if p == move)
    second = replies.filter(
        has=page.locator(f"span.stats[data-depth='2'] .action:text-is('{nodes.action[reply]}')"))
    second.locator("> details > summary").click()
    third = second.locator("li.node[data-depth='3']")
    assert third.first.is_visible()
    assert third.count() == sum(1 for p in nodes.parent if p == reply)
    shown = third.locator(".visits").all_inner_texts()
    expected = sorted((nodes.visits[i] for i, p in enumerate(nodes.parent) if p == reply),
                      reverse=True)
    assert [float(v) for v in shown] == expected  # most visited first, as recorded
    assert "most-visited nodes" in page.locator("#depth-note").inner_text()
    assert not page.errors


def test_compare_live_in_the_browser(site, page):
    page.set_default_timeout(60_000)  # two checkpoints run on a CPU that may be busy
    start = "X to move\n...\n...\n...\n"
    page.goto(site["base"] + "/compare?" + urlencode({"a": 0, "b": 1, "at": start}))
    page.locator("#run-live").click()
    page.wait_for_url("**live=1*")
    sides = page.locator("#live-sides section.live-side")
    assert sides.count() == 2
    for k, version in enumerate((0, 1)):
        assert sides.nth(k).locator("h3").inner_text().startswith(f"v{version}")
        assert sides.nth(k).locator("table.live-priors tbody tr").count() == 9
    # A prompt of one's own, through the form on the compare page, greedy then sampled.
    page.goto(site["base"] + "/compare?a=0&b=1")
    page.fill("#own-prompt textarea[name=at]", "What is 3 + 4?")
    page.fill("#own-prompt input[name=tokens]", "8")
    page.locator("#own-prompt-run").click()
    page.wait_for_url("**live=1*")
    assert page.locator("#position-text").inner_text() == "What is 3 + 4?"
    assert page.locator("#live-sides pre.completion").count() == 2
    page.locator("#live-sampled").click()
    page.wait_for_url("**mode=sampled*")
    assert page.locator("#live-sides section.live-side").nth(0).locator(
        "pre.completion").count() == 4
    assert not page.errors


def test_compare_two_versions(site, page):
    page.goto(site["base"] + "/compare")
    page.select_option("select[name=a]", "0")
    page.select_option("select[name=b]", "1")
    page.locator("#compare-apply").click()
    page.wait_for_url("**/compare?*")
    assert int(page.locator("#shared-count").inner_text()) >= 3
    page.locator("a.position-link").first.click()  # the start position, met most often
    page.wait_for_url("**/compare?*at=*")
    sides = page.locator("#side-by-side section.side")
    assert sides.count() == 2
    assert "v0" in sides.nth(0).inner_text() and "v1" in sides.nth(1).inner_text()
    assert "6 decisions here" in sides.nth(0).inner_text()
    assert not page.errors


HOSTILE = [f"/episodes/{HOSTILE_GAME_ID}", f"/episodes/{HOSTILE_GAME_ID}?step=2",
           f"/episodes/{HOSTILE_GAME_ID}/steps/1/search", f"/episodes/{HOSTILE_TEXT_ID}?step=2",
           "/episodes?version=1",
           "/compare?" + urlencode({"a": 1, "b": 0, "at": f"What is 2 + 2? {SCRIPT}"})]


@pytest.mark.parametrize("path", HOSTILE)
def test_policy_markup_is_shown_as_text(site, page, path):
    page.goto(site["base"] + path)
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main script").count() == 0
    assert page.locator("main img").count() == 0
    body = page.locator("main").inner_text()
    assert SCRIPT in body or IMG in body  # the text itself, visible as typed
    assert not page.errors
