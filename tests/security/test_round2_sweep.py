"""Second round, bad values (items 8 and 13): every command given the values the probe found
gives one line, a non-zero exit, no traceback, and changes nothing stored. Plus the config
values of item 8 and ``[limits] max_image_pixels`` where frames are decoded."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotator.core.config import parse_config
from annotator.core.errors import WorkspaceError
from annotator.service.workspace import Workspace
from pipelines.cli import app
from tests.conftest import write_image_folder


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    import torch
    from sqlalchemy import update

    from annotator.data import db
    from models.ofm import OFMClassifier
    from pipelines import import_folder
    from pipelines.common import registry

    root = tmp_path_factory.mktemp("sweep")
    ws = Workspace.init(root / "ws")
    pool = write_image_folder(root / "pool", {"mask": 4, "no_mask": 4})
    import_folder.run(ws, import_folder.ImportOptions(folder=pool, labeled=True))
    torch.manual_seed(0)
    registry.register(ws, OFMClassifier(ws.config.labels), metrics={"source": "test"},
                      card="# test", name="v001")
    with ws.session() as s:
        s.execute(update(db.ModelVersion).values(active=True))
    ws.dispose()
    img = root / "room.png"
    cv2.imwrite(str(img), np.full((120, 160, 3), 90, np.uint8))
    (root / "a-file").write_text("a file, not a folder")
    return {"ws": root / "ws", "img": img, "pool": pool, "file": root / "a-file", "root": root}


def snapshot(ws: Path) -> dict:
    """Every stored file of the workspace (the SQLite journal aside) with its content hash."""
    import hashlib

    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file()
            and not p.name.endswith(("-wal", "-shm"))}


P = "{ws}"
SWEEP = [  # (item, arguments, words the one line must hold)
    (8, ["train", "--epochs", "0", "-p", P], "--epochs must be an integer between 1"),
    (8, ["train", "--batch-size", "0", "-p", P], "--batch-size must be an integer between 2"),
    (8, ["train", "--lr", "0", "-p", P], "--lr must be a number between"),
    (8, ["train", "--lr", "inf", "-p", P], "--lr must be a finite number"),
    (13, ["train", "--lr", "nan", "-p", P], "--lr must be a finite number"),
    (8, ["retrain", "--epochs", "0", "-p", P], "--epochs must be an integer"),
    (8, ["extract", "{img}", "--fps", "nan", "-p", P], "--fps must be a finite number"),
    (8, ["extract", "{img}", "--fps", "inf", "-p", P], "--fps must be a finite number"),
    (8, ["extract", "{img}", "--min-size", "nan", "-p", P], "--min-size must be a finite"),
    (8, ["extract", "{img}", "--min-sharpness", "nan", "-p", P], "--min-sharpness must be"),
    (8, ["extract", "{img}", "--max-seconds", "inf", "-p", P], "--max-seconds must be"),
    (8, ["detect", "{img}", "--fps", "nan", "-p", P], "--fps must be a finite number"),
    (8, ["detect", "{img}", "--fps", "inf", "-p", P], "--fps must be a finite number"),
    (8, ["detect", "{img}", "--min-score", "nan", "-p", P], "--min-prob must be"),
    (8, ["simulate", "--pool", "{pool}", "--eval", "{pool}", "--out", "{root}/sim",
         "--lr", "nan"], "--lr must be a finite number"),
    (8, ["simulate", "--pool", "{pool}", "--eval", "{pool}", "--out", "{root}/sim",
         "--batch-size", "0"], "--batch-size must be an integer"),
    (13, ["init", "-p", "{file}/ws"], "is in the way"),
    (13, ["init", "-p", "/proc/annotator-ws"], "cannot create a workspace"),
    (13, ["detect", "{img}", "--out", "/proc/annotator-x", "-p", P], "cannot write --out"),
    (13, ["evaluate", "--plots", "{file}/plots", "-p", P], "is a file"),
    (13, ["simulate", "--pool", "{pool}", "--eval", "{pool}", "--out", "{file}"],
     "is not a folder"),
    (13, ["app", "--port", "-1", "-p", P], "--port must be an integer between 1 and 65535"),
    (13, ["app", "--port", "70000", "-p", P], "--port must be an integer between 1 and 65535"),
    (13, ["export-model", "active", "{ws}/annotator.data.db", "--force", "-p", P],
     "part of the workspace"),
]


@pytest.mark.parametrize("item, args, words", SWEEP,
                         ids=[f"item{i:02d}-{' '.join(a[:3])}" for i, a, _ in SWEEP])
def test_item08_item13_sweep_one_line_no_traceback_nothing_stored(place, item, args, words):
    before = snapshot(place["ws"])
    r = cli(*[a.format(**{k: str(v) for k, v in place.items()}) for a in args])
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert words in lines[0], lines[0]
    assert snapshot(place["ws"]) == before
    assert not (place["root"] / "sim").exists()


# --- item 8: config values --------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    (f"[sampling]\nlease_seconds = {2**63 - 1}", "sampling.lease_seconds must be an integer "
                                                 "between 10 and 2592000"),
    ("[sampling]\nhybrid_pool = 99999999999", "sampling.hybrid_pool must be an integer between"),
    ("[training]\nseed = 99999999999", "training.seed must be an integer between 0"),
    ("[extract]\nmin_sharpness = inf", "extract.min_sharpness must be a finite number"),
    ('[auth]\ntrusted_proxies = ["nginx"]', "auth.trusted_proxies must be a list of IP"),
    ('[auth]\ntrusted_proxies = "127.0.0.1"', "auth.trusted_proxies must be a list of IP"),
])
def test_item08_config_values_are_bounded(tmp_path, text, message):
    import tomllib

    with pytest.raises(WorkspaceError, match=message):
        parse_config(tomllib.loads(text))
    ws = Workspace.init(tmp_path / "ws")
    ws.dispose()
    (tmp_path / "ws" / "config.toml").write_text(text + "\n")
    r = cli("stats", "--project", tmp_path / "ws")
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1, r.output
    assert message.split(" must")[0] in r.output


def test_item08_max_image_pixels_is_honoured_where_frames_are_decoded(tmp_path, place):
    from annotator.media import video
    from annotator.service.crop_cards import Card, frame_context

    ws = Workspace.init(tmp_path / "ws")
    ws.dispose()
    cfg = (tmp_path / "ws" / "config.toml")
    cfg.write_text(cfg.read_text().replace("max_image_pixels = 40000000",
                                           "max_image_pixels = 10000"))
    img = place["img"]  # 160 x 120 = 19,200 pixels
    r = cli("extract", img, "-p", tmp_path / "ws", "--json")
    assert r.exit_code == 1 and "too large" in r.output, r.output
    assert cli("stats", "-p", tmp_path / "ws", "--json").stdout.count('"sources": 0') == 1
    specs, _ = video.expand_sources([str(img)], max_pixels=10_000)
    with pytest.raises(Exception, match="too large"):
        video.probe(specs[0])
    card = Card(crop_id=1, image=b"", mime="image/png", width=10, height=10, sampling=None,
                source_uri=str(img), source_kind="image", frame_index=0,
                box=(10.0, 10.0, 20.0, 20.0))
    assert frame_context(card, max_pixels=10_000) is None  # the context view: not decoded
    assert frame_context(card) is not None  # under the default limit it is shown
