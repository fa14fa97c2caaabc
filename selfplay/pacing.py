"""Pacing: whether self-play or learning may go on, from the counts the driver keeps.

Self-play and learning share the machine. ``samples_per_decision`` is how many times the learner
draws each self-play decision on average; whichever side runs ahead of that ratio waits, so
neither burns the cores the other needs. One rule overrides the ratio: actors never wait on a
learner that cannot sample (nothing in the replay window is fresh enough, or nothing the loss
keeps has arrived yet). Only new episodes can unblock such a learner, so holding the actors back
would stall the run until its budget ran out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    samples_per_decision: float  # learner draws per self-play decision (0 or less: no pacing)
    batch_size: int  # decisions per learner step
    min_replay_steps: int  # decisions in the store before the first learner step

    def learner_samples(self, learner_step: int) -> float:
        return learner_step * self.batch_size

    def actors_may_play(self, decisions: int, learner_step: int, learner_can_sample: bool = True) -> bool:
        """Whether an idle actor may start another batch of games."""
        ratio = self.samples_per_decision
        if ratio <= 0 or not learner_can_sample:
            return True
        slack = self.min_replay_steps + self.batch_size
        return decisions <= slack + self.learner_samples(learner_step) / ratio

    def learner_may_step(self, decisions: int, learner_step: int) -> bool:
        """Whether the learner may take more steps (it also needs something to sample)."""
        if decisions < self.min_replay_steps:
            return False
        ratio = self.samples_per_decision
        return ratio <= 0 or self.learner_samples(learner_step) < decisions * ratio
