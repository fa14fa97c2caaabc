"""Configs of the policy model and of the engine that serves it (Hydra groups policy/, engine/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class PolicyConfig:
    """The policy: a tiny Llama-layout model trained from scratch, or a local HF checkpoint."""

    name: str = "tiny"  # a label for logs and checkpoints
    path: Optional[str] = None  # local HF directory to load; None builds a fresh model from the sizes
    hidden_size: int = 64  # width of the residual stream
    num_layers: int = 2  # transformer blocks
    num_heads: int = 4  # attention heads
    num_kv_heads: int = 2  # key/value heads (grouped-query attention)
    intermediate_size: int = 192  # SwiGLU inner width
    max_seq_len: int = 256  # context length (RoPE positions)
    rope_theta: float = 10000.0  # RoPE base
    seed: int = 0  # initialisation seed of a fresh model


@dataclass
class EngineConfig:
    """The inference core every actor, search and evaluator goes through."""

    kind: str = "torch"  # "torch" (embedded, CPU or GPU) or "vllm" (GPU)
    device: str = "cpu"  # torch device for the embedded engine
    dtype: str = "float32"  # "float32" | "bfloat16" (on a CPU: where it has bf16 units) | "float16"
    max_batch_size: int = 256  # sequences decoded together
    compile: bool = False  # torch.compile / CUDA graphs for the decode step (GPU)
    gpu_memory_utilization: float = 0.5  # vLLM only: fraction of GPU memory it may take
    max_model_len: int = 0  # context served (0: the model's max_position_embeddings); sizes the KV cache
    prefix_sharing: bool = True  # prefill a prompt once for all sequences that share it
    seed: int = 0  # engine RNG for requests without their own seed
    in_process: bool = True  # vLLM only: its engine core runs in the caller's process (no process to spawn: the choice inside Ray actors); false: a process of its own, vLLM's default
    gpus_per_actor: Optional[float] = None  # GPUs Ray reserves for each engine actor (rollout actors, evaluator); null: 1 where kind=vllm or device=cuda and Ray sees a GPU, else 0 (selfplay/placement.py)
