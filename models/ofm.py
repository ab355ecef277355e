"""OFMClassifier: Neuralet's small face-mask CNN, layer for layer, in PyTorch.

Input: float32 ``(N, 3, 45, 45)`` RGB scaled to [0, 1]. Output: logits ``(N, K)`` for the
workspace's classes (K = 2 for mask / no_mask). 296,384 trainable parameters for K = 2
(296,832 counting BatchNorm running statistics, as Keras does).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["OFMClassifier", "INPUT_SIZE", "EMBEDDING_DIM", "count_parameters"]

INPUT_SIZE = 45
EMBEDDING_DIM = 10  # width of the penultimate Dense layer


def _block(c_in: int, c_out: int, *, global_pool: bool) -> nn.Sequential:
    """Conv+ReLU, Conv (linear), BatchNorm (Keras eps 1e-3, momentum 0.99), ReLU, pool, Dropout."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1) if global_pool else nn.MaxPool2d(2),
        nn.Dropout(0.2),
    )


class OFMClassifier(nn.Module):
    """Neuralet's OFMClassifier.

    Parameters
    ----------
    classes : sequence of str
        Class names in output order (the workspace's ``config.labels``).
    """

    def __init__(self, classes: Sequence[str] = ("mask", "no_mask")):
        super().__init__()
        classes = [str(c) for c in classes]
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be 2+ distinct names, got {classes!r}")
        self.classes = classes
        self.features = nn.Sequential(
            _block(3, 32, global_pool=False),
            _block(32, 64, global_pool=False),
            _block(64, 128, global_pool=True),
            nn.Flatten(),
        )
        self.fc = nn.Linear(128, 64)  # Keras "dense"
        self.fc_1 = nn.Linear(64, EMBEDDING_DIM)
        self.fc_out = nn.Linear(EMBEDDING_DIM, len(classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations ``(N, 10)`` (input of the output layer)."""
        h = torch.relu(self.fc(self.features(x)))
        return torch.relu(self.fc_1(h))

    def forward(self, x: torch.Tensor, *, return_embedding: bool = False):
        """Logits ``(N, K)``; with ``return_embedding`` also the embedding ``(N, 10)``."""
        emb = self.embed(x)
        logits = self.fc_out(emb)
        return (logits, emb) if return_embedding else logits


def count_parameters(model: nn.Module, *, keras_way: bool = False) -> int:
    """Trainable parameters; ``keras_way`` adds BatchNorm moving mean and variance."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if keras_way:
        n += sum(
            m.running_mean.numel() + m.running_var.numel()
            for m in model.modules()
            if isinstance(m, nn.BatchNorm2d)
        )
    return n
