"""AppTest: the Dashboard's "where the model is worst" section and the Browse filter it opens."""
from __future__ import annotations

import json

import numpy as np
from sqlalchemy import insert, select

from annotator.core import slices
from annotator.data import db, model_versions, slice_store
from tests.app import factory
from tests.app.test_pages import chart_titles, signed_in


def chart_rows(at) -> list[dict]:
    """Every row of data the page's charts carry (Arrow datasets or inline in the spec)."""
    import pyarrow as pa

    rows = []
    for c in at.get("vega_lite_chart"):
        for ds in c.proto.datasets:
            rows += pa.ipc.open_stream(ds.data.data).read_all().to_pylist()
        for inline in json.loads(c.proto.spec).get("datasets", {}).values():
            rows += inline
    return rows


def _slices_and_random_labels(ws, *, dark: int = 24, labeled: int = 120):
    """Attributes for every crop (the first ``dark`` crops dark), and random-share labels that
    the active model gets wrong exactly on the dark crops."""
    uid = factory.user_id(ws, "alice")
    with ws.session() as s:
        ids = s.scalars(select(db.Crop.id).order_by(db.Crop.id)).all()
        mv = model_versions.active_model(s)
        probs = dict(s.execute(select(db.Prediction.crop_id, db.Prediction.probs)
                               .where(db.Prediction.model_version_id == mv.id)).all())
        s.execute(insert(db.CropAttributes), [
            dict(crop_id=c, face_px=48.0, sharpness=400.0, brightness=20.0 if i < dark else 140.0,
                 pose="unknown", colour="white", hour=None) for i, c in enumerate(ids)])
        classes = list(mv.classes)
        for i, c in enumerate(ids[:labeled]):
            guess = int(np.argmax(probs[c]))
            value = classes[1 - guess] if i < dark else classes[guess]
            s.add(db.Label(crop_id=c, annotator_id=uid, value=value, sampling="random"))
            s.get(db.Crop, c).status = db.CropStatus.LABELED
    return ids


def test_worst_slices_table_with_counts_opens_browse_filtered(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 200) as ws:
        ids = _slices_and_random_labels(ws)
        with ws.read_session() as s:
            assert slice_store.missing_count(s) == 0
        at = signed_in(ws, "root", "dashboard.py")
        assert "Where the model is worst" in [h.value for h in at.subheader]
        table = next(d for d in at.dataframe if "attribute" in d.value.columns)
        top = table.value.iloc[0]
        assert (top["attribute"], top["band"], int(top["n"])) == ("light", "dark", 24)
        assert table.value["error"].iloc[0] == 1.0
        # One chart per attribute, with its crop counts (the vega spec carries the data).
        assert set(slices.ATTRIBUTES) <= chart_titles(at)
        data = chart_rows(at)
        assert {"band": "dark", "crops": 24, "error": 1.0, "measured": "100.0%"} in data
        assert any(r.get("band") == "bright" and r.get("crops") == 176 for r in data)
        at.button(key="slice_light_dark").click().run()
        assert not at.exception, at.exception
        infos = [i.value for i in at.info]
        assert any("Slice light: dark (24 crops" in v for v in infos), infos
        shown = [c.value for c in at.caption if c.value.startswith("#")]
        assert len(shown) == 24
        dark_ids = {f"#{c} " for c in ids[:24]}
        assert all(v.split("·")[0] in dark_ids for v in shown)
        # "Show all crops" drops the filter.
        at.button(key="slice_clear").click().run()
        assert not any("Slice light" in i.value for i in at.info)


def test_without_random_labels_the_section_explains_and_still_counts(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 30) as ws:
        at = signed_in(ws, "alice", "dashboard.py")
        assert any("No per-slice errors yet" in c.value for c in at.caption)
        # Crops without attributes are counted as "unknown", not dropped.
        assert "face" in chart_titles(at)


def test_browse_reads_the_slice_from_the_address(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 60) as ws:
        _slices_and_random_labels(ws, dark=7, labeled=10)
        at = signed_in(ws, "root")
        at.query_params["slice"] = "light:dark"
        at.switch_page("browse.py").run()
        assert not at.exception, at.exception
        assert any("Slice light: dark (7 crops" in i.value for i in at.info)


def test_the_label_queue_spends_a_share_on_the_worst_slice(tmp_path):
    """strategy = "slices": the measured-worst band (random-share errors) gets the targeted picks."""
    from annotator.service import labeling

    ws = factory.build(tmp_path / "ws", 200)
    try:
        with ws.session() as s:
            ids = s.scalars(select(db.Crop.id).order_by(db.Crop.id)).all()
            mv = model_versions.active_model(s)
            probs = dict(s.execute(select(db.Prediction.crop_id, db.Prediction.probs)).all())
            dark = {c for i, c in enumerate(ids) if i % 4 == 0}  # one per track of 4
            s.execute(insert(db.CropAttributes), [
                dict(crop_id=c, face_px=48.0, sharpness=400.0,
                     brightness=20.0 if c in dark else 140.0) for c in ids])
            uid = factory.user_id(ws, "bob")
            classes = list(mv.classes)
            for c in ids[:100]:  # the model is wrong on every dark one of them
                guess = int(np.argmax(probs[c]))
                s.add(db.Label(crop_id=c, annotator_id=uid, sampling="random",
                               value=classes[1 - guess] if c in dark else classes[guess]))
                s.get(db.Crop, c).status = db.CropStatus.LABELED
        picks = labeling.choose(ws, factory.user_id(ws, "alice"), 20, seed=0, strategy="slices")
        targeted = [c for c, r in picks if r == "slices"]
        assert len(targeted) == 9  # half of the 18 non-random picks (10% random share)
        assert set(targeted) <= dark and not set(targeted) & set(ids[:100])
        hybrid = labeling.choose(ws, factory.user_id(ws, "alice"), 20, seed=0, strategy="hybrid")
        assert sum(c in dark for c, _ in hybrid) < len(targeted)
    finally:
        ws.dispose()
