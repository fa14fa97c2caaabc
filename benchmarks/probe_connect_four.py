"""Supervised probe: can the LM policy read a connect-four board? It separates the representation
(the LM reading rendered text) from the self-play pipeline (search, targets, replay, gating).

Random connect-four positions (uniformly random games at a random ply, distinct) are labelled with
alpha-beta's best moves at a fixed depth (every move that ties the best score) and with their
tactic (a win in one, a forced block: envs/games/tactics.py). Two models are trained on the same
positions with the same loss (cross-entropy against the uniform distribution over the best
moves), the same optimiser (the learner's AdamW, learning rate, warm-up, clipping) and the same
number of steps and batch size:

- the LM policy's prior, through ``selfplay.policy.priors.action_log_priors`` on
  ``game.render_text`` (the path the learner trains), for a policy preset (conf/policy/*.yaml);
- a one-hot MLP over the board relative to the player to move (mine / theirs / empty per cell,
  2 hidden layers), the diagnostic control.

Reported: held-out top-1 accuracy (the argmax is one of the best moves) overall and on the
win-in-one / forced-block positions, beside chance (a uniformly random legal move).

    .venv/bin/python benchmarks/probe_connect_four.py                    # 20,000 positions, depth 6
    .venv/bin/python benchmarks/probe_connect_four.py --render mover     # mover-relative text
    .venv/bin/python benchmarks/probe_connect_four.py --policy small
    .venv/bin/python benchmarks/probe_connect_four.py --quick            # about a minute
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result

from envs.games.connect_four import COLS, NUM_CELLS, ROWS, ConnectFour
from envs.games.tactics import best_moves, classify, random_positions
from envs.protocol import legal_actions
from selfplay.learner.config import LearnerConfig
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import action_log_priors, build_policy

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Probe:
    """What one probe run trains on and how."""

    positions: int = 20_000  # labelled positions (held-out ones included)
    held_out: float = 0.2  # fraction kept for the accuracy figures
    depth: int = 6  # alpha-beta plies behind each label
    steps: int = 3_000  # optimiser steps, the same for both models
    batch_size: int = 256  # positions per step (the learner's default)
    policy: str = "tiny"  # conf/policy/<name>.yaml
    render: str = "absolute"  # the LM's text: absolute | mover | mover_short (envs BoardView)
    mlp_hidden: int = 128  # width of the MLP's 2 hidden layers
    threads: int = 1  # torch threads
    seed: int = 0


# ------------------------------------------------------------------------------------------------
# Labelled positions


@dataclass
class Labelled:
    states: np.ndarray  # [N, S] int8
    legal: np.ndarray  # [N, A] bool
    best: np.ndarray  # [N, A] bool, alpha-beta's best moves
    tactic: np.ndarray  # [N] str: "win", "block" or ""
    targets: np.ndarray  # [N, A] bool, the tactic's moves (the winning / blocking columns)

    def take(self, idx: np.ndarray) -> Labelled:
        return Labelled(*(getattr(self, k)[idx] for k in self.__dataclass_fields__))


def label(game: ConnectFour, count: int, depth: int, rng: np.random.Generator) -> Labelled:
    states, best, tactic, targets = [], [], [], []
    stream = random_positions(game, rng)
    for _ in range(count):
        s = next(stream)
        states.append(s)
        best.append(best_moves(game, s, depth))
        t = classify(game, s)
        mask = np.zeros(game.num_actions, bool)
        if t is not None:
            mask[t.targets] = True
        tactic.append("" if t is None else t.kind)
        targets.append(mask)
    states_arr = np.stack(states)
    return Labelled(states_arr, np.stack([game.legal_mask(s) for s in states]), np.stack(best),
                    np.array(tactic), np.stack(targets))


# ------------------------------------------------------------------------------------------------
# The two models: log-priors [B, A] over the whole action space (-inf on illegal moves)


class LMPrior:
    def __init__(self, cfg: PolicyConfig, game: ConnectFour):
        self.model, self.tokenizer = build_policy(cfg)
        self.model.train()
        self.game = game

    def parameters(self):
        return self.model.parameters()

    def __call__(self, states: np.ndarray) -> torch.Tensor:
        texts = [self.game.render_text(s) for s in states]
        legal = [legal_actions(self.game, s) for s in states]
        actions = [[self.game.action_to_text(int(a)) for a in idx] for idx in legal]
        log_priors, _ = action_log_priors(self.model, self.tokenizer, texts, actions)
        out = torch.full((len(states), self.game.num_actions), -torch.inf)
        for row, (idx, lp) in enumerate(zip(legal, log_priors)):
            out[row, torch.from_numpy(idx)] = lp
        return out


class MLPPrior(nn.Module):
    """One-hot board relative to the mover (mine, theirs, empty per cell) -> move logits."""

    def __init__(self, hidden: int, num_actions: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * NUM_CELLS, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_actions))

    @staticmethod
    def features(states: np.ndarray) -> torch.Tensor:
        cells = states[:, :NUM_CELLS].astype(np.int64)
        mine = (states[:, NUM_CELLS] % 2 + 1).astype(np.int64)[:, None]  # the mover's piece
        planes = np.stack([cells == mine, (cells != mine) & (cells != 0), cells == 0], axis=1)
        return torch.from_numpy(planes.reshape(len(states), -1).astype(np.float32))

    def __call__(self, states: np.ndarray) -> torch.Tensor:
        logits = self.net(self.features(states))
        legal = torch.from_numpy(states[:, (ROWS - 1) * COLS:NUM_CELLS] == 0)  # top row free
        return F.log_softmax(logits.masked_fill(~legal, -torch.inf), dim=-1)


def cross_entropy(log_priors: torch.Tensor, best: np.ndarray) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over each position's best moves."""
    target = torch.from_numpy(best / best.sum(axis=1, keepdims=True)).float()
    safe = torch.where(torch.isfinite(log_priors), log_priors, torch.zeros_like(log_priors))
    return -(target * safe).sum(dim=-1).mean()


