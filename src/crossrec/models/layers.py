"""Shared neural blocks: an MLP and a causal Transformer over item sequences (SASRec-style)."""

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
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
        # a fully padded row would make attention NaN: let padding attend to itself only
        pad = padding.clone()
        pad[:, -1] = False
        h = self.layers(h, mask=causal, src_key_padding_mask=pad)
        return self.output_norm(h).masked_fill(padding[..., None], 0.0)

    def last(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` the state at the most recent position (the user representation)."""
        return self.forward(x, padding)[:, -1]
