"""Job: evaluate a model version on an ImageFolder or a dataset's frozen validation split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.media import images
from annotator.core.errors import InputError
from annotator.core.files import output_path
from annotator.service.workspace import Workspace
from pipelines.common import registry
from pipelines.common.datasets import load_split
from pipelines.common.measuring import evaluate_arrays


@dataclass(kw_only=True)
class EvalOptions:
    model: str | None = None  # version name; None = the active model
    data: Path | None = None  # ImageFolder; None = the dataset's validation split
    dataset: str | None = None  # dataset name (its validation split); default: the model's
    plots: Path | None = None
    batch_size: int = 256
    slices: bool = False  # also per slice (annotator.core.slices), worst first


def run(ws: Workspace, opts: EvalOptions) -> dict:
    """Metrics dict (``annotator.core.metrics.report``) plus ``model``, ``data`` and ``plots``."""
    if opts.plots is not None:  # checked before the work, like every output path
        output_path(Path(opts.plots), owned=ws.owns, force=True, folder=True)
    model, v = registry.load(ws, opts.model)
    classes = list(model.classes)
    if opts.data is not None:
        paths, names = images.read_image_folder(Path(opts.data), classes)
        x = images.load_images(paths)
        y = np.array([classes.index(n) for n in names], dtype=np.int64)
        where = str(opts.data)
    else:
        name = opts.dataset
        if name is None:
            name = registry.dataset_of(ws, v)
            if name is None:
                raise InputError("give --data DIR (an ImageFolder) or build a dataset first")
        arr = load_split(ws, name, "val", classes)
        if not len(arr.y):
            raise InputError(f"dataset {name} has an empty validation split")
        x, y, where = arr.x, arr.y, f"dataset {name} (val)"
    rep, probs = evaluate_arrays(model, x, y, batch_size=opts.batch_size)
    out = {"model": v.name, "data": where, **rep}
    if opts.slices:
        ids = None if opts.data is not None else arr.crop_ids
        out["slices"] = slice_sets(ws, v, classes, y, probs, ids=ids,
                                   paths=paths if opts.data is not None else None)
    if opts.plots is not None:
        from annotator.media.plots import plot_report

        try:
            out["plots"] = [str(p) for p in plot_report(y, probs, classes, Path(opts.plots))]
        except OSError as exc:
            raise InputError(f"cannot write --plots {opts.plots}: {exc.strerror or exc}") from None
    return out


# --- per slice ----------------------------------------------------------------------------------


def slice_sets(ws: Workspace, version, classes: list[str], y, probs, *, ids=None,
               paths=None) -> dict:
    """Per-slice reports (``annotator.core.slices.slice_report``) on the evaluated data and on the
    queue's random-share labels that this version had scored (the unbiased estimate)."""
    from annotator.core import slices
    from annotator.data import slice_store

    if ids is not None:  # dataset crops: stored attributes (filled here if missing)
        slice_store.fill(ws, ids)
        with ws.read_session() as s:
            bands = slice_store.bands_of(s, ids)
    else:  # an ImageFolder: attributes of the files themselves
        rows = []
        for p in paths:
            img = images.read_bgr(p, max_pixels=ws.config.limits.max_image_pixels)
            rows.append({} if img is None else {**slices.attributes(img), "source": "folder"})
        bands = slices.bands(rows)
    out = {"data": _slice_set(bands, y, probs, classes)}
    with ws.read_session() as s:
        q_ids, q_y, q_probs = slice_store.random_share(s, version.id, classes)
    slice_store.fill(ws, q_ids)
    with ws.read_session() as s:
        q_bands = slice_store.bands_of(s, q_ids)
    out["queue"] = _slice_set(q_bands, q_y, q_probs, classes)
    return out


def _slice_set(bands: dict, y, probs, classes: list[str]) -> dict:
    from annotator.core import slices

    if len(y) == 0:
        return {"n": 0, "slices": []}
    return {"n": int(len(y)), "slices": slices.slice_report(bands, y, probs,
                                                             n_classes=len(classes))}


def slice_lines(rep: dict, *, top: int = 10) -> list[str]:
    """The worst slices of an ``evaluate --slices`` report as text lines."""
    lines = []
    for name, title in (("data", rep.get("data", "data")), ("queue", "queue (random share)")):
        part = (rep.get("slices") or {}).get(name) or {}
        if not part.get("n"):
            lines.append(f"{title}: no labeled crops")
            continue
        lines.append(f"worst slices on {title}, {part['n']} crops:")
        lines.append(f"  {'attribute':<10} {'band':<14} {'n':>6} {'error':>7} {'95% interval':>15} "
                     f"{'bal.acc':>7} {'unsure':>6}")
        for r in part["slices"][:top]:
            lines.append(f"  {r['attribute']:<10} {r['band'][:14]:<14} {r['n']:>6} "
                         f"{r['error']:>7.3f} {r['error_low']:>7.3f}-{r['error_high']:<7.3f} "
                         f"{r['balanced_accuracy']:>7.3f} {r['mean_uncertainty']:>6.3f}")
    return lines
