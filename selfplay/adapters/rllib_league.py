"""The league of RLlib self-play: who main plays in each episode, and when main is frozen.

After RLlib's ``examples/multi_agent/self_play_with_open_spiel.py`` and its ``SelfPlayCallback``:
the module "main" is trained; in every episode it meets one frozen member of the league, taking
each side in half the episodes. Whenever main's mean score over its last 100 episodes (win 1,
draw 1/2, loss 0) exceeds the threshold, a copy of main joins the league as ``main_v<n>``; past
``pool_size`` members the oldest leaves. The league starts with ``main_v0``, an untrained network
(with the legal-action mask it plays legal moves almost uniformly: the role of the example's
random module, which would play illegal moves here).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

from selfplay.adapters.rllib_env import AGENTS

MAIN = "main"  # the trained module; every other module is a frozen league member
FIRST_OPPONENT = "main_v0"


@dataclass(frozen=True)
class LeagueMapping:
    """Agent -> module for one episode: main on one side, a league member on the other.

    A pure function of the episode id (crc32, not ``hash``, so it is the same in every process):
    main takes each side in half the episodes, its opponent is drawn uniformly from the league.
    A frozen dataclass, so RLlib can ship it to remote EnvRunners.
    """

    opponents: tuple[str, ...]

    def __call__(self, agent_id: str, episode: Any, **kwargs: Any) -> str:
        key = zlib.crc32(str(episode.id_).encode())
        if AGENTS.index(agent_id) == key % 2:
            return MAIN
        return self.opponents[(key // 2) % len(self.opponents)]


class LeagueCallback(RLlibCallback):
    """Scores main in each episode; freezes a snapshot of it when it beats the league."""

    def __init__(self, win_rate_threshold: float, pool_size: int):
        super().__init__()
        self.win_rate_threshold = win_rate_threshold
        self.pool_size = pool_size
        self.pool: list[str] = [FIRST_OPPONENT]
        self.snapshots = 0  # main_v<n> names issued so far (v0 is the untrained start)

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        agents = [a for a in episode.agent_ids if episode.module_for(a) == MAIN]
        rewards = episode.get_rewards()
        if not agents or not rewards.get(agents[0]) or metrics_logger is None:
            return
        score = (float(rewards[agents[0]][-1]) + 1.0) / 2.0  # win 1, draw 1/2, loss 0
        metrics_logger.log_value("league_main_score", score, reduce="mean", window=100)

    def on_train_result(self, *, algorithm, result: dict, **kwargs) -> None:
        score = result.get(ENV_RUNNER_RESULTS, {}).get("league_main_score")
        if score is not None and score > self.win_rate_threshold:
            self.snapshot(algorithm)
        result["league_size"] = len(self.pool)
        result["league_newest"] = self.pool[-1]

    def snapshot(self, algorithm) -> None:
        self.snapshots += 1
        new_id = f"main_v{self.snapshots}"
        pool = [*self.pool, new_id]
        dropped, self.pool = pool[:-self.pool_size], pool[-self.pool_size:]
        mapping = LeagueMapping(tuple(self.pool))
        learner_main = algorithm.learner_group.get_state(
            components=f"learner/rl_module/{MAIN}")["learner"]["rl_module"][MAIN]
        algorithm.add_module(module_id=new_id,
                             module_spec=RLModuleSpec.from_module(algorithm.get_module(MAIN)),
                             new_agent_to_module_mapping_fn=mapping)
        algorithm.learner_group.set_state({"learner": {"rl_module": {new_id: learner_main}}})
        # The EnvRunners copy their own (synced) main. RLlib's example syncs them from the
        # learner instead, which each EnvRunner skips in Ray 2.60 (its weights sequence
        # number is already current), leaving the snapshot with its random initial weights.
        copied = algorithm.env_runner_group.foreach_env_runner(
            functools.partial(_copy_main_into, new_id=new_id, expected=learner_main))
        if not all(copied):
            raise RuntimeError(f"league snapshot {new_id}: an EnvRunner's copy differs from "
                               "the learner's main")
        for old in dropped:
            algorithm.remove_module(old, new_agent_to_module_mapping_fn=mapping)


def _copy_main_into(env_runner, *, new_id: str, expected: dict[str, Any]) -> bool:
    """On an EnvRunner: main's weights into ``new_id``; True when the policy weights it now
    plays with are the learner's (``expected``)."""
    env_runner.module[new_id].set_state(env_runner.module[MAIN].get_state())
    state = env_runner.module[new_id].get_state()
    shared = [k for k in state if k in expected and k.startswith(("encoder.", "pi."))]
    return bool(shared) and all(np.array_equal(np.asarray(state[k]), np.asarray(expected[k]))
                                for k in shared)
