"""Building blocks shared by the encoder, the RSSM and the decoders."""

from __future__ import annotations

from torch import nn


def activation_layer(name: str) -> nn.Module:
    """config model.activation -> the layer: 'relu' (the paper's) or 'elu'."""
    return {"relu": nn.ReLU, "elu": nn.ELU}[name]()


def mlp(in_size: int, hidden_size: int, out_size: int, activation: str) -> nn.Sequential:
    """Two hidden layers: Linear, act, Linear, act, Linear: (..., in_size) -> (..., out_size)."""
    return nn.Sequential(
        nn.Linear(in_size, hidden_size), activation_layer(activation),
        nn.Linear(hidden_size, hidden_size), activation_layer(activation),
        nn.Linear(hidden_size, out_size),
    )
