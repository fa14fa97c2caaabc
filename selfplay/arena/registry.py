"""The arena registry: how the evaluator judges versions, by the kind of env."""

from __future__ import annotations


def make_arena(kind: str, cfg, engines: dict, ladder):
    """"game": gating matches and reference players; "text": held-out pass@k and gating on
    the same prompts."""
    if kind == "game":
        from selfplay.arena.game_arena import GameArena

        return GameArena(cfg, engines, ladder)
    if kind == "text":
        from selfplay.arena.text_arena import TextArena

        return TextArena(cfg, engines, ladder)
    raise ValueError(f"unknown arena kind {kind!r}: game or text")
