"""A hand-written forward over an HF Llama-layout model's weights, for the embedded engine.

It reads the weights of a ``PolicyModel`` (Llama, Qwen2 and other models of the same layout:
RMSNorm, RoPE, grouped-query attention, SwiGLU) and runs them with as few passes over the
activations as it can: q/k/v are one matmul, the residual add, SiLU and gate product ride on
the matmuls (``selfplay.policy.linear``: oneDNN post-ops on a CPU), RoPE is applied to q and k
together, and keys/values live in one preallocated cache ``[layers, 2, slots, Hkv, max_len, D]``.
The layers are prepared once at load time, again after every weight update (``refresh``).

Two entry points:
- ``prefill``: full causal forward of right-padded prompts, returning the hidden states and the
  keys/values of every position (the engine copies them into cache slots); given each prompt's
  last position, the last layer runs attention and MLP for that position only (the engine needs
  nothing else from it);
- ``decode``: one token for each of the first ``B`` slots, each at its own position, reading and
  writing the slot cache. On a CPU (float32 or bfloat16) the work between the matmuls is two
  numba kernels per layer (``selfplay.policy.cpu_kernels``: the norm; RoPE + cache write +
  attention); elsewhere it is torch ops (``scaled_dot_product_attention`` on CUDA), which
  ``torch.compile`` can capture.

Numerics follow HF's modules: RMSNorm in float32, rounded to the model's dtype before its weight
multiplies; RoPE tables in the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from selfplay.policy.cpu_kernels import decode_attention, kernel_array, rms_norm_rows
from selfplay.policy.linear import Linear, make_linear, onednn_supports


@dataclass
class LayerWeights:
    """One transformer block, prepared for inference."""

    in_norm: torch.Tensor  # [H] input RMSNorm weight
    qkv: Linear  # [H] -> [(Hq + 2 Hkv) D] (q, k, v projections stacked)
    o: Linear  # [Hq D] -> [H]
    post_norm: torch.Tensor  # [H] post-attention RMSNorm weight
    gate: Linear  # [H] -> [I]
    up: Linear  # [H] -> [I]
    down: Linear  # [I] -> [H]
    in_norm_f32: np.ndarray  # the norm weights as float32 arrays, for the CPU kernels
    post_norm_f32: np.ndarray


def _cat_bias(*linears) -> torch.Tensor | None:
    if all(lin.bias is None for lin in linears):
        return None
    return torch.cat(
        [lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
         for lin in linears]
    )


def _check_layout(config, layer) -> None:
    """Refuse models this forward would silently get wrong."""
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ValueError(f"engine: hidden_act {config.hidden_act!r} is not supported (silu only)")
    if getattr(config, "use_sliding_window", False):
        raise ValueError("engine: sliding-window attention is not supported")
    for name in ("q_norm", "k_norm"):
        if hasattr(layer.self_attn, name):
            raise ValueError(f"engine: attention with {name} (e.g. Qwen3) is not supported")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's LlamaRMSNorm: normalise in float32, round to x's dtype, then scale by the weight."""
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def _host_f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class Decoder:
    """The engine's forward over a PolicyModel's weights (which it reads, never owns)."""

    def __init__(self, model, max_len: int):
        cfg = model.config
        self.model = model
        self.num_heads = int(cfg.num_attention_heads)  # Hq
        self.num_kv_heads = int(cfg.num_key_value_heads or cfg.num_attention_heads)  # Hkv
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads)
        self.hidden_size = int(cfg.hidden_size)
        self.num_layers = int(cfg.num_hidden_layers)
        self.eps = float(cfg.rms_norm_eps)
        self.max_len = max_len
        self.scale = self.head_dim**-0.5
        _check_layout(cfg, model.lm.model.layers[0])
        weight = model.lm.model.embed_tokens.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.packed = onednn_supports(self.device, self.dtype)
        # The numba decode step: CPU, float32 or bfloat16 (as bits), an even head size (RoPE).
        self.cpu_kernels = (self.device.type == "cpu" and self.head_dim % 2 == 0
                            and self.dtype in (torch.float32, torch.bfloat16))
        self.refresh()

    # ---- weights -----------------------------------------------------------------------------

    @torch.no_grad()
    def refresh(self) -> None:
        """(Re)build the prepared weights and RoPE tables from the model's current parameters."""
        body = self.model.lm.model
        self.embed = body.embed_tokens.weight  # [V, H] (a view: no copy)
        self.final_norm = body.norm.weight  # [H]
        self.final_norm_f32 = _host_f32(self.final_norm)
        self.lm_head = make_linear(self.model.lm.lm_head.weight, None, self.packed)  # H -> V
        self.value_w = self.model.value_head.weight  # [1, H]
        self.value_b = self.model.value_head.bias  # [1]
        self.layers = []
        for layer in body.layers:
            att, mlp = layer.self_attn, layer.mlp

            def linear(*parts):
                w = torch.cat([p.weight for p in parts]) if len(parts) > 1 else parts[0].weight
                return make_linear(w, _cat_bias(*parts), self.packed)

            self.layers.append(
                LayerWeights(
                    in_norm=layer.input_layernorm.weight,
                    qkv=linear(att.q_proj, att.k_proj, att.v_proj),
                    o=linear(att.o_proj),
                    post_norm=layer.post_attention_layernorm.weight,
                    gate=linear(mlp.gate_proj),
                    up=linear(mlp.up_proj),
                    down=linear(mlp.down_proj),
                    in_norm_f32=_host_f32(layer.input_layernorm.weight),
                    post_norm_f32=_host_f32(layer.post_attention_layernorm.weight),
                )
            )
        # RoPE tables from the model's own rotary module, so its scaling variant is honoured.
        positions = torch.arange(self.max_len, device=self.device)[None]  # [1, L]
        probe = torch.zeros(1, device=self.device, dtype=torch.float32)
        cos, sin = body.rotary_emb(probe, positions)  # [1, L, D] each
        self.cos = cos[0].to(self.dtype)  # [L, D]
        self.sin = sin[0].to(self.dtype)  # [L, D]
        # rotate_half(x) * sin == roll(x, D/2) * [-sin_1, sin_2]: one roll instead of neg + cat.
        half = self.head_dim // 2
        self.sin_signed = torch.cat((-self.sin[:, :half], self.sin[:, half:]), dim=-1)  # [L, D]
        if self.cpu_kernels:
            self.cos_f32 = self.cos.float().contiguous()
            self.sin_signed_f32 = self.sin_signed.float().contiguous()

    def new_cache(self, slots: int) -> torch.Tensor:
        """An empty KV cache [layers, 2, slots, Hkv, max_len, D]."""
        return torch.zeros(
            (self.num_layers, 2, slots, self.num_kv_heads, self.max_len, self.head_dim),
            dtype=self.dtype,
            device=self.device,
        )

    # ---- pieces ------------------------------------------------------------------------------

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
        """Rotate x [..., heads, D] by cos/sin_signed broadcast as [..., 1, D] (HF's rotate-half
        form: x * cos + rotate_half(x) * sin)."""
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, dims=-1), sin_signed)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor, weight_f32: np.ndarray) -> torch.Tensor:
        """RMSNorm of x [..., H]: one numba pass on a CPU, HF's torch ops elsewhere."""
        if not (self.cpu_kernels and x.is_contiguous()):
            return rms_norm(x, weight, self.eps)
        out = torch.empty_like(x)
        rms_norm_rows(kernel_array(x.view(-1, self.hidden_size)), weight_f32,
                      np.float32(self.eps), kernel_array(out.view(-1, self.hidden_size)))
        return out

    def _mlp(self, x: torch.Tensor, w: LayerWeights) -> torch.Tensor:
        """x + down(silu(gate(h)) * up(h)) for h = post-norm(x)."""
        h = self._norm(x, w.post_norm, w.post_norm_f32)
        return w.down.add_to(w.up.mul(h, w.gate.silu(h)), x)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden [..., H] -> float32 logits [..., V]."""
        return self.lm_head(hidden).float()

    def value(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden [..., H] -> float32 values [...] in [-1, 1]."""
        return torch.tanh(F.linear(hidden, self.value_w, self.value_b)).squeeze(-1).float()

    # ---- forwards ----------------------------------------------------------------------------

    def prefill(
        self, ids: torch.Tensor, last: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal forward of right-padded ids [P, T] -> (final-norm hidden [P, T, H], keys/values
        [layers, 2, P, Hkv, T, D]). Padding sits after each prompt, so causal attention alone
        keeps it out of every real position. Given ``last`` [P] (each prompt's last position),
        the hidden state is [P, H] at those positions only: the last layer's projections cover
        every position (its keys/values are needed), its attention and MLP only those."""
        P, T = ids.shape
        Hq, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        x = F.embedding(ids, self.embed)  # [P, T, H]
        cos, sin = self.cos[:T, None, :], self.sin_signed[:T, None, :]  # [T, 1, D]
        kv = x.new_empty((self.num_layers, 2, P, Hkv, T, D))
        for i, w in enumerate(self.layers):
            h = self._norm(x, w.in_norm, w.in_norm_f32)
            qkv = w.qkv(h)  # [P, T, (Hq + 2 Hkv) D]
            qk = self._rope(qkv[..., : (Hq + Hkv) * D].view(P, T, Hq + Hkv, D), cos, sin)
            kv[i, 0] = qk[:, :, Hq:].transpose(1, 2)  # [P, Hkv, T, D]
            kv[i, 1] = qkv[..., (Hq + Hkv) * D :].view(P, T, Hkv, D).transpose(1, 2)
            if last is not None and i == self.num_layers - 1:
                # Only the last positions go on: their queries, attention and MLP.
                rows = torch.arange(P, device=ids.device)
                visible = torch.arange(T, device=ids.device)[None, :] <= last[:, None]  # [P, T]
                att = self._attend(qk[rows, last, :Hq], kv[i, 0], kv[i, 1],
                                   self._mask_bias(visible, x.dtype))  # [P, Hq D]
                x = self._mlp(w.o.add_to(att, x[rows, last]), w)  # [P, H]
                break
            att = F.scaled_dot_product_attention(
                qk[:, :, :Hq].transpose(1, 2), kv[i, 0], kv[i, 1], is_causal=True,
                scale=self.scale, enable_gqa=Hq != Hkv,
            )  # [P, Hq, T, D]
            x = self._mlp(w.o.add_to(att.transpose(1, 2).reshape(P, T, Hq * D), x), w)
        return self._norm(x, self.final_norm, self.final_norm_f32), kv

    def decode(
        self,
        cache: torch.Tensor,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        span: int,
    ) -> torch.Tensor:
        """One step for slots 0..B-1: tokens, positions [B] (each slot's next position; its cache
        holds positions < that) -> final-norm hidden [B, H]. Writes the new keys/values into
        ``cache`` [layers, 2, slots, Hkv, max_len, D]; attends over the first ``span`` positions
        (span > every position in this step)."""
        if self.cpu_kernels:
            return self._decode_cpu(cache, tokens, positions)
        B = tokens.shape[0]
        Hq, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        x = F.embedding(tokens, self.embed)  # [B, H]
        cos = self.cos[positions][:, None, :]  # [B, 1, D]
        sin = self.sin_signed[positions][:, None, :]  # [B, 1, D]
        rows = torch.arange(B, device=tokens.device)  # [B]
        # Each slot sees its own prefix: key position j is visible iff j <= the slot's position.
        visible = torch.arange(span, device=tokens.device)[None, :] <= positions[:, None]  # [B, S]
        bias = self._mask_bias(visible, x.dtype)  # [B, 1, 1, S]
        for i, w in enumerate(self.layers):
            h = rms_norm(x, w.in_norm, self.eps)
            qkv = w.qkv(h)  # [B, (Hq + 2 Hkv) D]
            qk = self._rope(qkv[:, : (Hq + Hkv) * D].view(B, Hq + Hkv, D), cos, sin)
            keys, values = cache[i, 0], cache[i, 1]  # [slots, Hkv, max_len, D] each
            keys[rows, :, positions] = qk[:, Hq:]  # [B, Hkv, D]
            values[rows, :, positions] = qkv[:, (Hq + Hkv) * D :].view(B, Hkv, D)
            att = self._attend(qk[:, :Hq], keys[:B, :, :span], values[:B, :, :span], bias)
            x = self._mlp(w.o.add_to(att, x), w)  # [B, H]
        return rms_norm(x, self.final_norm, self.eps)

    def _decode_cpu(
        self, cache: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """``decode`` on a CPU: matmuls through the prepared linears, everything between them
        in the numba kernels, which read and write the tensors' memory in place."""
        B = tokens.shape[0]
        eps = np.float32(self.eps)
        x = F.embedding(tokens, self.embed)  # [B, H]
        h = torch.empty_like(x)
        h_arr = kernel_array(h)
        att = x.new_empty((B, self.num_heads * self.head_dim))
        for i, w in enumerate(self.layers):
            rms_norm_rows(kernel_array(x), w.in_norm_f32, eps, h_arr)
            qkv = w.qkv(h)  # [B, (Hq + 2 Hkv) D]
            decode_attention(qkv, self.cos_f32, self.sin_signed_f32, positions, cache[i, 0],
                             cache[i, 1], self.num_heads, self.scale, att)
            x = w.o.add_to(att, x)
            rms_norm_rows(kernel_array(x), w.post_norm_f32, eps, h_arr)
            x = w.down.add_to(w.up.mul(h, w.gate.silu(h)), x)
        rms_norm_rows(kernel_array(x), self.final_norm_f32, eps, h_arr)
        return h

    @staticmethod
    def _mask_bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """visible [B, S] bool -> additive attention mask [B, 1, 1, S] (0 or -inf)."""
        bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
        return bias.masked_fill_(~visible, float("-inf"))[:, None, None, :]

    def _attend(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """One query per row: q [B, Hq, D], keys/values [B, Hkv, S, D], bias [B, 1, 1, S]
        -> attention output [B, Hq D] (query head h reads kv head h // (Hq / Hkv))."""
        B, Hq, D = q.shape
        Hkv = keys.shape[1]
        if q.is_cuda:
            att = F.scaled_dot_product_attention(
                q[:, :, None, :], keys, values, attn_mask=bias, scale=self.scale,
                enable_gqa=Hq != Hkv,
            )  # [B, Hq, 1, D]
            return att.reshape(B, Hq * D)
        # The query heads of one kv head side by side: [B, Hkv, G, D] against [B, Hkv, S, D].
        scores = torch.matmul((q * self.scale).reshape(B, Hkv, Hq // Hkv, D), keys.transpose(2, 3))
        probs = torch.softmax(scores.add_(bias), dim=-1)  # [B, Hkv, G, S]
        return torch.matmul(probs, values).view(B, Hq * D)


__all__ = ["Decoder", "LayerWeights", "rms_norm"]
