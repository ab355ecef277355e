"""A retrain as the Models page runs it (a background job), on 2,000 real face crops: its
progress moves inside an epoch; a dataset version links the stored crops instead of copying
them (``du``: < 5% of the crops' bytes); a cancelled retrain adds nothing."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from annotator.data import db
from annotator.service import jobs
from annotator.service.workspace import Workspace
from pipelines import build_dataset, import_folder, retrain
from pipelines.cli import runner

N_EACH = 1000  # 2,000 crops


def du(path: Path) -> int:
    """Bytes on disk, each hard-linked file counted once (what `du` says)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def du_all(paths) -> int:
    """One `du` over several folders: a file linked from two of them counts once."""
    out = subprocess.run(["du", "-s", "-c", "--block-size=1", *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


@pytest.fixture(scope="module")
def faces_ws(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("retrain_ux")
    folder = tmp / "faces"
    for label in ("mask", "no_mask"):  # real crops, as JPEG files: symlinks to shared/
        (folder / label).mkdir(parents=True)
        for f in sorted((shared_data / "faces" / label).glob("*.jpg"))[:N_EACH]:
            (folder / label / f.name).symlink_to(f)
    ws = Workspace.init(tmp / "ws")
    import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=True))
    yield ws
    ws.dispose()


def _run_and_watch(ws, opts, *, until=None, timeout=600):
    """Start a retrain job as the page does; sample its row until it ends (or ``until(row)``
    says stop, then cancel it). Returns (final job, [(progress, message), ...])."""
    job_id = runner.submit(ws, "retrain", opts, started_by="test")
    seen, end = [], time.monotonic() + timeout
    while True:
        job = jobs.get(ws, job_id)
        if job.active and job.message and (not seen or seen[-1] != (job.progress, job.message)):
            seen.append((job.progress, job.message))
        if not job.active:
            return job, seen
        if until is not None and until(job):
            jobs.cancel(ws, job_id)
            return jobs.wait(ws, job_id, timeout=120), seen
        assert time.monotonic() < end, (job.status, job.message)
        time.sleep(0.1)


def test_progress_moves_inside_the_one_epoch(faces_ws):
    ws = faces_ws
    first, seen = _run_and_watch(ws, retrain.RetrainOptions(epochs=1, init="none", force=True))
    assert first.status == "done", (first.message, jobs.log_tail(first))
    inside = [(p, m) for p, m in seen if "epoch 1/1 · batch" in m]
    assert len({p for p, _ in inside}) >= 2, seen  # it moved while the only epoch ran
    assert all(p < 1.0 for p, _ in inside)
    assert not any(m.startswith("dataset") for p, m in seen if p > inside[0][0]), seen
    assert first.result["train"]["n_train"] + first.result["train"]["n_val"] == 2 * N_EACH


def test_a_dataset_version_links_the_crops_instead_of_copying_them(faces_ws):
    """What a retrain writes besides its model file (~1.2 MB whatever the data) is its dataset
    version: a manifest and hard links, < 5% of the crops' bytes (the crops are JPEG files,
    which used to be re-encoded as PNG copies)."""
    ws = faces_ws
    crops = du(ws.crops_dir)
    data = (ws.crops_dir, ws.datasets_dir, ws.root / "cache")
    build_dataset.run(ws, build_dataset.BuildOptions())  # fills the tensor cache, once
    before = du_all(data)
    again = build_dataset.run(ws, build_dataset.BuildOptions())
    added = du_all(data) - before
    assert added < 0.05 * crops, (added, crops)
    linked = list(Path(again.path).rglob("*.jpg"))
    assert len(linked) == 2 * N_EACH and all(p.stat().st_nlink >= 2 for p in linked)


def test_a_cancelled_retrain_leaves_nothing(faces_ws):
    ws = faces_ws
    with ws.read_session() as s:
        datasets = [d.name for d in db.list_datasets(s)]
    before = {p.name for p in ws.datasets_dir.iterdir()}, {p.name for p in ws.models_dir.iterdir()}
    size = du(ws.datasets_dir) + du(ws.models_dir)
    job, _ = _run_and_watch(ws, retrain.RetrainOptions(epochs=50, init="none", force=True),
                            until=lambda j: "epoch" in (j.message or ""))
    assert job.status == "cancelled", job.message
    with ws.read_session() as s:
        assert [d.name for d in db.list_datasets(s)] == datasets  # no dataset row
    after = {p.name for p in ws.datasets_dir.iterdir()}, {p.name for p in ws.models_dir.iterdir()}
    assert after == before and du(ws.datasets_dir) + du(ws.models_dir) == size
