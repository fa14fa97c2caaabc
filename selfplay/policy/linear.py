"""The engine's linear layers: y = x W^T (+ b), with the epilogues a transformer block needs.

Two kinds, picked once per device and dtype by ``make_linear``:
- ``OneDnnLinear`` (CPU, float32 or bfloat16 where the CPU has bf16 dot products): the weight is
  reordered once into oneDNN's blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, as
  inductor does for frozen CPU graphs) and the residual add, SiLU or elementwise product rides
  on the matmul as a post-op, so a block's epilogues cost no extra pass over the activations.
  At decode batch sizes this runs the step's matmuls about 1.5x faster than MKL's sgemm on the
  plain weight (benchmarks/engine_speed.py).
- ``MatmulLinear`` (GPU, or a CPU build without oneDNN): ``x @ W^T`` on a transposed weight,
  epilogues as ordinary ops (what ``torch.compile`` traces on a GPU).

Both read the weights at construction; after a weight update the decoder builds new ones.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class Linear(Protocol):
    """A prepared linear layer [in] -> [out] and the epilogues a transformer block needs."""

    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # x W^T (+ b)

    def add_to(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor: ...  # residual +

    def silu(self, x: torch.Tensor) -> torch.Tensor: ...  # silu(x W^T (+ b))

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor: ...  # (x W^T + b) * other


class MatmulLinear:
    """x @ W^T (+ b) on a weight stored [in, out] (a contiguous copy on CPU, where x @ w_t
    beats F.linear's x @ w.T at decode sizes; a view on GPU)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.out_features = weight.shape[0]
        self.wt = weight.t().contiguous() if weight.device.type == "cpu" else weight.t()
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.matmul(x, self.wt)
        return torch.addmm(self.bias, x, self.wt) if x.dim() == 2 else torch.matmul(
            x, self.wt).add_(self.bias)

    def add_to(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + x W^T (+ b), in one GEMM for 2-D inputs."""
        out = torch.addmm(residual, x, self.wt) if x.dim() == 2 else residual + torch.matmul(
            x, self.wt)
        return out if self.bias is None else out + self.bias

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self(x))

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self(x).mul_(other)


class OneDnnLinear:
    """x @ W^T (+ b) on a oneDNN-packed weight, epilogues fused as post-ops (CPU)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.out_features = weight.shape[0]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())
        self.bias = None if bias is None else bias.detach().contiguous()
        # The resolved overloads: a decode step makes ~25 of these calls, and looking the op
        # up through torch.ops each time costs about a microsecond apiece.
        self._unary = torch.ops.mkldnn._linear_pointwise.default
        self._binary = torch.ops.mkldnn._linear_pointwise.binary

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._unary(x, self.packed, self.bias, "none", [], "")

    def add_to(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self._binary(x, residual, self.packed, self.bias, "add")

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        return self._unary(x, self.packed, self.bias, "swish", [], "")

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self._binary(x, other, self.packed, self.bias, "mul")


def onednn_supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``OneDnnLinear`` serves this device and dtype on this machine."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> Linear:
    """The linear layer for ``weight`` [out, in]: oneDNN-packed when ``packed`` (see
    ``onednn_supports``), else a plain matmul."""
    return OneDnnLinear(weight, bias) if packed else MatmulLinear(weight, bias)


__all__ = ["Linear", "MatmulLinear", "OneDnnLinear", "make_linear", "onednn_supports"]
