"""Rollout modes (one registry) and the game self-play they build on."""

from selfplay.rollout.games import cached_evaluator, play_selfplay_games, temperature_at

__all__ = ["cached_evaluator", "play_selfplay_games", "temperature_at"]
