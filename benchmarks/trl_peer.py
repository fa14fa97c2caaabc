"""The peer of learn_arithmetic: TRL's ``GRPOTrainer`` on the same start, reward and clock.

``trl_grpo`` loads a policy directory written by ``selfplay.policy.model.PolicyModel.save`` (an HF
``LlamaForCausalLM`` + the character tokenizer; TRL ignores ``value_head.safetensors``), trains it
with GRPO on the given prompts with the project's verifier as the only reward (1.0 when the
completion's final answer matches, else 0.0), stops once ``minutes`` of wall-clock have passed,
and writes the result to ``out_dir`` in a form ``PolicyModel.load`` reads.

Kept as close to the project's own sampling as TRL allows:

- prompts are plain text (not chat), passed exactly as the policy sees them:
  ``selfplay.textgen.rollout.prompt_of(question)`` (the question and a newline). TRL tokenizes a
  non-conversational prompt with ``processing_class(text=prompts)``, i.e. with the tokenizer's
  special tokens, which for the character tokenizer is ``<bos>`` first: what
  ``selfplay.policy.tokenizer.encode_prompt`` gives;
- completions are sampled at temperature 1.0 (no top-p, no top-k) and end at the tokenizer's
  ``eos_token`` (or at ``max_completion_length`` tokens); TRL decodes them with
  ``skip_special_tokens=True`` before they reach the reward;
- CPU, float32, TRL's own ``transformers.generate`` path (no vLLM), no logging integrations, no
  checkpoints, nothing pushed anywhere.

Needs the ``[bench]`` extra (``trl``); importing this module does not, calling ``trl_grpo`` does.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

# The optimiser settings of the project's learner (selfplay/learner/config.py), so that the two
# sides differ in the algorithm, not in the optimiser.
LEARNING_RATE = 1e-4  # as conf/learner/grpo.yaml (1e-3 collapsed the policy in the 2026-12-02 run)
WEIGHT_DECAY = 1e-4
WARMUP_STEPS = 20
MAX_GRAD_NORM = 1.0


Reward = Callable[[list[str], list[str]], list[float]]


def verifier_rewards(completions: list[str], answers: list[str]) -> list[float]:
    """The project's verifier: 1.0 where a completion's final answer (``final_answer``: its
    ``Answer:`` line or ``\\boxed{}``, or the whole text when it is one short line) matches the
    reference answer (``answers_match``), else 0.0 (no final answer at all is 0.0 too)."""
    from envs.math.answers import answers_match_many
    from envs.math.env import final_answer

    finals = [final_answer(c) if isinstance(c, str) else None for c in completions]
    asked = [(i, (f, str(a))) for i, (f, a) in enumerate(zip(finals, answers)) if f is not None]
    verdicts = answers_match_many([pair for _, pair in asked]) if asked else []
    rewards = [0.0] * len(completions)
    for (i, _), ok in zip(asked, verdicts):
        rewards[i] = 1.0 if ok else 0.0
    return rewards


def _reward_func(reward: Reward, counts: dict[str, float]):
    """The reward function TRL calls, counting what it scores into ``counts``.

    TRL passes every dataset column beside ``prompt`` as a keyword list aligned with
    ``completions`` (one entry per completion), so ``answer`` is each completion's reference."""

    def verifier(prompts, completions, answer, **_: Any) -> list[float]:
        rewards = [float(r) for r in reward(list(completions), list(answer))]
        counts["completions"] += len(completions)
        counts["correct"] += sum(1 for r in rewards if r >= 1.0)
        counts["reward_sum"] += sum(rewards)
        return rewards

    verifier.__name__ = "verifier"  # TRL names the reward's metrics after the function
    return verifier


