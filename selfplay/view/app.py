"""The viewer's web app (Starlette): server-rendered pages, each with a JSON twin.

Every page handler returns plain data (a dict); the HTML page renders it through a Jinja2
template with autoescaping on, and the JSON twin (the same path with ``.json``) returns the same
data. What a policy wrote (observations, actions, info, even ids and actor names) reaches the
browser only as escaped text; the content security policy allows no inline script or style on
top of that, so a slip in a template still could not run one.

Handlers are plain functions: Starlette runs them in its thread pool, and the readers they
share (``EpisodeIndex``, ``RunFiles``) lock what they cache.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import pyarrow.compute as pc
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from selfplay.replay.cli import is_text, other_info, token_summary, verdict_rows
from selfplay.types import Episode, Step
from selfplay.view.boards import boards_of, parse_board
from selfplay.view.episodes import (
    MAX_PAGE_SIZE,
    EpisodeIndex,
    EpisodeNotFound,
    EpisodeQuery,
    QueryError,
    decisions_summary,
)
from selfplay.view.live import (
    DEFAULT_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SAMPLES,
    MAX_TOKENS,
    LiveError,
    LivePolicies,
)
from selfplay.view.runs import RunFiles

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
COMPARE_PAGE_SIZE = 20
TEXT_SAMPLES = 6  # samples shown per version on a prompt (all of them are counted)
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # every page is live: a refresh shows what the run wrote since
}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Formatting helpers shared by the templates


def url(path: str, params: dict[str, Any] | None = None, **more: Any) -> str:
    """``path`` with a query string of the non-empty parameters."""
    merged = {**(params or {}), **more}
    query = {k: v for k, v in merged.items() if v is not None and v != ""}
    return path + ("?" + urlencode(query) if query else "")


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def fmt_num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def fmt_signed(value: float | None) -> str:
    return "" if value is None else f"{value:+g}"


def fmt_signed3(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value + 0.0:+.3f}".replace("-0.000", "+0.000")


def episode_path(episode_id: str) -> str:
    from urllib.parse import quote

    return "/episodes/" + quote(episode_id, safe="")


def _jsonable(value: Any) -> Any:
    """``value`` without the pieces that only the HTML page uses (rendered SVG)."""
    if isinstance(value, Markup):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not isinstance(v, Markup)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(url=url, episode_path=episode_path)
    env.filters.update(time=fmt_time, num=fmt_num, signed=fmt_signed, signed3=fmt_signed3)
    return env


# ---------------------------------------------------------------------------------------------
# View models: an episode, a decision's search


def search_tree(step: Step) -> dict[str, Any] | None:
    """The search behind a decision as a tree: the root, its children (every candidate, from the
    search statistics) and, where the store recorded them (``search.record_nodes``), their
    most-visited descendants. A node's ``children`` is None where the store kept nothing below
    it (an older run, or a node past the budget) and [] where it has none; ``more`` says some of
    a recorded node's visits went below the budget. Q and value are from the view of the player
    who chose the node."""
    s = step.search
    if s is None:
        return None
    total = float(sum(s.visits))
    nodes = s.nodes
    kids: dict[int, list[int]] = defaultdict(list)
    if nodes is not None:
        for i, p in enumerate(nodes.parent):
            if p >= 0:
                kids[p].append(i)
    depth_recorded = 1

    def recorded(i: int, parent_visits: float, depth: int) -> dict[str, Any]:
        nonlocal depth_recorded
        depth_recorded = max(depth_recorded, depth)
        children = [recorded(c, nodes.visits[i], depth + 1) for c in kids[i]]
        below = sum(c["visits"] for c in children)
        return {"action": nodes.action[i], "visits": float(nodes.visits[i]),
                "share": nodes.visits[i] / parent_visits if parent_visits > 0 else None,
                "prior": float(nodes.prior[i]), "q": float(nodes.q[i]),
                "value": float(nodes.value[i]), "terminal": bool(nodes.terminal[i]),
                "chosen": False, "children": children,
                "more": not nodes.terminal[i] and nodes.visits[i] - 1 - below > 0}

    at_root = {nodes.action[c]: c for c in kids[0]} if nodes is not None else {}
    children = []
    for a, v, p, q in zip(s.actions, s.visits, s.priors, s.q_values):
        child = {"action": a, "visits": float(v), "share": (v / total) if total > 0 else None,
                 "prior": float(p), "q": float(q), "value": None, "terminal": False,
                 "chosen": a == step.action, "children": None, "more": False}
        if a in at_root:
            full = recorded(at_root[a], total, 1)
            child.update(value=full["value"], terminal=full["terminal"],
                         children=full["children"], more=full["more"])
        elif nodes is not None and v == 0:
            child["children"] = []  # never visited: nothing below it to record
        children.append(child)
    children.sort(key=lambda c: (-c["visits"], -c["prior"]))
    return {"action": None, "player": step.player, "visits": total, "share": 1.0, "prior": None,
            "q": None, "value": s.root_value, "simulations": s.simulations, "chosen": False,
            "terminal": False, "children": children, "more": False,
            "recorded_nodes": len(nodes) - 1 if nodes is not None else 0,
            "depth_recorded": depth_recorded}


def episode_header(e: Episode) -> dict[str, Any]:
    return {"episode_id": e.episode_id, "env_id": e.env_id, "seed": e.seed,
            "policy_version": e.policy_version, "outcome": e.outcome,
            "started_at": e.started_at, "finished_at": e.finished_at,
            "duration_s": e.duration_s, "actor": e.actor, "group_id": e.group_id,
            "num_steps": e.length, "kind": "text" if is_text(e) else "game", "info": e.info}


def episode_steps(e: Episode) -> list[dict[str, Any]]:
    boards = boards_of([s.observation for s in e.steps]) if not is_text(e) else [None] * e.length
    out = []
    for i, (step, board) in enumerate(zip(e.steps, boards)):
        out.append({
            "number": i + 1, "step_index": i, "player": step.player, "action": step.action,
            "reward": step.reward, "observation": step.observation,
            "board": board.to_json() if board else None,
            "legal_actions": step.legal_actions,
            "search": search_tree(step),
            "tokens": None if step.tokens is None else {
                "count": len(step.tokens.ids), "version": step.tokens.version,
                "summary": token_summary(step)},
        })
    return out


# ---------------------------------------------------------------------------------------------
# The app


class Viewer:
    """The pages of one run directory."""

    def __init__(self, run_dir: str | Path, *, refresh_s: float = 1.0):
        self.run_dir = Path(run_dir).resolve()
        self.index = EpisodeIndex(self.run_dir, refresh_s=refresh_s)
        self.files = RunFiles(self.run_dir)
        self.live = LivePolicies(self.run_dir)
        self.templates = _templates()

    # -- pages (each returns the data of the page and of its JSON twin) -------------------------

    def run_page(self, request: Request) -> tuple[str, dict]:
        table = self.index.table()
        envs = self.index.envs()
        versions = self.index.versions()
        summary = self.files.summary()
        data = {
            "run_dir": str(self.run_dir),
            "status": self.files.status(),
            "counts": {"episodes": table.num_rows,
                       "steps": int(pc.sum(table["num_steps"]).as_py() or 0),
                       "shards": len(self.index.shard_paths())},
            "envs": envs,
            "episode_versions": versions,
            "versions": self.files.versions(),
            "incumbent": self.files.incumbent(),
            "ladder": self.files.ladder_rows(),
            "ladder_error": self.files.ladder().get("error"),
            "charts": self.files.charts(),
            "evaluations": self.files.evaluations()[-20:],
            "summary": summary,
            "config": self.files.config_text(),
        }
        return "run.html", data

    def _page_number(self, request: Request, default_size: int = PAGE_SIZE) -> tuple[int, int]:
        try:
            page = int(request.query_params.get("page") or 1)
            size = int(request.query_params.get("size") or default_size)
        except ValueError:
            raise QueryError("page", "page and size are whole numbers") from None
        if page < 1:
            raise QueryError("page", "must be 1 or more")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise QueryError("size", f"expected 1 .. {MAX_PAGE_SIZE}")
        return page, size

    def episodes_page(self, request: Request) -> tuple[str, dict]:
        query = EpisodeQuery.from_params(request.query_params)
        page, size = self._page_number(request)
        result = self.index.page(query, offset=(page - 1) * size, limit=size)
        params = query.to_params()
        if size != PAGE_SIZE:
            params["size"] = str(size)
        pages = max(1, math.ceil(result.matching / size))
        links = {
            "first": url("/episodes", params) if page > 1 else None,
            "previous": url("/episodes", params, page=page - 1) if page > 1 else None,
            "next": url("/episodes", params, page=page + 1) if page < pages else None,
            "last": url("/episodes", params, page=pages) if page < pages else None,
        }
        for row in result.rows:
            row["url"] = url(episode_path(row["episode_id"]), params)
        data = {
            "query": params,
            # The time fields as typed (the query holds them as unix seconds).
            "typed": {k: (request.query_params.get(k) or "") for k in ("since", "until")},
            "filters": {k: getattr(query, k) for k in
                        ("env", "version_min", "version_max", "outcome_min", "outcome_max",
                         "length_min", "length_max", "actor", "group", "since", "until",
                         "sort", "order")},
            "total": result.total, "matching": result.matching,
            "page": page, "pages": pages, "size": size,
            "rows": result.rows,
            "facets": {name: [{"value": v, "count": n,
                               "url": url("/episodes", _facet_params(query, name, v))}
                              for v, n in pairs]
                       for name, pairs in result.facets.items()},
            "links": links,
            "text": any(r["kind"] == "text" for r in result.rows),
        }
        return "episodes.html", data

    def _episode(self, key: str) -> Episode:
        try:
            return self.index.episode(key)
        except EpisodeNotFound as err:
            raise HttpError(404, str(err)) from None

    def episode_page(self, request: Request) -> tuple[str, dict]:
        e = self._episode(request.path_params["episode_id"])
        query = EpisodeQuery.from_params(request.query_params)
        params = query.to_params()
        try:
            step = int(request.query_params.get("step") or 1)
        except ValueError:
            raise QueryError("step", "a whole number") from None
        step = min(max(step, 1), e.length)
        around = self.index.neighbours(query, e.episode_id)
        for key in ("previous", "next"):
            around[f"{key}_url"] = (url(episode_path(around[key]), params) if around[key]
                                    else None)
        steps = episode_steps(e)
        base = episode_path(e.episode_id)
        other = self._other_version(e.policy_version)
        for s in steps:
            s["url"] = url(base, params, step=s["number"])
            if s["search"] is not None:
                s["search_url"] = url(f"{base}/steps/{s['number']}/search")
            # A game's every position can be compared; a text episode's prompt (its first
            # observation) is what other samples share.
            s["compare_url"] = (url("/compare", a=e.policy_version, b=other, at=s["observation"])
                                if s["number"] == 1 or not is_text(e) else None)
        data = {
            "episode": episode_header(e),
            "steps": steps,
            "step": step,
            "prompt": e.steps[0].observation if is_text(e) else None,
            "verdict": [list(r) for r in verdict_rows(e)] if is_text(e) else [],
            "other_info": other_info(e) if is_text(e) else e.info,
            "listing": around,
            "listing_url": url("/episodes", params),
            "group_url": url("/episodes", group=e.group_id) if e.group_id else None,
        }
        return "episode.html", data

    def _other_version(self, version: int) -> int | None:
        others = [v for v in self.index.versions() if v != version]
        return max(others) if others else None

    def search_page(self, request: Request) -> tuple[str, dict]:
        e = self._episode(request.path_params["episode_id"])
        number = request.path_params["number"]
        if not 1 <= number <= e.length:
            raise HttpError(404, f"episode {e.episode_id} has steps 1 .. {e.length}, not {number}")
        step = e.steps[number - 1]
        tree = search_tree(step)
        board = None
        if not is_text(e):
            boards = boards_of([s.observation for s in e.steps[:number]])
            board = boards[-1].to_json() if boards[-1] else None
        data = {
            "episode": episode_header(e),
            "number": number,
            "step_index": number - 1,
            "player": step.player,
            "action": step.action,
            "observation": step.observation,
            "board": board,
            "legal_actions": step.legal_actions,
            "tree": tree,
            "depth_note": _depth_note(tree),
            "episode_url": url(episode_path(e.episode_id), step=number),
            "previous_url": (url(f"{episode_path(e.episode_id)}/steps/{number - 1}/search")
                             if number > 1 else None),
            "next_url": (url(f"{episode_path(e.episode_id)}/steps/{number + 1}/search")
                         if number < e.length else None),
        }
        return "search.html", data

    def compare_page(self, request: Request) -> tuple[str, dict]:
        versions = self.index.versions()
        qp = request.query_params

        def version(name: str, default: int | None) -> int | None:
            text = (qp.get(name) or "").strip()
            if not text:
                return default
            try:
                return int(text)
            except ValueError:
                raise QueryError(name, f"{text!r} is not a version number") from None

        a = version("a", versions[0] if versions else None)
        b = version("b", versions[-1] if versions else None)
        env = (qp.get("env") or "").strip() or None
        at = qp.get("at")
        page, size = self._page_number(request, COMPARE_PAGE_SIZE)
        # Any checkpoint can be run live, also one that has played no stored episode yet.
        checkpoints = [int(m["version"]) for m in self.files.checkpoints()
                       if isinstance(m["version"], int)]
        choices = sorted(set(versions) | set(checkpoints) | {v for v in (a, b) if v is not None})
        data: dict[str, Any] = {"versions": versions, "choices": choices, "a": a, "b": b,
                                "env": env, "at": at,
                                "envs": self.index.envs(), "method": (
                                    "from the episodes: the decisions each version made at "
                                    "positions (games) or on prompts (text) that both met; "
                                    "'run both checkpoints' evaluates them live on one"),
                                "positions": [], "matching": 0, "page": page, "pages": 1,
                                "links": {}, "position": None, "live": None, "live_url": None,
                                "max_prompt": MAX_PROMPT_CHARS, "max_tokens": MAX_TOKENS,
                                "default_tokens": DEFAULT_TOKENS}
        if a is None or b is None or (len(versions) < 2 and at is None):
            return "compare.html", data  # nothing to compare (yet)
        if at is None:
            shared = self.index.shared_positions(a, b, env)
            data["matching"] = shared.num_rows
            data["pages"] = max(1, math.ceil(shared.num_rows / size))
            for row in shared.slice((page - 1) * size, size).to_pylist():
                board = parse_board(row["observation"]) if row["game"] else None
                row["board"] = board.to_json() if board else None
                row["url"] = url("/compare", a=a, b=b, env=env, at=row["observation"])
                data["positions"].append(row)
            base = {"a": a, "b": b, "env": env,
                    "size": size if size != COMPARE_PAGE_SIZE else None}
            data["links"] = {
                "previous": url("/compare", base, page=page - 1) if page > 1 else None,
                "next": url("/compare", base, page=page + 1) if page < data["pages"] else None,
            }
            return "compare.html", data
        rows = self.index.at_position(sorted({a, b}), at)
        game = rows.num_rows > 0 and rows["legal_actions"].null_count < rows.num_rows
        board = parse_board(at) if game or rows.num_rows == 0 else None
        sides = []
        for v in (a, b):
            mine = rows.filter(pc.equal(rows["policy_version"], v))
            side: dict[str, Any] = {"version": v}
            if game:
                side.update(decisions_summary(mine))
                for ep in side["episodes"]:
                    ep["url"] = url(episode_path(ep["episode_id"]), step=ep["step_index"] + 1)
            else:
                first = mine.filter(pc.equal(mine["step_index"], 0))
                ids = first["episode_id"].to_pylist()[:TEXT_SAMPLES]
                eps = self.index.episodes(ids)
                outcomes = first["outcome"].to_pylist()
                answers = Counter(str(_info(i).get("predicted", "")) for i in first["info"].to_pylist())
                side.update({
                    "decisions": len(outcomes),
                    "mean_reward": (sum(outcomes) / len(outcomes)) if outcomes else None,
                    "answers": sorted(answers.items(), key=lambda p: (-p[1], p[0]))[:12],
                    "samples": [{"episode_id": ep.episode_id, "url": url(episode_path(ep.episode_id)),
                                 "outcome": ep.outcome,
                                 "steps": [s.action for s in ep.steps],
                                 "verdict": [list(r) for r in verdict_rows(ep)]}
                                for ep in eps]})
            sides.append(side)
        data["position"] = {"observation": at, "game": game,
                            "board": board.to_json() if board else None, "sides": sides}
        if (qp.get("live") or "").strip() in ("", "0"):
            data["live_url"] = url("/compare", a=a, b=b, env=env, at=at, live=1)
        else:
            data["live"] = self._live(a, b, at, rows, game, qp)
        return "compare.html", data

    def _live(self, a: int, b: int, at: str, rows, game: bool, qp) -> dict[str, Any]:
        """Both checkpoints run on ``at`` now: priors and value (games), or a completion each
        (text: greedy, or sampled with one seed for both)."""
        mode = (qp.get("mode") or "greedy").strip()
        if mode not in ("greedy", "sampled"):
            raise QueryError("mode", f"{mode!r}; expected greedy or sampled")
        text = (qp.get("tokens") or "").strip()
        try:
            tokens = int(text) if text else DEFAULT_TOKENS
        except ValueError:
            raise QueryError("tokens", f"{text!r} is not a whole number") from None
        if not 1 <= tokens <= MAX_TOKENS:
            raise QueryError("tokens", f"{tokens}; expected 1 .. {MAX_TOKENS}")
        out: dict[str, Any] = {"kind": "game" if game else "text", "mode": mode,
                               "tokens": tokens, "sides": [], "error": None,
                               "engine": "the embedded torch engine, on this machine's CPU"}
        try:
            if game:
                legal = next(x for x in rows["legal_actions"].to_pylist() if x is not None)
                out["sides"] = self.live.evaluate([a, b], at, legal)
            elif rows.num_rows == 0 and self._only_games():
                raise LiveError("no stored decision at this position, so its legal moves are "
                                "unknown: choose a position from the list")
            else:
                # A multi-step task's action is one line: stop there, as its rollouts do.
                steps = rows["num_steps"].to_pylist()
                stop = ("\n",) if steps and max(steps) > 1 else ()
                out["sides"] = self.live.complete([a, b], at, sampled=mode == "sampled",
                                                  max_tokens=tokens, samples=MAX_SAMPLES,
                                                  stop=stop)
        except LiveError as err:
            out["error"] = str(err)
        return out

    def _only_games(self) -> bool:
        table = self.index.table()
        return table.num_rows > 0 and bool(pc.all(table["game"]).as_py())

    # -- plumbing -----------------------------------------------------------------------------

    def render(self, handler: Callable[[Request], tuple[str, dict]], as_json: bool):
        def endpoint(request: Request) -> Response:
            try:
                template, data = handler(request)
                status = 200
            except QueryError as err:
                template, data, status = "error.html", {"error": str(err), "param": err.param}, 400
            except HttpError as err:
                template, data, status = "error.html", {"error": str(err), "param": None}, err.status
            path = request.url.path
            twin = ("/run.json" if path == "/" else path + ".json")
            if request.url.query:
                twin += "?" + request.url.query
            if as_json:
                body = json.dumps(_jsonable(data), ensure_ascii=False, allow_nan=False)
                return Response(body, status_code=status, media_type="application/json",
                                headers=SECURITY_HEADERS)
            page = self.templates.get_template(template).render(
                **data, json_url=twin, page_path=path, run_name=self.run_dir.name)
            return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)

        return endpoint

    def app(self, allowed_hosts: list[str] | None = None) -> Starlette:
        """The ASGI app. ``allowed_hosts``: the Host names a request may carry (a check against
        DNS rebinding, for a viewer bound to this machine); None accepts any."""
        pages = [("/", "/run.json", self.run_page),
                 ("/episodes", "/episodes.json", self.episodes_page),
                 ("/episodes/{episode_id}/steps/{number:int}/search",
                  "/episodes/{episode_id}/steps/{number:int}/search.json", self.search_page),
                 ("/episodes/{episode_id}", "/episodes/{episode_id}.json", self.episode_page),
                 ("/compare", "/compare.json", self.compare_page)]
        routes: list = []
        for html_path, json_path, handler in pages:
            # The twin first: "/episodes/{id}" would otherwise take "abc.json" as an id.
            routes.append(Route(json_path, self.render(handler, True), methods=["GET"]))
            routes.append(Route(html_path, self.render(handler, False), methods=["GET"]))
        routes.append(Route("/run", lambda request: RedirectResponse("/"), methods=["GET"]))
        routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
        middleware = []
        if allowed_hosts is not None:
            middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
        return Starlette(routes=routes, middleware=middleware)


def _depth_note(tree: dict[str, Any] | None) -> str:
    if tree is None:
        return ""
    if tree["recorded_nodes"] == 0:
        return ("The store kept the root's children of this decision only (search.record_nodes: "
                "0, or a run from before it).")
    return (f"The store kept the {tree['recorded_nodes']} most-visited nodes below the root "
            f"({tree['depth_recorded']} levels): click a move to expand it; … marks a node with "
            "visits below the budget.")


def _info(text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _facet_params(query: EpisodeQuery, name: str, value: Any) -> dict[str, str]:
    if name == "version":
        q = query.without("version_min", "version_max")
        params = q.to_params()
        params["version"] = str(value)
        return params
    params = query.without(name).to_params()
    params[name] = str(value)
    return params


def make_app(run_dir: str | Path, *, refresh_s: float = 1.0,
             allowed_hosts: list[str] | None = None) -> Starlette:
    """The viewer of ``run_dir`` as an ASGI app (read-only)."""
    return Viewer(run_dir, refresh_s=refresh_s).app(allowed_hosts)
