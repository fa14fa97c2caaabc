"""Retraining the reward model on the newest policy's samples, so it stays in distribution.

A reward model trained once drifts out of distribution as the policy it scores improves (Llama 2
retrained its reward models on each week's new samples). During a run, every
``feedback.retrain_every`` the run's newest text episodes are turned into preference pairs by the
environment's own verdict (``info["env_reward"]``: the verifier, not the combined reward, which
contains the reward model's own score), split by prompt into train and held-out pairs, and the
reward model is trained on the train pairs from where it stands. Its held-out accuracy before
and after is the figure logged per reward-model version; the new version is saved under
``RUN_DIR/reward_models/version-N`` (atomically) and the rollout actors score with it from then on.

The pieces here are pure over episodes and a model; ``RewardModelWorker`` (selfplay/workers.py)
holds the model in a Ray actor and the driver calls it on the cadence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selfplay.feedback.reward_model import (
    PreferencePair,
    RewardModel,
    accuracy,
    pairs_from_verifier,
    train_reward_model,
)
from selfplay.types import Episode

REWARD_MODELS_DIR = "reward_models"
_VERSION_DIR = re.compile(r"^version-(\d{6})$")


@dataclass(frozen=True)
class RetrainResult:
    """What one retraining did (``version`` is -1 when there were no pairs to train on)."""

    version: int
    path: str
    episodes: int  # episodes the pairs were drawn from
    train_pairs: int
    held_out_pairs: int
    accuracy_before: float  # held-out pairs ranked right by the reward model as it was (nan: none)
    accuracy_after: float  # ... and after training
    loss: float  # mean Bradley-Terry loss over the last tenth of the steps (nan: not trained)


def verifier_samples(episodes: Sequence[Episode]) -> tuple[list[str], list[str], list[float]]:
    """(prompts, responses, rewards) of finished text episodes: the first observation, the
    actions joined by newlines (as the feedback wrapper shows them to a source), and the env's
    own reward where AI feedback was added to it (the episode's outcome otherwise)."""
    prompts, responses, rewards = [], [], []
    for ep in episodes:
        if not ep.steps:
            continue
        reward = ep.info.get("env_reward")
        try:
            value = float(reward) if reward is not None else float(ep.outcome)
        except ValueError:
            continue  # a malformed record is left out, not a failed retraining
        prompts.append(ep.steps[0].observation)
        responses.append("\n".join(step.action for step in ep.steps))
        rewards.append(value)
    return prompts, responses, rewards


def held_out_prompt(prompt: str, fraction: float) -> bool:
    """Whether ``prompt`` belongs to the held-out side: a stable hash of its text, so the same
    prompt is on the same side at every retraining and no held-out prompt is ever trained on."""
    digest = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    return digest / 2**64 < fraction


def split_pairs(prompts: Sequence[str], responses: Sequence[str], rewards: Sequence[float],
                held_out: float, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Preference pairs by the verifier, split by prompt into (train, held-out)."""
    pairs = pairs_from_verifier(prompts, responses, rewards, seed=seed)
    train = [p for p in pairs if not held_out_prompt(p.prompt, held_out)]
    test = [p for p in pairs if held_out_prompt(p.prompt, held_out)]
    return train, test


def retrain(model: RewardModel, episodes: Sequence[Episode], *, steps: int, batch_size: int,
            lr: float, held_out: float, seed: int) -> tuple[RetrainResult, bool]:
    """Train ``model`` in place on the train pairs of ``episodes``; (result without a version,
    whether it was trained). Without train pairs (every sample of each prompt scored alike) the
    model is left as it is."""
    prompts, responses, rewards = verifier_samples(episodes)
    train, test = split_pairs(prompts, responses, rewards, held_out, seed)
    before = accuracy(model, test) if test else float("nan")
    if not train:
        return RetrainResult(-1, "", len(episodes), 0, len(test), before, before,
                             float("nan")), False
    metrics = train_reward_model(model, model.tokenizer, train, steps=steps,
                                 batch_size=batch_size, lr=lr, seed=seed)
    after = accuracy(model, test) if test else float("nan")
    return RetrainResult(-1, "", len(episodes), len(train), len(test), before, after,
                         metrics.loss), True


def reward_model_versions(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's retrained reward models, oldest first."""
    root = Path(run_dir) / REWARD_MODELS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _VERSION_DIR.match(p.name))]
    return sorted(found)


def reward_model_dir(run_dir: Path, version: int) -> Path:
    return Path(run_dir) / REWARD_MODELS_DIR / f"version-{version:06d}"


__all__ = ["REWARD_MODELS_DIR", "RetrainResult", "held_out_prompt", "retrain",
           "reward_model_dir", "reward_model_versions", "split_pairs", "verifier_samples"]
