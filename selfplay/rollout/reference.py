"""Reference solutions as episodes: the env's own ``reference_actions()`` stepped through the
gymnasium API, with the tokens the policy would have to write recorded on each step.

The supervised warm start (``run.warm_start=sft``) and the ``reference`` rollout mode (SFT
continued on the same solutions: the control of an RL run) train on these. Stepping the env,
rather than reading its generator, checks the reference against the verifier: a reference the
env does not reward is an error, not a training target.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

import gymnasium as gym

from selfplay.textgen.rollout import STEP_STOP, is_multi_step
from selfplay.types import Episode, SampledTokens, Step


def action_token_ids(tokenizer, action: str, multi_step: bool) -> list[int]:
    """The tokens a policy samples to write ``action``: a reasoning step ends at its newline
    (the stop string), a whole solution at EOS, exactly as the engine records them."""
    from selfplay.policy.tokenizer import encode_continuation

    if multi_step:
        return encode_continuation(tokenizer, action + STEP_STOP)
    return encode_continuation(tokenizer, action) + [int(tokenizer.eos_token_id)]


def reference_episodes(
    env_factory: Callable[[], gym.Env],
    seeds: Sequence[int],
    tokenizer,
    *,
    policy_version: int = 0,
    actor: str = "reference",
) -> list[Episode]:
    """One episode per seed whose reference the env rewards fully: the reference actions, with
    their tokens (log-probability 0: written, not sampled) and the env's rewards. A reference the
    verifier rejects is left out (a dataset's solution the parser cannot read); ValueError when
    the env has no references at all, or rejects every one."""
    env = env_factory()
    try:
        multi = is_multi_step(env)
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        reference = getattr(env.unwrapped, "reference_actions", None)
        if reference is None:
            raise ValueError(f"{env_id} has no reference_actions(): it cannot be warm-started "
                             "or trained on reference solutions")
        out, rejected = [], []
        for seed in seeds:
            started = time.time()
            obs, _ = env.reset(seed=int(seed))
            steps: list[Step] = []
            info: dict = {}
            for action in reference():
                ids = action_token_ids(tokenizer, action, multi)
                tokens = SampledTokens(ids, [0.0] * len(ids), policy_version)
                observation = str(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                steps.append(Step(observation=observation, action=action, player=0,
                                  reward=float(reward), tokens=tokens))
                if terminated or truncated:
                    break
            if not steps or steps[-1].reward < 1.0:
                rejected.append(int(seed))
                continue
            out.append(Episode(
                episode_id=uuid.uuid4().hex, env_id=env_id, seed=int(seed),
                policy_version=policy_version, steps=steps, outcome=steps[-1].reward,
                started_at=started, finished_at=time.time(), actor=actor,
                info={"termination": "reference", "sample": "0"},
            ))
        if seeds and not out:
            raise ValueError(f"{env_id}: the env rewards none of its reference solutions "
                             f"(seeds {list(seeds)[:5]}...)")
        return out
    finally:
        env.close()
