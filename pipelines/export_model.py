"""Job: export a model version for edge deployment (ONNX or TorchScript).

The exported graph takes what Neuralet's Keras model took, float32 ``(N, 45, 45, 3)`` RGB in
[0, 1], and returns class probabilities ``(N, K)`` (softmax included), so it drops into their
edge code. The class names travel inside the file (ONNX metadata ``classes``; TorchScript extra
file ``classes.json``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.files import atomic_file, output_path
from annotator.service.workspace import Workspace
from pipelines.common import registry

FORMATS = ("onnx", "torchscript")


@dataclass(kw_only=True)
class ExportOptions:
    version: str
    format: str = "onnx"
    out: Path
    opset: int = 17
    force: bool = False  # replace an existing file (never one of the workspace's own)


@dataclass
class ExportReport:
    version: str
    format: str
    out: str
    classes: list
    bytes: int


def run(ws: Workspace, opts: ExportOptions) -> ExportReport:
    import torch

    from models.onnx_export import onnx_bytes, probabilities
    from models.ofm import INPUT_SIZE

    if opts.format not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {opts.format!r}")
    out = output_path(Path(opts.out), owned=ws.owns, force=opts.force)
    model, mv = registry.load(ws, opts.version)
    net = probabilities(model, nhwc=True)
    example = torch.rand(2, INPUT_SIZE, INPUT_SIZE, 3)
    classes = list(model.classes)
    if opts.format == "onnx":
        import onnx

        proto = onnx.load_from_string(onnx_bytes(net, example, inputs=["image"], outputs=["probs"],
                                                 opset=opts.opset))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "classes", json.dumps(classes)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "model_version", mv.name
        with atomic_file(out) as tmp:
            onnx.save(proto, str(tmp))
    else:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated upstream but still what many edge runtimes load.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(net, example)
            with atomic_file(out) as tmp:
                torch.jit.save(traced, str(tmp),
                               _extra_files={"classes.json": json.dumps(classes)})
    return ExportReport(mv.name, opts.format, str(out), classes, out.stat().st_size)