def train(model, data: Labelled, probe: Probe, learner: LearnerConfig,
          rng: np.random.Generator) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learner.lr, weight_decay=learner.weight_decay)
    warmup = max(1, learner.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
    start, losses = time.perf_counter(), []
    for _ in range(probe.steps):
        idx = rng.integers(0, len(data.states), size=probe.batch_size)
        loss = cross_entropy(model(data.states[idx]), data.best[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, learner.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    tail = losses[-max(1, len(losses) // 10):]
    return {"seconds": round(time.perf_counter() - start, 1), "final_loss": float(np.mean(tail))}


@torch.no_grad()
def top1(model, data: Labelled, mask: np.ndarray | None = None, against: str = "best") -> float:
    """Share of positions whose argmax is one of ``against`` ("best" or "targets")."""
    idx = np.flatnonzero(mask) if mask is not None else np.arange(len(data.states))
    if idx.size == 0:
        return float("nan")
    hits = 0
    for start in range(0, idx.size, 512):
        rows = idx[start:start + 512]
        choice = model(data.states[rows]).argmax(dim=-1).numpy()
        hits += int(getattr(data, against)[rows, choice].sum())
    return hits / idx.size


def chance(data: Labelled, mask: np.ndarray | None = None, against: str = "best") -> float:
    idx = np.flatnonzero(mask) if mask is not None else np.arange(len(data.states))
    good = getattr(data, against)[idx] & data.legal[idx]
    return float(np.mean(good.sum(axis=1) / data.legal[idx].sum(axis=1))) if idx.size else 0.0


def policy_config(name: str) -> PolicyConfig:
    from omegaconf import OmegaConf

    path = REPO / "conf" / "policy" / f"{name}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        sys.exit(f"--policy {name}: no {path}; presets: {names}")
    merged = OmegaConf.merge(OmegaConf.structured(PolicyConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 positions, depth 4, 120 steps")
    defaults = Probe()
    for name, value in vars(defaults).items():
        if name != "render":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--render", default=defaults.render,
                        choices=["absolute", "mover", "mover_short"])
    args = parser.parse_args()
    probe = Probe(positions=2_000, depth=4, steps=120, batch_size=64) if args.quick else Probe()
    for name in vars(defaults):
        if getattr(args, name) is not None:
            setattr(probe, name, getattr(args, name))
    torch.set_num_threads(probe.threads)
    torch.manual_seed(probe.seed)
    learner = LearnerConfig()

    game = ConnectFour(view=probe.render)
    rng = np.random.default_rng(probe.seed)
    t0 = time.perf_counter()
    data = label(game, probe.positions, probe.depth, rng)
    n_test = round(probe.positions * probe.held_out)
    order = rng.permutation(probe.positions)
    test, train_set = data.take(order[:n_test]), data.take(order[n_test:])
    kinds = {k: int((data.tactic == k).sum()) for k in ("win", "block")}
    print(f"{probe.positions} positions labelled at depth {probe.depth} in "
          f"{time.perf_counter() - t0:.1f}s ({kinds['win']} wins in one, {kinds['block']} forced "
          f"blocks); {len(train_set.states)} train / {n_test} held out")
    print(f"example ({probe.render}):\n{game.render_text(test.states[0])}")

    models = {"lm": LMPrior(policy_config(probe.policy), game),
              "mlp": MLPPrior(probe.mlp_hidden, game.num_actions)}
    subsets = {"all": None, "win": test.tactic == "win", "block": test.tactic == "block"}
    report: dict[str, dict] = {}
    for name, model in models.items():
        fit = train(model, train_set, probe, learner, np.random.default_rng(probe.seed + 1))
        if name == "lm":
            model.model.eval()
        report[name] = {
            **fit,
            "train_top1": top1(model, train_set.take(np.arange(min(2000, len(train_set.states))))),
            **{f"top1_{k}": top1(model, test, m) for k, m in subsets.items()},
            "tactic_hit_win": top1(model, test, subsets["win"], "targets"),
            "tactic_hit_block": top1(model, test, subsets["block"], "targets"),
        }
        print(f"{name}: {report[name]}")
    report["chance"] = {f"top1_{k}": chance(test, m) for k, m in subsets.items()}

    label_lm = f"LM prior ({probe.policy}, {probe.render} text)"
    figures = [
        figure(f"held-out top-1 vs alpha-beta:{probe.depth}, {label_lm}", "accuracy",
               report["lm"]["top1_all"], report["mlp"]["top1_all"], "one-hot MLP, same loss/steps",
               "report", digits=3),
        figure(f"held-out top-1 on wins-in-1, {label_lm}", "accuracy", report["lm"]["top1_win"],
               report["mlp"]["top1_win"], "one-hot MLP, same loss/steps", "report", digits=3),
        figure(f"held-out top-1 on forced blocks, {label_lm}", "accuracy",
               report["lm"]["top1_block"], report["mlp"]["top1_block"],
               "one-hot MLP, same loss/steps", "report", digits=3),
        figure(f"held-out top-1, {label_lm}, against chance", "accuracy",
               report["lm"]["top1_all"], report["chance"]["top1_all"],
               "a uniformly random legal move", "report", digits=3),
    ]
    print()
    print_table("probe_connect_four", figures)
    write_result("probe_connect_four", figures, quick=args.quick,
                 extra={"probe": vars(probe), "tactics_in_held_out":
                        {k: int(m.sum()) for k, m in subsets.items() if m is not None},
                        "report": report})


if __name__ == "__main__":
    main()
