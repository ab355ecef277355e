"""Privacy page (admin): erase a source, a person (track) or a crop after seeing exactly what
goes and confirming; the audit trail with filters; retention and blur settings."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from annotator.data import trail
from annotator.core.errors import AnnotatorError
from pages import common
from pipelines import erase, retention
from pipelines.cli import runner

me = common.require_admin()
ws = common.workspace()
state = st.session_state

st.title("Personal data")
if state.get("privacy_msg"):
    st.success(state.privacy_msg)
    state.privacy_msg = None

erase_tab, trail_tab, keep_tab = st.tabs(["Erase", "Audit trail", "Retention and blur"])

with erase_tab:
    st.caption("Removes the crops, their labels and predictions, their files, cached tensors, "
               "copies in every dataset version, detect run rows and videos that show them, and "
               "uploads of an erased source. The audit trail keeps 'crop N (erased)'.")
    kind = st.radio("Erase", ["crop", "track", "source"], horizontal=True, key="erase_kind")
    hint = {"crop": "crop id, e.g. 1234", "track": "SOURCE:TRACK, e.g. cam1.mp4:12",
            "source": "source name or id"}[kind]
    ref = st.text_input("Which", placeholder=hint, key="erase_ref").strip()

    def _opts(dry: bool) -> erase.EraseOptions:
        if kind == "crop":
            if not ref.isdigit():
                raise AnnotatorError("a crop id is a number")
            return erase.EraseOptions(crop=int(ref), dry_run=dry, actor=me["name"])
        return erase.EraseOptions(**{kind: ref}, dry_run=dry, actor=me["name"])

    if ref and st.button("Show what would be erased", key="erase_plan"):
        try:
            state.erase_planned = (kind, ref, erase.run(ws, _opts(True)).removes())
        except AnnotatorError as exc:
            st.error(str(exc))
    plan = state.get("erase_planned")
    if plan and plan[:2] == (kind, ref):
        p = plan[2]
        st.write(f"**{p['target']}**: {len(p['crops'])} crops, {p['labels']} labels, "
                 f"{p['predictions']} predictions, {len(p['store_files'])} crop files, "
                 f"{p['cache_entries']} cache entries, {len(p['dataset_files'])} dataset files "
                 f"({', '.join(p['datasets']) or 'none'}), {len(p['detect_files'])} detect run "
                 f"files, {len(p['uploads'])} uploads. Models then marked 'trained on erased "
                 f"data': {', '.join(p['models']) or 'none'}.")
        confirm = st.text_input(f"Type ERASE to confirm erasing {p['target']}", key="erase_confirm")
        if st.button("Erase now", type="primary", disabled=confirm.strip() != "ERASE",
                     key="erase_go"):
            try:
                done = erase.run(ws, _opts(False))
                state.privacy_msg = f"erased {done.target}: {len(done.crops)} crops"
                state.erase_planned = None
                st.rerun()
            except AnnotatorError as exc:
                st.error(str(exc))

with trail_tab:
    c1, c2, c3 = st.columns(3)
    who = c1.text_input("Account", key="trail_user").strip() or None
    action = c2.selectbox("Action", ["any", *trail.ACTIONS], key="trail_action")
    days = c3.number_input("Last days", min_value=1, max_value=3650, value=7, key="trail_days")
    crop = st.text_input("Crop id", key="trail_crop").strip()
    rows = trail.events(ws, actor=who, action=None if action == "any" else action,
                        crop_id=int(crop) if crop.isdigit() else None,
                        since=dt.datetime.now(dt.UTC).replace(tzinfo=None)
                        - dt.timedelta(days=int(days)), limit=2000)
    st.caption(f"{len(rows)} events (newest first); `annotator audit --json` gives the same.")
    if rows:
        df = pd.DataFrame(rows)[["at", "actor", "action", "page", "what", "detail"]]
        df["detail"] = df["detail"].map(lambda d: "" if not d else str(d))
        st.dataframe(df, hide_index=True, width="stretch")

with keep_tab:
    cfg = ws.config.privacy
    st.write(f"Blur other faces in the frame context: **{'on' if cfg.blur_faces else 'off'}** · "
             f"audit trail: **{'on' if cfg.trail else 'off'}** · uploads kept "
             f"{cfg.upload_days or 'forever'} days · unlabeled crops {cfg.unlabeled_crop_days or 'forever'}"
             f" days · detect runs {cfg.detect_run_days or 'forever'} days.")
    st.caption("Set them in [privacy] of config.toml (read when the app starts).")
    due = retention.run(ws, retention.RetentionOptions(dry_run=True))
    st.write(retention.summary(due))
    if (due.uploads or due.crops or due.detect_runs) and st.button("Apply retention now",
                                                                   key="retention_go"):
        try:  # a background job: erasing many unlabeled crops takes a while
            job_id = runner.submit(ws, "retention", retention.RetentionOptions(),
                                   started_by=me["name"])
            state.privacy_msg = f"started job {job_id}: retention"
        except AnnotatorError as exc:
            st.error(str(exc))
        st.rerun()
    common.show_jobs(ws, kinds=["retention"])
