"""Shared neural blocks: an MLP, a causal Transformer over item sequences (SASRec-style) and
the mixture-of-experts text adapter (UniSRec)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """``Linear → activation → dropout`` per hidden layer, then a last ``Linear``.

    Args:
        dims: ``[d_in, h_1, ..., d_out]``.
        dropout: dropout after each hidden activation.
    """

    def __init__(self, dims: Sequence[int], *, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers += [activation(), nn.Dropout(dropout)]
        super().__init__(*layers)


class SequenceEncoder(nn.Module):
    """A causal Transformer over left-padded item sequences (Kang & McAuley, ICDM 2018).

    Input are item vectors ``[B, L, D]`` and a padding mask ``[B, L]`` (True = padding); learned
    position embeddings are added, each position attends to itself and earlier positions only.
    Sequences are left-padded, so the last position holds the most recent item.

    Args:
        dim: model width D.
        max_len: longest sequence L.
        n_layers: Transformer layers.
        n_heads: attention heads (must divide ``dim``).
        dropout: dropout on the input and inside the layers.
    """

    def __init__(self, dim: int, max_len: int, *, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.max_len = max_len
        self.position = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=dim * 2,
                                           dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` states; position t sees positions ≤ t. ``padding`` is ``[B, L]`` bool."""
        b, length, _ = x.shape
        if length > self.max_len:
            x, padding = x[:, -self.max_len:], padding[:, -self.max_len:]
            length = self.max_len
        pos = torch.arange(self.max_len - length, self.max_len, device=x.device)
        h = self.dropout(self.input_norm(x + self.position(pos)[None]))
        # blocked[b, i, j]: j later than i, or j padding; every position may see itself, so
        # no attention row is empty (an empty row gives NaN, which the inference fast path
        # would spread to real positions through zero attention weights)
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
        blocked = (causal[None] | padding[:, None, :]) & ~eye[None]  # [B, L, L]
        heads = self.layers.layers[0].self_attn.num_heads
        h = self.layers(h, mask=blocked.repeat_interleave(heads, dim=0))
        return self.output_norm(h).masked_fill(padding[..., None], 0.0)

    def last(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` the state at the most recent position (the user representation)."""
        return self.forward(x, padding)[:, -1]


class MoEAdapter(nn.Module):
    """Mixture-of-experts adapter with parametric whitening (UniSRec, Hou et al., KDD 2022).

    Expert k maps a frozen text vector to ``(x - b_k) W_k``; a softmax gate over the experts
    (computed from ``x``) mixes them. Gates start uniform (zero-initialised gate).

    Args:
        d_in: text vector size.
        d_out: output size D.
        n_experts: number of experts K.
        dropout: dropout on the text vector before the experts.
    """

    def __init__(self, d_in: int, d_out: int, *, n_experts: int = 8,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.d_in, self.d_out, self.n_experts = d_in, d_out, n_experts
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(n_experts, d_in))  # b_k [K, d_in]
        self.weight = nn.Parameter(torch.randn(n_experts, d_in, d_out) * 0.02)  # W_k
        self.gate = nn.Linear(d_in, n_experts, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_in]`` text vectors -> ``[..., d_out]``."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.d_in)
        gates = torch.softmax(self.gate(x), dim=-1)  # [N, K]
        w = self.weight.permute(1, 0, 2).reshape(self.d_in, -1)  # [d_in, K * D]
        experts = (self.dropout(x) @ w).view(-1, self.n_experts, self.d_out)  # x W_k
        shift = torch.einsum("kd,kde->ke", self.bias, self.weight)  # b_k W_k [K, D]
        out = torch.einsum("nk,nke->ne", gates, experts - shift[None])
        return out.reshape(*lead, self.d_out)


class _Rows(torch.autograd.Function):
    """``x[index]`` whose backward sums the gradient rows with ``index_add_`` (deterministic on
    CPU, unlike the multi-threaded accumulation behind plain indexing)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(index)
        ctx.n_rows = x.shape[0]
        return x[index]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        (index,) = ctx.saved_tensors
        flat = grad.reshape(index.numel(), *grad.shape[index.dim():])
        out = grad.new_zeros((ctx.n_rows, *grad.shape[index.dim():]))
        return out.index_add_(0, index.reshape(-1), flat), None


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` (``x [n, ...]``, ``index`` any shape of row ids) with a run-to-run
    deterministic backward on CPU: repeated rows' gradients are summed by ``index_add_``."""
    return _Rows.apply(x, index)
