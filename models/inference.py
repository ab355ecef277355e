"""Model inference for ``OFMClassifier``: PyTorch, ONNX Runtime and its int8 graph (no workspace,
no database).

Images are uint8 RGB arrays ``(N, 45, 45, 3)``. Every entry returns the same pair, class
probabilities ``(N, K)`` and penultimate-layer embeddings ``(N, D)``, whichever runtime computes
them, so scoring, evaluation and detection pick a runtime without changing their code.
Training (:mod:`models.training`) uses ``to_tensor`` and ``predict`` from here for its batches
and its validation epochs.

- ``predict(model, images, *, batch_size) -> (probs, embeddings)`` (PyTorch)
- ``OnnxPredictor(model, *, int8_calibration=None)``: the same contract in ONNX Runtime
  (CUDA provider when present, optionally int8, :func:`quantize_int8`)
- ``default_device()``, ``onnx_providers()``: where each runtime would run here
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from annotator.core.errors import InputError
from models.onnx_export import onnx_bytes, probabilities
from models.ofm import EMBEDDING_DIM, INPUT_SIZE

__all__ = ["to_tensor", "default_device", "predict", "OnnxPredictor", "onnx_providers",
           "quantize_int8"]

# --- tensors ---------------------------------------------------------------------------------


def to_tensor(
    images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", *,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in [0, 1], one vectorised op.

    ``channels_last`` keeps the NHWC memory order (faster convolutions for inference on CPU).
    """
    t = torch.as_tensor(images).to(device, non_blocking=True)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {tuple(t.shape)}")
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def default_device() -> torch.device:
    """Where PyTorch runs here: the CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- inference --------------------------------------------------------------------------------


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and penultimate-layer embeddings.

    Parameters
    ----------
    images : uint8 (N, 45, 45, 3) RGB

    Returns
    -------
    probs : float32 (N, K)
    embeddings : float32 (N, D)
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(device)
    n = len(images)
    k = model.fc_out.out_features
    probs = np.empty((n, k), dtype=np.float32)
    emb = np.empty((n, model.fc_out.in_features), dtype=np.float32)
    for start in range(0, n, batch_size):
        xb = to_tensor(np.ascontiguousarray(images[start: start + batch_size]), device,
                       channels_last=device.type == "cpu")
        logits, e = model(xb, return_embedding=True)
        probs[start: start + len(xb)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        emb[start: start + len(xb)] = e.float().cpu().numpy()
    return probs, emb


def onnx_providers() -> list[str]:
    """ONNX Runtime execution providers to use: CUDA first when this onnxruntime build has it
    (``onnxruntime-gpu``), then the CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def quantize_int8(onnx_fp32: bytes, calibration: np.ndarray) -> bytes:
    """Static int8 quantization of an exported classifier (``OnnxPredictor``'s graph).

    Weights int8 per output channel, activations uint8 with ranges calibrated on
    ``calibration`` uint8 ``(N, 45, 45, 3)`` crops (a few hundred suffice). Per-channel weights
    matter: per-tensor ones cost Neuralet's weights 0.02 balanced accuracy on the faces,
    per-channel 0.001.
    """
    import tempfile

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise InputError("int8 quantization needs calibration crops")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(_as_input(calibration[i: i + 64])
                                for i in range(0, len(calibration), 64))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(onnx_fp32)
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(out), _Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        # 7-bit weights: x86 CPUs without VNNI (AVX2 only) multiply u8 x s8
                        # with VPMADDUBSW, which saturates at full range (measured: Neuralet's
                        # weights +0.094 balanced accuracy off fp32 on such a CPU, +0.003 with it)
                        reduce_range=True)
        return out.read_bytes()


def _as_input(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in [0, 1] for the ONNX graph."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2),
                                dtype=np.float32) / np.float32(255.0)


class OnnxPredictor:
    """``predict`` through ONNX Runtime: the same outputs as the PyTorch model (probabilities
    and embeddings), about twice the crops per second on a CPU here.

    Parameters
    ----------
    threads : intra-op threads (default: torch's count)
    providers : ONNX Runtime providers (default: :func:`onnx_providers`, CUDA when present)
    int8_calibration : uint8 (N, 45, 45, 3), optional
        Quantize the graph to int8 (:func:`quantize_int8`) calibrated on these crops.
    """

    def __init__(self, model: torch.nn.Module, *, threads: int | None = None,
                 providers: list[str] | None = None, int8_calibration: np.ndarray | None = None):
        import onnxruntime as ort

        net = probabilities(copy.deepcopy(model).cpu().eval(), with_embedding=True)
        blob = onnx_bytes(net, torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE), inputs=["x"],
                          outputs=["probs", "emb"])
        self.quantized = int8_calibration is not None
        if self.quantized:
            blob = quantize_int8(blob, int8_calibration)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs
        self.session = ort.InferenceSession(blob, so, providers=providers or onnx_providers())
        self.provider = self.session.get_providers()[0]

    def __call__(self, images: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as ``predict``: uint8 (N, 45, 45, 3) -> (probs (N, K), emb (N, D))."""
        probs, embs = [], []
        for start in range(0, len(images), batch_size):
            p, e = self.session.run(None, {"x": _as_input(images[start: start + batch_size])})
            probs.append(p)
            embs.append(e)
        if not probs:
            k = self.session.get_outputs()[0].shape[1]
            return np.zeros((0, k), np.float32), np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.concatenate(probs), np.concatenate(embs)
