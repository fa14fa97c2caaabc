"""Decode speed of the embedded torch engine against transformers' ``generate()``.

Same weights (a random-init Llama/Qwen2-shaped model), same dtype, same prompts, same lengths,
both greedy and sampled, measured in one process; prints a table and writes
benchmarks/results/engine_speed.json (DESIGN.md's benchmark protocol).

    .venv/bin/python benchmarks/engine_speed.py            # CPU: 4 layers x 256 wide, batch 32,
                                                           # float32, then bfloat16 (both sides)
    .venv/bin/python benchmarks/engine_speed.py --quick    # the same code path, small
    .venv/bin/python benchmarks/engine_speed.py --gpu      # Qwen2-0.5B shape, bf16, batch 256
    .venv/bin/python benchmarks/engine_speed.py --threads 1   # both sides on one core

Tokens/s counts generated tokens (batch x new tokens) over the wall time of the whole call,
prefill included, for both sides; ours and theirs alternate, repeat by repeat, and the median
counts. In bfloat16 the two sides round differently (their ops differ in order), so greedy
sequences part once two tokens are near-tied; the table records how many stay identical and the
mean length of the common prefix. bfloat16 runs only where oneDNN has bf16 kernels for the CPU.
A ``--quick`` run writes results/engine_speed.quick.json, never the full run's file.
On a machine busy with other jobs pass ``--threads 1``: two OpenMP threads competing with other
processes for 2 cores slow both sides down many times over.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, machine, write_result

from selfplay.policy.config import EngineConfig
from selfplay.policy.engine import SamplingParams
from selfplay.policy.linear import onednn_supports
from selfplay.policy.model import PolicyModel
from selfplay.policy.torch_engine import TorchEngine


@dataclass
class Setup:
    """One benchmark shape."""

    label: str
    device: str
    dtype: str
    batch: int
    prompt_len: int
    new_tokens: int
    repeats: int
    goal: str


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer with exactly ``vocab_size`` tokens (w4, w5, ...), so
    text prompts map to known token ids and every generated id decodes."""
    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                       special_tokens=[("<bos>", 1)])
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")


def cpu_model() -> torch.nn.Module:
    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=768,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2)
    return LlamaForCausalLM(cfg)


def gpu_model() -> torch.nn.Module:
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                      num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2)
    return Qwen2ForCausalLM(cfg)


def timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def run(setup: Setup, lm: torch.nn.Module) -> list[dict]:
    torch.manual_seed(0)
    vocab = lm.config.vocab_size
    tok = word_tokenizer(vocab)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[setup.dtype]
    # Prompts of exactly prompt_len tokens (<bos> + words), so neither side pads.
    words = torch.randint(4, vocab, (setup.batch, setup.prompt_len - 1))
    prompts = [" ".join(f"w{int(i)}" for i in row) for row in words]
    ids = torch.tensor([[1] + row.tolist() for row in words], device=setup.device)
    mask = torch.ones_like(ids)
    is_cuda = setup.device.startswith("cuda")
    sync = torch.cuda.synchronize if is_cuda else (lambda: None)

    hf = lm.to(device=setup.device, dtype=dtype).eval()
    engine = TorchEngine(
        PolicyModel(hf, tok), tok,
        EngineConfig(device=setup.device, dtype=setup.dtype, max_batch_size=setup.batch,
                     compile=is_cuda, max_model_len=setup.prompt_len + setup.new_tokens),
    )
    n_tokens = setup.batch * setup.new_tokens
    figures = []
    for mode, temperature in (("greedy", 0.0), ("sampled", 1.0)):
        sampling = SamplingParams(temperature=temperature, top_p=1.0,
                                  max_tokens=setup.new_tokens, ignore_eos=True, seed=0)
        hf_kwargs = {"attention_mask": mask, "max_new_tokens": setup.new_tokens,
                     "min_new_tokens": setup.new_tokens, "pad_token_id": 0,
                     "do_sample": temperature > 0, "top_k": None, "top_p": 1.0,
                     "temperature": temperature if temperature > 0 else 1.0}

        def ours(sampling=sampling):
            return engine.generate(prompts, sampling)

        def theirs(hf_kwargs=hf_kwargs):
            with torch.inference_mode():
                return hf.generate(ids, **hf_kwargs)

        ours(), theirs()  # warm-up (and compilation on a GPU)
        t_ours, t_hf = [], []
        for _ in range(setup.repeats):  # interleaved, so a change in machine load hits both
            t_ours.append(timed(ours, sync))
            t_hf.append(timed(theirs, sync))
        if mode == "greedy":  # the two sides must generate the same thing
            mine = [c[0].token_ids for c in ours()]
            ref = theirs()[:, setup.prompt_len:].tolist()
            same = sum(a == b for a, b in zip(mine, ref)) / len(ref)
            prefix = statistics.mean(_common_prefix(a, b) for a, b in zip(mine, ref))
            print(f"{setup.label}: greedy sequences identical to transformers: {same:.0%} "
                  f"(mean common prefix {prefix:.1f} of {setup.new_tokens} tokens)")
        # Every completion has exactly new_tokens tokens on both sides (ignore_eos /
        # min_new_tokens), so tokens/s compare the same work.
        assert all(len(c[0].token_ids) == setup.new_tokens for c in ours())
        ours_tps = n_tokens / statistics.median(t_ours)
        hf_tps = n_tokens / statistics.median(t_hf)
        row = figure(
            f"{setup.label} decode, {mode} (batch {setup.batch}, {setup.prompt_len}-token "
            f"prompts, {setup.new_tokens} new tokens)",
            "tokens/s", ours_tps, hf_tps,
            f"transformers {__import__('transformers').__version__} generate()", setup.goal,
        )
        row["runs_s"] = {"ours": [round(t, 4) for t in t_ours],
                         "baseline": [round(t, 4) for t in t_hf]}
        if mode == "greedy":
            row["greedy_identical"] = same
            row["greedy_common_prefix"] = round(prefix, 1)
        figures.append(row)
    return figures


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run, same code path")
    ap.add_argument("--gpu", action="store_true", help="Qwen2-0.5B shape on cuda, bf16")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads for both sides (0: torch's default)")
    args = ap.parse_args()
    load_start = _load()
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # on a shared machine 1 thread is the steadiest
    if args.gpu:
        setups = [(Setup("Qwen2-0.5B shape, bf16, cuda", "cuda", "bfloat16",
                         32 if args.quick else 256, 128, 16 if args.quick else 128,
                         1 if args.quick else 3, ">= 10x"), gpu_model)]
    else:
        dtypes = [("fp32", "float32")]
        if onednn_supports(torch.device("cpu"), torch.bfloat16):
            dtypes.append(("bf16", "bfloat16"))
        else:
            print("bfloat16: skipped (oneDNN has no bf16 kernels for this CPU)")
        setups = [(Setup(f"Llama 4x256, vocab 512, {label}, cpu", "cpu", dtype,
                         8 if args.quick else 32, 32, 16 if args.quick else 64,
                         1 if args.quick else 5, ">= 3x"), cpu_model) for label, dtype in dtypes]
    figures = []
    for setup, make_model in setups:
        torch.manual_seed(0)  # the same weights for every dtype
        figures += run(setup, make_model())

    print(f"\n{'figure':<95} {'ours':>10} {'baseline':>10} {'ratio':>7}  goal")
    for f in figures:
        print(f"{f['name']:<95} {f['ours']:>10.1f} {f['baseline']:>10.1f} {f['ratio']:>6.2f}x  "
              f"{f['goal']}")
    note = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"1-min load average {load_start:.2f} at the start, {_load():.2f} at the end")
    print(f"{machine(note)}")
    write_result("engine_speed", figures, quick=args.quick, note=note)


if __name__ == "__main__":
    main()
