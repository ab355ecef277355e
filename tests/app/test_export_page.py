"""The Export section of the Models page (admin) runs the same job as `annotator export`."""
from __future__ import annotations

import json

from annotator.data import crop_queue, export_reads
from annotator.service import auth, jobs
from tests.app import factory
from tests.app.test_pages import signed_in


def test_admin_exports_through_a_background_job(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 60) as ws:
        with ws.session() as s:
            uid = auth.system_user(s, "import").id
            ids = export_reads.crop_ids_with_status(s, ["unlabeled"])[:40]
            crop_queue.import_labels(s, uid, {c: ("mask", "no_mask")[c % 2] for c in ids})
        at = signed_in(ws, "root", "admin_models.py")
        at.selectbox(key="export_format").set_value("coco").run()
        assert any("admins only" in w.value for w in at.warning)  # frames: said so
        at.selectbox(key="export_format").set_value("hf")
        at.text_input(key="export_out").set_value(str(tmp_path / "hf"))
        at.button(key="export_go").click().run()
        job_id = int(at.info[0].value.split("started job ")[1].split(":")[0])
        job = jobs.wait(ws, job_id, timeout=240)
        assert job.status == "done", jobs.log_tail(job)
        assert job.result["crops"] == 40 and not job.result["with_provenance"]
        sheet = json.loads((tmp_path / "hf" / "datasheet.json").read_text())
        assert sheet["composition"]["exported"]["crops"] == 40
        assert sorted(p.name for p in (tmp_path / "hf" / "data").iterdir())[0].endswith(".parquet")


def test_annotators_do_not_see_the_export(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 10) as ws:
        at = signed_in(ws, "alice")
        assert "admin_models" not in str(at.get("page_link"))
        assert not [s for s in at.selectbox if s.key == "export_format"]
