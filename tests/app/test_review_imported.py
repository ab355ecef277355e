"""Review checks every label against the active model, imported ones included: labels imported
in a folder the model confidently disagrees with are listed (the import job scored them)."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from annotator.data import db
from annotator.service import auth
from annotator.service.workspace import Workspace
from pipelines import import_folder, promote

PAGES = Path(__file__).resolve().parents[2] / "pages"


def test_review_lists_an_imported_label_the_model_contradicts(tmp_path, monkeypatch,
                                                                shared_data):
    ws = Workspace.init(tmp_path / "ws")
    try:
        promote.import_keras(ws, promote.KerasImportOptions(
            path=shared_data / "peer" / "OFMClassifier.h5"))
        admin = auth.create_account(ws, "root", "root-password-1", role="admin")
        wrong = tmp_path / "wrong" / "mask"  # bare faces filed under 'mask' by mistake
        wrong.mkdir(parents=True)
        faces = sorted((shared_data / "faces" / "no_mask").glob("*.jpg"))[:12]
        for f in faces:
            (wrong / f.name).symlink_to(f)
        rep = import_folder.run(ws, import_folder.ImportOptions(folder=wrong.parent,
                                                               labeled=True))
        assert rep.labels == {"mask": 12} and rep.scored == 12  # labeled crops scored too
        with ws.read_session() as s:
            ids = set(s.scalars(select(db.Crop.id)))

        monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
        at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=90)
        at.session_state["user"] = {"id": admin.id, "name": "root", "role": "admin"}
        at.run()
        at.switch_page("review.py").run()
        assert not at.exception, at.exception
        listed = {int(b.key.split("_")[1]) for b in at.button if b.key.startswith("con_")}
        assert listed and listed <= ids  # imported labels the model says are no_mask
        text = " ".join(m.value for m in at.markdown)
        assert "label **mask** by import" in text and "model says **no_mask**" in text
    finally:
        ws.dispose()
