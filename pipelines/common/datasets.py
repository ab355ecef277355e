"""A frozen dataset version as the jobs read it: its manifest and its splits as arrays.

Written by the ``build_dataset`` job (``datasets/NAME/manifest.csv.gz`` plus hard links; an older version's plain ``manifest.csv`` reads the same); read by
training, evaluation, scoring's int8 check, promotion's gate, exports and imported predictions.
Tensors come from the workspace's tensor cache (``annotator.media.cache``), keyed by sha256.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.core.dataset import VAL
from annotator.core.errors import InputError
from annotator.core.files import open_text
from annotator.data import db
from annotator.media import cache as tensor_cache
from annotator.service.workspace import Workspace


@dataclass
class DatasetArrays:
    """A dataset split as arrays: ``x`` uint8 (N, 45, 45, 3), ``y`` int (N,), ``crop_ids`` (N,).

    ``x`` is an ndarray, or with ``load_split(..., lazy=True)`` a ``cache.CachedArray`` that
    gathers rows from the memory-mapped tensor cache when indexed.
    """

    x: np.ndarray
    y: np.ndarray
    crop_ids: np.ndarray
    classes: list[str]


def read_manifest(ws: Workspace, name: str | None) -> tuple[db.Dataset, list[dict]]:
    """``(dataset row, manifest rows)`` of dataset ``name`` (None or ``"latest"``: the latest)."""
    with ws.read_session() as s:
        ds = db.get_dataset(s, name) if name not in (None, "latest") else db.latest_dataset(s)
    if ds is None:
        raise InputError(
            "no dataset yet: run `annotator build-dataset` first" if name in (None, "latest")
            else f"no dataset {name!r}"
        )
    return ds, manifest_rows(ws.root / ds.manifest)


def manifest_rows(path: Path) -> list[dict]:
    """The rows of one manifest (``.csv.gz``, or an older version's plain ``.csv``); a missing
    or damaged one is one line naming it (a truncated gzip raises EOFError, which the CLI
    would report as a bare "Aborted.")."""
    if not path.is_file():
        raise InputError(f"dataset manifest {path} is missing")
    try:
        with open_text(path) as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"dataset manifest {path} is damaged ({type(exc).__name__}): "
                         "restore it from a backup or delete that dataset version") from None
    if rows and not {"crop_id", "split"} <= set(rows[0]):
        raise InputError(f"dataset manifest {path} has no crop_id/split columns")
    return rows


def load_split(ws: Workspace, name: str | None, split: str | None,
               classes: list[str] | None = None, *, lazy: bool = False) -> DatasetArrays:
    """Images and labels of one split (``train``, ``val`` or None for both) of a dataset.

    Tensors come from the workspace's tensor cache (a miss is decoded from the dataset's own
    file and added). ``lazy``: ``x`` stays in the memory-mapped cache (a ``CachedArray``)
    instead of being copied into memory, for training on large datasets.
    """
    ds, rows = read_manifest(ws, name)
    classes = classes or list((ds.counts or {}).get("classes") or ws.config.labels)
    keep = [i for i, r in enumerate(rows) if split is None or r["split"] == split]
    unknown = sorted({rows[i]["label"] for i in keep} - set(classes))
    if unknown:
        raise InputError(f"dataset {ds.name} has labels {unknown} that are not classes {classes}")
    items = [(rows[i]["sha256"] or _file_sha256(ws.root / ds.path / rows[i]["file"]),
              ws.root / ds.path / rows[i]["file"]) for i in keep]
    x = tensor_cache.of(ws).view(items) if lazy and items else tensors(ws, items)
    y = np.array([classes.index(rows[i]["label"]) for i in keep], dtype=np.int64)
    ids = np.array([int(rows[i]["crop_id"]) for i in keep], dtype=np.int64)
    return DatasetArrays(x, y, ids, classes)


def previous_splits(manifests: list[Path]) -> dict[int, str]:
    """crop id -> split in earlier versions (validation wins if a crop was ever there)."""
    out: dict[int, str] = {}
    for m in manifests:
        if not m.is_file():
            continue
        for row in manifest_rows(m):
            cid = int(row["crop_id"])
            if out.get(cid) != VAL:
                out[cid] = row["split"]
    return out


def tensors(ws: Workspace, items: list[tuple[str, Path]]) -> np.ndarray:
    """uint8 (N, 45, 45, 3) of ``(sha256, file)`` pairs through the cache; InputError when a
    file is neither cached nor readable."""
    x, ok = tensor_cache.of(ws).load(items)
    if not ok.all():
        bad = [str(p) for (_, p), good in zip(items, ok) if not good]
        raise InputError(f"{len(bad)} unreadable image(s), e.g. {', '.join(bad[:3])}")
    return x


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        raise InputError(f"{path} is missing") from None
