"""`selfplay play env=<name> player=<opponent>`: a person plays in the terminal, moves on stdin.

For a two-player game the person takes side ``human_player`` (0 moves first) against a reference
player (``random``, ``perfect``, ``alphabeta[:depth]``, ``mcts[:simulations]``) or a checkpoint
directory. For a single-agent text task the person writes the actions and sees the rewards.
A malformed or illegal move is rejected with the legal moves shown; end of input ends the game.
"""

from __future__ import annotations

import sys
from typing import TextIO

import numpy as np

from envs.protocol import Game, legal_action_texts
from selfplay.build import build_env, game_of
from selfplay.errors import UserError

def resolve_opponent(name: str, game: Game, cfg):
    """A reference player by name, or the policy saved in a checkpoint (or run) directory;
    either has ``choose(game, state, rng) -> action``."""
    from pathlib import Path

    if str(name).startswith("rllib:"):  # an RLlib checkpoint (selfplay/adapters/rllib_player.py)
        from selfplay.adapters.rllib_player import rllib_player_from_spec

        return rllib_player_from_spec(name, game)
    if Path(name).is_dir():
        from selfplay.arena.players import policy_player_from_checkpoint

        return policy_player_from_checkpoint(
            name, game, engine_cfg=cfg.engine, search_cfg=cfg.search, env_cfg=cfg.env
        )
    from envs.games.players import make_player

    try:
        return make_player(name, game)
    except ValueError as err:
        raise UserError(f"player={name}: {err}") from None


def read_move(game: Game, state: np.ndarray, stdin: TextIO, out: TextIO) -> int | None:
    """Prompt until a legal move is typed; None at end of input."""
    legal = legal_action_texts(game, state)
    while True:
        out.write(f"your move ({', '.join(legal)}): ")
        out.flush()
        line = stdin.readline()
        if not line:
            return None
        action = game.text_to_action(line.strip())
        if action is None or action < 0 or action >= game.num_actions or not game.legal_mask(state)[action]:
            out.write(f"illegal move {line.strip()!r}; legal moves: {', '.join(legal)}\n")
            continue
        return action


def play_game(
    game: Game, opponent, human_player: int, stdin: TextIO, out: TextIO, seed: int
) -> float | None:
    """One game; returns the result for the person (+1/0/-1), or None if input ended."""
    rng = np.random.default_rng(seed)
    state = game.initial_state()
    while (outcome := game.outcome(state)) is None:
        out.write("\n" + game.render_text(state))
        if game.to_play(state) == human_player:
            action = read_move(game, state, stdin, out)
            if action is None:
                out.write("\nend of input: game abandoned\n")
                return None
        else:
            action = opponent.choose(game, state, rng)
            out.write(f"opponent plays {game.action_to_text(action)}\n")
        state = game.next_state(state, action)
    out.write("\n" + game.render_text(state))
    result = outcome.value_for(human_player)
    out.write({1.0: "you win\n", 0.0: "draw\n", -1.0: "you lose\n"}.get(result, f"result {result}\n"))
    return result


def play_text_task(env, stdin: TextIO, out: TextIO, seed: int) -> float | None:
    observation, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        out.write("\n" + observation + "\n> ")
        out.flush()
        line = stdin.readline()
        if not line:
            return None
        observation, reward, terminated, truncated, info = env.step(line.rstrip("\n"))
        total += float(reward)
        out.write(f"reward {reward}\n")
        if terminated or truncated:
            out.write(f"episode over, total reward {total}\n")
            return total


def play_main(cfg) -> int:
    env = build_env(cfg.env)
    game = game_of(env)
    if game is None:
        play_text_task(env, sys.stdin, sys.stdout, cfg.run.seed)
        return 0
    if cfg.human_player not in (0, 1):
        raise UserError(f"human_player={cfg.human_player}: must be 0 (first) or 1 (second)")
    opponent = resolve_opponent(cfg.player, game, cfg)
    play_game(game, opponent, cfg.human_player, sys.stdin, sys.stdout, cfg.run.seed)
    return 0
