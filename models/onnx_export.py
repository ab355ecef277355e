"""The classifier as a deployable graph: softmax included, ONNX bytes for ONNX Runtime and edge
runtimes. One wrapper serves both fast CPU scoring and ``annotator export-model``.
"""
from __future__ import annotations

import io
import warnings
from typing import Sequence

import torch

__all__ = ["probabilities", "onnx_bytes"]


class _Probabilities(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, *, nhwc: bool, with_embedding: bool):
        super().__init__()
        self.net, self.nhwc, self.with_embedding = net, nhwc, with_embedding

    def forward(self, x):
        if self.nhwc:  # Neuralet's Keras layout: (N, 45, 45, 3)
            x = x.permute(0, 3, 1, 2)
        logits, emb = self.net(x, return_embedding=True)
        probs = torch.softmax(logits, dim=1)
        return (probs, emb) if self.with_embedding else probs


def probabilities(model: torch.nn.Module, *, nhwc: bool = False,
                  with_embedding: bool = False) -> torch.nn.Module:
    """Wrap the classifier: float input in [0, 1] -> class probabilities (and the embedding).

    ``nhwc`` takes ``(N, H, W, 3)`` as Neuralet's edge code does instead of ``(N, 3, H, W)``.
    """
    return _Probabilities(model, nhwc=nhwc, with_embedding=with_embedding).eval()


def onnx_bytes(module: torch.nn.Module, example: torch.Tensor, *, inputs: Sequence[str],
               outputs: Sequence[str], opset: int = 17) -> bytes:
    """Export ``module`` with a dynamic batch axis (legacy TorchScript-based exporter: no extra
    package)."""
    buf = io.BytesIO()
    axes = {name: {0: "n"} for name in [*inputs, *outputs]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=axes, opset_version=opset,
                          dynamo=False)
    return buf.getvalue()