def build_trainer(
    start_dir: str,
    work_dir: str,
    prompts: list[str],
    answers: list[str],
    *,
    num_generations: int = 8,
    max_completion_length: int = 96,
    learning_rate: float = LEARNING_RATE,
    per_device_batch: int = 16,
    seed: int = 0,
    reward: Reward = verifier_rewards,
    callbacks: list | None = None,
    verbose: bool = False,
):
    """A ``GRPOTrainer`` over ``start_dir``'s model (its checkpoints, if any, under ``work_dir``)
    and the counter dict its reward fills: ``{"completions", "correct", "reward_sum"}``."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from selfplay.policy.tokenizer import load_tokenizer

    if len(prompts) != len(answers) or not prompts:
        raise ValueError(f"need as many answers as prompts (got {len(prompts)}, {len(answers)})")
    if per_device_batch % num_generations:
        raise ValueError(f"per_device_batch ({per_device_batch}) counts completions: it must be a "
                         f"multiple of num_generations ({num_generations})")
    prompts_per_step = per_device_batch // num_generations
    if len(prompts) < prompts_per_step:
        # TRL's RepeatSampler drops an incomplete batch of prompts: fewer would make no step at all
        raise ValueError(f"need at least {prompts_per_step} prompts for {per_device_batch} "
                         f"completions a step of {num_generations} per prompt")

    args = GRPOConfig(
        output_dir=work_dir,
        # the run: as many steps as the clock allows (the deadline callback ends it)
        max_steps=10**9,
        seed=seed,
        data_seed=seed,
        # the optimiser: the project learner's (AdamW, constant after a linear warm-up)
        learning_rate=learning_rate,
        weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=WARMUP_STEPS,
        max_grad_norm=MAX_GRAD_NORM,
        # one generation per optimiser step: per_device_batch completions of
        # per_device_batch / num_generations prompts
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=1,
        num_generations=num_generations,
        num_iterations=1,
        max_completion_length=max_completion_length,
        # sampling: plain temperature-1 sampling, as the project's engine samples
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        # GRPO itself: TRL's defaults (beta=0: no reference model; loss_type="dapo"; rewards scaled
        # by the group's standard deviation)
        # the machine: CPU, float32, no vLLM, nothing written but what we save ourselves
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_vllm=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        report_to="none",
        save_strategy="no",
        push_to_hub=False,
        disable_tqdm=True,
        logging_steps=10,
        log_completions=False,
    )
    model = AutoModelForCausalLM.from_pretrained(start_dir, local_files_only=True,
                                                 dtype=torch.float32)
    tokenizer = load_tokenizer(start_dir)
    dataset = Dataset.from_dict({"prompt": list(prompts), "answer": [str(a) for a in answers]})
    counts = {"completions": 0, "correct": 0, "reward_sum": 0.0}
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=_reward_func(reward, counts),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if not verbose:
        trainer.remove_callback(PrinterCallback)  # the log dict every logging_steps steps
    return trainer, counts


def _deadline_callback(deadline: list[float]):
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        """Ends training at the first step end past ``deadline[0]`` (a ``time.monotonic`` time)."""

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() >= deadline[0]:
                control.should_training_stop = True
            return control

    return Deadline()


def trl_grpo(
    start_dir: str,
    out_dir: str,
    prompts: list[str],
    answers: list[str],
    minutes: float,
    *,
    num_generations: int = 8,
    max_completion_length: int = 96,
    learning_rate: float = LEARNING_RATE,
    per_device_batch: int = 16,
    seed: int = 0,
    threads: int = 2,
    reward: Reward = verifier_rewards,
    verbose: bool = False,
) -> dict:
    """GRPO with TRL from ``start_dir`` for ``minutes`` of wall-clock; the result in ``out_dir``.

    ``prompts`` are the texts the policy continues (``prompt_of(question)``), ``answers`` their
    reference answers. ``per_device_batch`` counts completions per optimiser step (TRL's
    ``per_device_train_batch_size``): ``per_device_batch // num_generations`` prompts a step.
    ``reward(completions, answers)`` scores completions (default: the verifier, 1.0/0.0; tests
    pass another, since a fresh policy never solves anything and so never moves under GRPO).
    The clock starts when training starts (model loading and the trainer's setup are outside it)
    and is read at each step's end, so the run overshoots by at most one step.

    Returns ``{"steps", "seconds", "completions", "correct", "reward_mean", "learning_rate"}``: optimiser steps
    taken, wall-clock seconds of training, completions sampled and scored, how many got reward
    1.0 (the verifier accepted), and the mean reward.
    """
    if not math.isfinite(minutes) or minutes <= 0:
        raise ValueError(f"minutes must be positive, got {minutes!r}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    work_dir = tempfile.mkdtemp(prefix="trl-grpo-")
    try:
        deadline = [math.inf]
        trainer, counts = build_trainer(
            start_dir, work_dir, prompts, answers,
            num_generations=num_generations, max_completion_length=max_completion_length,
            learning_rate=learning_rate, per_device_batch=per_device_batch, seed=seed,
            reward=reward, callbacks=[_deadline_callback(deadline)], verbose=verbose,
        )
        start = time.monotonic()
        deadline[0] = start + minutes * 60.0
        trainer.train()
        seconds = time.monotonic() - start
        steps = int(trainer.state.global_step)

        model = trainer.accelerator.unwrap_model(trainer.model)
        model.eval()
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        trainer.processing_class.save_pretrained(out_dir)
        from selfplay.policy.model import VALUE_HEAD_FILE

        head = os.path.join(start_dir, VALUE_HEAD_FILE)
        if os.path.exists(head):  # untouched by TRL: the start's head, so the directory is complete
            shutil.copyfile(head, os.path.join(out_dir, VALUE_HEAD_FILE))
    finally:
        torch.set_num_threads(old_threads)
        shutil.rmtree(work_dir, ignore_errors=True)
    done = counts["completions"]
    return {
        "steps": steps,
        "seconds": seconds,
        "completions": done,
        "correct": counts["correct"],
        "reward_mean": counts["reward_sum"] / done if done else 0.0,
        "learning_rate": learning_rate,
    }


__all__ = ["build_trainer", "trl_grpo", "verifier_rewards"]
