"""The tensor cache in a workspace: kill -9 while filling, invalidation when crops go, the same
scores as decoding files, concurrent readers and a writer, training from the cache, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import select

from annotator.data import db, model_reports, model_versions
from annotator.media import cache, images
from annotator.core.failpoints import ENV as FAILPOINT
from annotator.service.workspace import Workspace
from models.ofm import OFMClassifier
from pipelines import build_dataset, import_folder, score, train
from pipelines.common.datasets import load_split
from pipelines.common import registry

REPO = Path(__file__).resolve().parents[2]
ANNOTATOR = str(Path(sys.executable).with_name("annotator"))
N = 40


def photo_folder(root: Path, n: int, *, seed: int = 0, label: str | None = None) -> Path:
    """``n`` distinct pictures of assorted sizes, a third of them JPEG, so that reading them
    means decoding and an area resize to 45x45."""
    rng = np.random.default_rng(seed)
    folder = root / label if label else root
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        side = int(rng.integers(30, 90))
        img = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (5, 5), 0)
        img = (img * rng.uniform(0.2, 1.0, 3)).astype(np.uint8)  # a colour cast of its own
        cv2.imwrite(str(folder / f"p{i:03d}.{'jpg' if i % 3 == 0 else 'png'}"), img)
    return root


def new_workspace(tmp_path: Path, n: int = N) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    import_folder.run(ws, import_folder.ImportOptions(folder=photo_folder(tmp_path / "in", n)))
    torch.manual_seed(0)
    model = OFMClassifier(ws.config.labels)
    with torch.no_grad():  # small BatchNorm variances: outputs that differ from crop to crop
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.zero_()
            bn.running_var.fill_(1e-3)
    for name in ("files", "cached", "fill"):
        registry.register(ws, model, metrics={"source": "test"}, card="# test", name=name)
    return ws


def crops(ws: Workspace) -> list[tuple[int, str, str]]:
    with ws.read_session() as s:
        return [(int(i), h, p) for i, h, p in
                s.execute(select(db.Crop.id, db.Crop.sha256, db.Crop.path).order_by(db.Crop.id))]


def decoded(ws: Workspace, rows) -> np.ndarray:
    return images.load_images([ws.store.path(p) for _, _, p in rows])


def predictions(ws: Workspace, version: str, ids):
    with ws.read_session() as s:
        vid = model_versions.get_model_version(s, version).id
        got, probs, emb = model_reports.prediction_arrays(s, vid, ids)
    order = np.argsort(got)
    return got[order], probs[order], emb[order]


def run_py(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_score_killed_mid_fill_then_rerun_scores_as_files_do(tmp_path):
    ws = new_workspace(tmp_path)
    env = {**os.environ, FAILPOINT: "cache_before_index", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([ANNOTATOR, "score", "--model", "fill", "--project", str(ws.root),
                           "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    c = cache.of(ws)
    assert len(c) == 0  # the records were written, their index entries never: nothing served
    assert next(c.dir.glob("data.*")).stat().st_size == N * 45 * 45 * 3
    with ws.read_session() as s:
        assert db.count(s, db.Prediction) == 0
    filled = score.run(ws, score.ScoreOptions(model="fill"))
    assert (filled.scored, filled.cache_filled, filled.cache_hits) == (N, N, 0)
    cached = score.run(ws, score.ScoreOptions(model="cached"))
    assert (cached.scored, cached.cache_hits, cached.cache_filled) == (N, N, 0)
    files = score.run(ws, score.ScoreOptions(model="files", cache=False))
    assert (files.scored, files.cache_hits) == (N, 0)
    ids = [cid for cid, _, _ in crops(ws)]
    a, pa, ea = predictions(ws, "cached", ids)
    b, pb, eb = predictions(ws, "files", ids)
    assert a.tolist() == b.tolist() == ids
    np.testing.assert_allclose(pa, pb, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ea, eb, atol=1e-6, rtol=0)
    assert np.ptp(pa[:, 0]) > 0.01  # the model tells the crops apart: the check could fail
    assert c.status()["dead_records"] == 0  # the orphaned records were overwritten
    ws.dispose()


@pytest.mark.parametrize("point", ["cache_mid_data", "cache_before_index", "cache_mid_index"])
def test_kill_9_during_filling_never_serves_a_corrupt_tensor(tmp_path, point):
    ws = new_workspace(tmp_path)
    rows = crops(ws)
    proc = run_py(f"""
        import os
        from annotator.media import cache
        from annotator.service.workspace import Workspace
        ws = Workspace.open({str(ws.root)!r})
        items = [(h, ws.store.path(p)) for _, h, p in {[(i, h, p) for i, h, p in rows]!r}]
        c = cache.of(ws)
        c.load(items[:10])                   # one fill commits
        os.environ[{FAILPOINT!r}] = {point!r}
        c.load(items[10:])                   # SIGKILL inside this one
        print("not killed")
    """)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    c = cache.of(ws)
    index = next(c.dir.glob("index.*"))
    if point == "cache_mid_index":
        assert index.stat().st_size % 64 != 0  # a torn entry really is on disk
    truth = decoded(ws, rows)
    x, ok = c.get([h for _, h, _ in rows])
    assert ok.sum() == len(c) and ok[:10].all()
    if point != "cache_mid_index":
        assert len(c) == 10
    np.testing.assert_array_equal(x[ok], truth[ok])  # whatever is served is the real tensor
    x, ok = c.load([(h, ws.store.path(p)) for _, h, p in rows])  # a re-fill completes
    assert ok.all() and len(c) == N
    np.testing.assert_array_equal(x, truth)
    fresh = cache.of(ws)
    x, ok = fresh.get([h for _, h, _ in rows])
    assert ok.all() and fresh.repaired == 0
    np.testing.assert_array_equal(x, truth)
    assert index.stat().st_size % 64 == 0
    ws.dispose()


def _remove_crop(ws: Workspace, crop_id: int) -> str:
    with ws.session() as s:
        crop = s.get(db.Crop, crop_id)
        sha, path = crop.sha256, crop.path
        s.delete(crop)
    ws.store.remove(path)
    return sha


def test_removed_crops_are_invalidated_and_rebuild_drops_unused_ones(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    ws = new_workspace(tmp_path)
    rows = crops(ws)
    run = lambda *a: CliRunner().invoke(app, [*map(str, a), "--project", str(ws.root)])  # noqa: E731
    r = run("cache", "rebuild", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["filled"] == N
    gone = _remove_crop(ws, rows[0][0])
    assert cache.forget(ws, [gone]) == 1  # what extract --redo calls for files it removed
    c = cache.of(ws)
    assert gone not in c and len(c) == N - 1
    assert not c.get([gone])[1].any()
    st = json.loads(run("stats", "--json").stdout)["cache"]
    assert (st["entries"], st["missing"], st["cached_crops"]) == (N - 1, 0, N - 1)
    unused = _remove_crop(ws, rows[1][0])  # removed without telling the cache
    st = json.loads(run("cache", "status", "--json").stdout)
    assert (st["entries"], st["unused_entries"], st["dead_records"]) == (N - 1, 1, 1)
    photo_folder(tmp_path / "more", 5, seed=9)
    import_folder.run(ws, import_folder.ImportOptions(folder=tmp_path / "more"))
    rep = json.loads(run("cache", "rebuild", "--json").stdout)
    assert (rep["kept"], rep["dropped_unused"], rep["dropped_damaged"], rep["filled"]) == (N - 2, 1, 0, 5)
    assert rep["reclaimed_bytes"] >= 2 * 45 * 45 * 3
    st = json.loads(run("cache", "status", "--json").stdout)
    assert (st["entries"], st["missing"], st["dead_records"], st["hit_share"]) == (N + 3, 0, 0, 1.0)
    assert unused not in cache.of(ws)
    rest = crops(ws)
    x, ok = cache.of(ws).get([h for _, h, _ in rest])
    assert ok.all()
    np.testing.assert_array_equal(x, decoded(ws, rest))
    ws.dispose()


def test_readers_stay_consistent_while_another_process_writes_and_rebuilds(tmp_path):
    root = tmp_path / "cache"
    n, chunk = 3000, 100
    # The writer starts when the reader is ready (a line on stdin) and pauses between chunks, so
    # the reads overlap the writes even when the reader's set-up is slow (a busy CI machine).
    code = f"""
        import hashlib, sys, time, numpy as np
        from annotator.media.cache import TensorCache
        def sha(i): return hashlib.sha256(b"%d" % i).hexdigest()
        def tensor(i): return np.random.default_rng(i).integers(0, 256, (45, 45, 3), dtype=np.uint8)
        c = TensorCache({str(root)!r})
        sys.stdin.readline()
        for lo in range(0, {n}, {chunk}):
            c.put([sha(i) for i in range(lo, lo + {chunk})], np.stack([tensor(i) for i in range(lo, lo + {chunk})]))
            if lo == {n // 2}:
                c.forget([sha(i) for i in range(0, {n // 2}, 2)])
                c.compact()
            time.sleep(0.02)
    """
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE)
    import hashlib

    from annotator.media.cache import TensorCache

    shas = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(n)]
    truth = np.stack([np.random.default_rng(i).integers(0, 256, (45, 45, 3), dtype=np.uint8)
                      for i in range(n)])
    reader, reads, seen = TensorCache(root), 0, 0
    writer.stdin.write(b"go\n")
    writer.stdin.close()
    while writer.poll() is None or reads == 0:
        x, ok = reader.get(shas)
        np.testing.assert_array_equal(x[ok], truth[ok])  # never a torn or foreign tensor
        reads, seen = reads + 1, max(seen, int(ok.sum()))
    assert writer.returncode == 0
    x, ok = reader.get(shas)
    expected = np.ones(n, bool)
    expected[0: n // 2: 2] = False
    assert ok.tolist() == expected.tolist() and reader.repaired == 0
    np.testing.assert_array_equal(x[ok], truth[ok])
    assert reads > 1 and reader.status()["generation"] == 2


def test_training_reads_the_cache_not_the_files(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    folder = tmp_path / "labeled"
    photo_folder(folder, 24, seed=1, label="mask")
    photo_folder(folder, 24, seed=2, label="no_mask")
    import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=True))
    built = build_dataset.run(ws, build_dataset.BuildOptions())
    assert not list(Path(built.path).glob("*.npy"))  # the cache replaces images45.npy
    assert len(cache.of(ws)) == 48
    lazy = load_split(ws, built.name, "train", lazy=True)
    eager = load_split(ws, built.name, "train")
    assert isinstance(lazy.x, cache.CachedArray) and isinstance(eager.x, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy.x), eager.x)
    for f in Path(built.path).rglob("*.png"):  # the dataset's files gone: the cache serves
        f.unlink()
    for _, _, p in crops(ws):
        ws.store.remove(p)
    rep = train.run(ws, train.TrainOptions(epochs=1, init="none", batch_size=8))
    assert rep.n_train == len(lazy.y) and rep.n_val > 0 and rep.history[0]["loss"] > 0
    ws.dispose()


def test_fit_from_the_cache_equals_fit_in_memory(tmp_path):
    from models.training import fit

    x = np.random.default_rng(0).integers(0, 256, (40, 45, 45, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    c = cache.TensorCache(tmp_path)
    c.put([f"{i:064x}" for i in range(40)], x)
    view = c.view([(f"{i:064x}", "unused") for i in range(40)])
    states = []
    for source in (x, view):
        torch.manual_seed(0)
        m = OFMClassifier()
        fit(m, source, y, None, None, epochs=1, batch_size=8, lr=1e-3, seed=3)
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_cli_score_options_and_bad_input(tmp_path):
    ws = new_workspace(tmp_path, 6)
    with ws.session() as s:
        model_versions.activate_model(s, model_versions.get_model_version(s, "fill").id)
    base = [ANNOTATOR, "score", "--project", str(ws.root)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(base + ["--quantize"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "build a dataset" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(base + ["--no-cache", "--json"], env=env, capture_output=True, text=True,
                       timeout=300)
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["scored"] == 6 and rep["cache_hits"] == 0
    assert rep["priorities_set"] == 6 and rep["provider"] == "CPUExecutionProvider"
    assert len(cache.of(ws)) == 0  # --no-cache leaves the cache alone
    r = subprocess.run([ANNOTATOR, "cache", "status", "--project", str(tmp_path / "nowhere")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no workspace" in r.stderr and "Traceback" not in r.stderr
    ws.dispose()
