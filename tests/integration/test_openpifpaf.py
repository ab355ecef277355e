"""OpenPifPaf for real, with no download: its C++ decoder on hand-encoded fields, a from-scratch
network on a real video frame, a local checkpoint file, and the offline error message."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.media.detectors import import_openpifpaf, load_detector, people_from_annotations, resolve_checkpoint
from annotator.core.errors import InputError
from annotator.core.geometry import head_box

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_geometry import person_keypoints  # noqa: E402

PEDESTRIANS = "videos/pedestrians_eyelevel_640x360.mp4"


def decode_fields(people, size, *, stride=16):
    """Encode people as CIF/CAF fields (feature-map units) and run OpenPifPaf's C++ decoder.

    cif (17, 5, H, W) = [raw, confidence, x, y, scale]; caf (19, 8, H, W) =
    [raw, confidence, x1, y1, x2, y2, s1, s2]; every keypoint and association is written into the
    3x3 cells around it so the decoder's seeds and connections are found as a network makes them.
    """
    import torch

    openpifpaf = import_openpifpaf()
    cif_meta, caf_meta = openpifpaf.plugins.coco.CocoKp().head_metas[:2]
    cif_meta.head_index, caf_meta.head_index = 0, 1
    cif_meta.base_stride = caf_meta.base_stride = stride
    fw, fh = size[0] // stride + 1, size[1] // stride + 1
    cif = np.zeros((17, 5, fh, fw), np.float32)
    caf = np.zeros((len(caf_meta.skeleton), 8, fh, fw), np.float32)

    def around(x, y):
        for j in range(int(round(y)) - 1, int(round(y)) + 2):
            for i in range(int(round(x)) - 1, int(round(x)) + 2):
                if 0 <= i < fw and 0 <= j < fh:
                    yield j, i

    for kps in people:
        f = kps[:, :2] / stride
        for k in np.nonzero(kps[:, 2] > 0)[0]:
            for j, i in around(*f[k]):
                cif[k, :, j, i] = (1.0, 1.0, f[k, 0], f[k, 1], 1.0)
        for c, (a, b) in enumerate(caf_meta.skeleton):
            a, b = a - 1, b - 1
            if kps[a, 2] > 0 and kps[b, 2] > 0:
                for x, y in (f[a], f[b], (f[a] + f[b]) / 2):
                    for j, i in around(x, y):
                        caf[c, :, j, i] = (1.0, 1.0, *f[a], *f[b], 1.0, 1.0)
    decoder = openpifpaf.decoder.CifCaf([cif_meta], [caf_meta])
    return decoder([torch.from_numpy(cif), torch.from_numpy(caf)])


def test_cpp_decoder_two_people_head_boxes_land_on_the_heads():
    frame = (640, 480)
    truth = [(200.0, 150.0, 48.0), (450.0, 170.0, 40.0)]  # head centre x, y and height
    people_kps = [person_keypoints(cx, cy, h) for cx, cy, h in truth]
    # the second person turned away from one side: no right ear, no right shoulder
    people_kps[1][[4, 6], 2] = 0.0
    anns = decode_fields(people_kps, frame)
    assert len(anns) == 2
    people = people_from_annotations(anns)
    boxes = sorted((head_box(p, frame) for p in people), key=lambda hb: hb.x1)
    for hb, (cx, cy, h) in zip(boxes, truth):
        assert hb.ok, hb.reason
        bx, by = (hb.x1 + hb.x2) / 2, (hb.y1 + hb.y2) / 2
        assert abs(bx - cx) <= 0.1 * h and abs(by - (cy + 0.05 * h)) <= 0.1 * h  # on the head
        assert hb.x1 <= cx - h / 2 and hb.x2 >= cx + h / 2  # the whole head is inside
        assert hb.y1 <= cy - h / 2 and hb.y2 >= cy + h / 2
        assert hb.size == pytest.approx(h, rel=0.15)
    # decoded keypoints are where they were encoded (feature-map round trip is exact)
    for p in people:
        ref = min(people_kps, key=lambda k: abs(k[0, 0] - p.keypoints[0, 0]))
        seen = ref[:7, 2] > 0
        np.testing.assert_allclose(p.keypoints[:7][seen, :2], ref[:7][seen, :2], atol=0.5)


@pytest.fixture(scope="module")
def video_frame(shared_data):
    import cv2

    cap = cv2.VideoCapture(str(shared_data / PEDESTRIANS))
    for _ in range(24):
        ok, frame = cap.read()
    assert ok
    return frame


def test_from_scratch_network_runs_on_a_real_frame(video_frame):
    det = load_detector("openpifpaf", checkpoint="scratch:shufflenetv2k16", long_edge=321, threads=2)
    assert det.name == "openpifpaf" and det.device in ("cpu", "cuda")
    out = det.people([video_frame, video_frame])
    assert len(out) == 2 and all(isinstance(p, list) for p in out)
    for people in out:  # random weights find little or nothing; whatever they find is valid
        for p in people:
            assert p.keypoints.shape == (17, 3)


def test_local_checkpoint_file_loads(tmp_path, video_frame):
    """A pickled whole-model checkpoint (as OpenPifPaf writes them) loads under torch >= 2.6."""
    import torch

    openpifpaf = import_openpifpaf()
    factory = openpifpaf.network.Factory
    for cls in (openpifpaf.network.basenetworks.MobileNetV3,):
        cls.pretrained = False
    saved = factory.base_name, factory.checkpoint
    factory.base_name, factory.checkpoint = "mobilenetv3small", None
    try:
        net, _ = factory().factory(head_metas=openpifpaf.plugins.coco.CocoKp().head_metas)
    finally:
        factory.base_name, factory.checkpoint = saved
    path = tmp_path / "tiny.pkl"
    torch.save({"model": net, "epoch": 0}, path)
    assert resolve_checkpoint(str(path)) == str(path)
    det = load_detector("openpifpaf", checkpoint=str(path), threads=2)
    assert len(det.people([video_frame])) == 1


def test_offline_without_cached_checkpoint_names_the_ways_out(tmp_path, monkeypatch):
    # no cache here, and every download fails fast (as on a machine with no network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(InputError) as exc:
        resolve_checkpoint("shufflenetv2k16")
    msg = str(exc.value)
    assert "--checkpoint PATH" in msg and "--detector yunet" in msg and "\n" not in msg
    with pytest.raises(InputError, match="neither a file nor a known"):
        resolve_checkpoint(str(tmp_path / "missing.pkl"))


def test_offline_cli_prints_one_line_and_fails(tmp_path, shared_data, monkeypatch):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from annotator.service.workspace import Workspace

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    Workspace.init(tmp_path / "ws").dispose()
    r = CliRunner().invoke(app, ["extract", str(shared_data / PEDESTRIANS), "--detector", "openpifpaf",
                                 "-p", str(tmp_path / "ws")])
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot download OpenPifPaf checkpoint")
    assert "--detector yunet" in lines[0] and r.exception is None or isinstance(r.exception, SystemExit)


def test_extract_job_end_to_end_with_scratch_openpifpaf(shared_data, tmp_path):
    """The whole job with OpenPifPaf (random weights: real compute, nothing found, no download)."""
    from annotator.service.workspace import Workspace
    from pipelines import extract

    ws = Workspace.init(tmp_path / "ws")
    opts = extract.ExtractOptions(sources=[str(shared_data / PEDESTRIANS)], detector="openpifpaf",
                                  checkpoint="scratch:shufflenetv2k16", long_edge=321, every=100,
                                  batch_size=2)
    rep = extract.run(ws, opts)
    assert rep.errors == [] and rep.detector == "openpifpaf"
    assert rep.frames == 2 and rep.per_source[0].status == "done"  # frames 0 and 100
    assert rep.timings["detect"] > 0 and rep.crops_kept == rep.detections == 0
