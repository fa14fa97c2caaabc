"""The text arena of a training run: each version's held-out pass@k, and candidate-vs-incumbent
gating on the same held-out prompts, recorded on the run's Elo ladder.

Every version is measured on the same problems (test-split seeds ``0 .. arena.eval_games-1``),
so the curves compare like with like; gating prompts come from another stretch of the test split
(seeded by the gate call), so a version is not selected on the problems it is measured on.
"""

from __future__ import annotations

from selfplay.arena.elo import EloLadder
from selfplay.arena.game_arena import summarize
from selfplay.arena.gating import SequentialGate, gate_from_config
from selfplay.arena.text import compare_on_prompts, evaluate_version, gate_on_prompts
from selfplay.evaluate_text import _test_env_factory
from selfplay.rollout.modes import text_sampling
from selfplay.textgen.rollout import is_multi_step

GATE_SEED_BASE = 1_000_000  # gating prompts: test-split seeds from here on, apart from eval's


class TextArena:
    """``cfg`` is an EvaluatorWorkerConfig; ``engines`` hold a "candidate" and an "incumbent"."""

    def __init__(self, cfg, engines: dict, ladder: EloLadder):
        self.cfg, self.engines, self.ladder = cfg, engines, ladder
        self.env_factory = _test_env_factory(cfg.env)
        probe = self.env_factory()
        self.multi_step = is_multi_step(probe)
        probe.close()

    def _engine(self, slot: str, weights, version: int):
        engine = self.engines[slot]
        engine.load_weights(weights, version)
        return engine

    def gate(self, cand_weights, cand_version: int, inc_weights, inc_version: int, seed: int) -> dict:
        arena, k = self.cfg.arena, self.cfg.sampling.k
        if not arena.gate:  # no gate (AlphaZero 2018): every candidate is accepted unplayed
            return {"result": None, "accepted": True, "score": float("nan"),
                    "reason": "arena.gate=false"}
        cand = self._engine("candidate", cand_weights, cand_version)
        inc = self._engine("incumbent", inc_weights, inc_version)
        sampling = text_sampling(self.cfg.sampling, self.multi_step, seed=seed)
        start = GATE_SEED_BASE + (seed % 1000) * 10_000
        if arena.gate_test == "sprt":
            gate = SequentialGate.from_config(arena)
            seeds = range(start, start + gate.max_games)
            decision, result = gate_on_prompts(self.env_factory, cand, inc, seeds, k, sampling,
                                               gate, arena.gate_batch)
            accepted = decision.accepted or not arena.gate
        else:
            seeds = range(start, start + arena.gate_games)
            result = compare_on_prompts(self.env_factory, cand, inc, seeds, k, sampling)
            decision = gate_from_config(result, arena)
            accepted = decision.accepted
        self.ladder.record(result, version=cand_version)
        return {"result": summarize(result), "accepted": accepted, "score": result.score,
                "reason": decision.reason}

    def evaluate(self, weights, version: int, games: int, seed: int) -> list[dict]:
        """pass@1 .. pass@k, maj@k and the mean reward on ``games`` held-out problems."""
        engine = self._engine("candidate", weights, version)
        # A fixed sampling seed: every version is drawn with the same random numbers.
        sampling = text_sampling(self.cfg.sampling, self.multi_step, seed=0)
        per_batch = max(1, int(self.cfg.engine.max_batch_size) // self.cfg.sampling.k)
        result = evaluate_version(self.env_factory, engine, range(games), self.cfg.sampling.k,
                                  sampling, batch_problems=per_batch)
        return [{"a": f"v{version}", "b": "held-out", "version": version, **result.to_dict()}]
