"""Models page (admin): retrain with options, watch it learn, cancel it, promote or roll back."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator.service import crop_cards, dashboard, jobs
from annotator.core.errors import AnnotatorError
from models import registry as model_files
from pages import autolabel_panel, charts, common
from pipelines import export, promote, retrain
from pipelines.common import registry
from pipelines.cli import runner

ws = common.workspace()
me = common.require_admin()
state = st.session_state
KINDS = ["retrain", "score", "promote", "rollback", "autolabel"]
SHOWN = ["name", "active", "balanced_accuracy", "accuracy", "roc_auc", "ece", "labels", "dataset",
         "source", "created_at", "promoted_at"]


def _start(kind: str, options) -> None:
    try:
        job_id = runner.submit(ws, kind, options, started_by=me["name"], account_id=me["id"],
                               token=state.get("session_token"))
        state.models_msg = f"started job {job_id}: {kind}"
    except AnnotatorError as exc:
        state.models_msg = str(exc)


def _live_curves(job) -> None:
    epochs = (job.detail or {}).get("train") or []
    if job.kind == "retrain" and epochs:
        st.altair_chart(charts.training_curves(epochs), width="stretch")


st.title("Models")
if state.get("models_msg"):
    st.info(state.models_msg)
history = dashboard.model_history(ws)
active = crop_cards.active_model(ws)
st.caption(f"active model: **{active.name}**" if active else "no active model yet")
if history.empty:
    st.caption("No model versions yet. Retrain once some crops are labeled.")
else:
    cols = [c for c in SHOWN if c in history.columns]
    headers = {"name": "Version", "active": "Active", "balanced_accuracy": "Balanced accuracy",
               "accuracy": "Accuracy", "roc_auc": "ROC AUC",
               "ece": "Calibration error (ECE)", "labels": "Labels", "dataset": "Dataset",
               "source": "Made by", "created_at": "Created", "promoted_at": "Promoted"}
    config = {c: st.column_config.Column(headers.get(c, c.replace("_", " ").capitalize()))
              for c in cols}
    config |= {c: st.column_config.NumberColumn(headers[c], format="%.3f") for c in
               ("balanced_accuracy", "accuracy", "roc_auc", "ece") if c in cols}
    st.dataframe(history[cols].iloc[::-1], hide_index=True, width="stretch",
                 column_config=config)

running = any(j.active for j in jobs.list_jobs(ws, kinds=KINDS))
names = history["name"].tolist() if not history.empty else []
train_cfg = ws.config.training
left, mid, right = st.columns(3)
with left:
    st.subheader("Retrain")
    # No st.form: Enter in a field would submit it and start a retrain. Only the button does;
    # the values are kept for the session (also after the job and across pages).
    common.kept("rt_epochs", train_cfg.epochs)
    epochs = st.number_input("Epochs", 1, 1000, key="rt_epochs", on_change=common.keep,
                             args=("rt_epochs",))
    inits = ["active", "none", *names[::-1]]
    common.kept("rt_init", "active")
    if state.rt_init not in inits:
        state.rt_init = "active"
    init = st.selectbox("Start from", inits, key="rt_init", on_change=common.keep,
                        args=("rt_init",), help="active: the active model's weights (warm "
                        "start); none: from scratch; or a version.")
    overlays = train_cfg.mask_overlays
    common.kept("rt_synth", bool(train_cfg.synthetic_masks))
    synthetic = st.checkbox("Paste synthetic masks on no_mask crops", key="rt_synth",
                            on_change=common.keep, args=("rt_synth",), disabled=not overlays,
                            help=f"mask PNGs from {overlays}" if overlays else
                            "set training.mask_overlays in config.toml first")
    common.kept("rt_force", False)
    force = st.checkbox("Skip the validation gate", key="rt_force", on_change=common.keep,
                        args=("rt_force",), help="Promote the new version even if it does not "
                        "beat the active model on the same validation set.")
    if st.button("Retrain now", type="primary", disabled=running, key="rt_go"):
        _start("retrain", retrain.RetrainOptions(
            epochs=int(epochs), init=init, force=force,
            synthetic_masks=Path(overlays) if synthetic and overlays else None))
        st.rerun()
with mid:
    st.subheader("Promote")
    candidates = [n for n in names[::-1] if not active or n != active.name]
    version = st.selectbox("Version", candidates, key="promote_version",
                           disabled=not candidates)
    pforce = st.checkbox("Skip the validation gate", key="promote_force",
                         help="Promote even if it does not beat the active model on the same "
                         "validation set (or there is none yet).")
    st.button("Promote", key="promote", disabled=running or not version, on_click=_start,
              args=("promote", promote.PromoteOptions(version=str(version), force=pforce)))
with right:
    st.subheader("Roll back")
    st.caption("Make the previously active version active again; the queue follows it.")
    st.button("Roll back", key="rollback", disabled=running or len(names) < 2,
              on_click=_start, args=("rollback", promote.RollbackOptions()))

autolabel_panel.models_section(ws, _start, running=running)

st.subheader("Jobs")
common.show_jobs(ws, kinds=KINDS, extra=_live_curves)

if names:
    st.subheader("Versions")
    for info in registry.list_versions(ws)[::-1]:
        title = (f"{info.name}{' (active)' if info.active else ''} · balanced accuracy "
                 f"{info.val_balanced_accuracy:.3f}" if info.val_balanced_accuracy is not None
                 else f"{info.name}{' (active)' if info.active else ''} · not evaluated")
        title += " · trained on erased data" if info.trained_on_erased else ""  # privacy
        with st.expander(title, expanded=False):
            metrics = model_files.read_metrics(ws.root / info.path)
            val = metrics.get("val") or {}
            c1, c2 = st.columns([1, 2])
            if val.get("confusion"):
                c1.altair_chart(charts.confusion(val["confusion"], info.classes))
            if metrics.get("history"):
                c2.altair_chart(charts.training_curves(metrics["history"]), width="stretch")
            st.caption(f"dataset {info.dataset or '-'} · {info.source or ''} · created "
                       f"{info.created_at[:19]}")

# --- export (issue 27): the same job as `annotator export`, started in the background ----------
st.subheader("Export")
e1, e2 = st.columns([1, 2])
fmt = e1.selectbox("Format", list(export.FORMATS), key="export_format",
                   help="hf: Hugging Face datasets; coco / yolo: whole frames with head boxes; "
                   "labelstudio: tasks to label elsewhere; fiftyone; imagefolder; csv.")
dest = e2.text_input("Folder on the server (a file for csv)", key="export_out")
prov = st.checkbox("With provenance (source names, frame numbers, times, boxes)",
                   key="export_prov", value=False)
if fmt in export.FRAME_FORMATS:
    st.warning(export.FRAMES_NOTE)
go_export = st.button("Export", key="export_go")
if go_export:
    if not dest.strip():
        state.models_msg = "give the folder to export to"
    else:
        _start("export", export.ExportOptions(out=Path(dest.strip()), format=fmt,
                                              with_provenance=prov))
    st.rerun()
common.show_jobs(ws, kinds=["export"])
