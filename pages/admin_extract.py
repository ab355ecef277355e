"""Extract page (admin): upload a video or name files on the server; extraction runs in the
background and reports progress here."""
from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from annotator.errors import AnnotatorError
from pages import common
from pipelines import extract, runner

ws = common.workspace()
me = common.require_admin()
state = st.session_state
VIDEO_TYPES = ["mp4", "avi", "mkv", "mov", "webm", "mpg", "mpeg", "ts", "jpg", "jpeg", "png"]


def _save_upload(upload) -> Path:
    dest_dir = ws.root / "uploads"
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload.name).name) or "upload"
    dest = dest_dir / name
    dest.write_bytes(upload.getbuffer())
    return dest


st.title("Extract head crops")
if state.get("extract_msg"):
    st.info(state.extract_msg)
upload = st.file_uploader("Upload a video", type=VIDEO_TYPES)
paths = st.text_area("…or paths on the server (one per line: files, folders or stream URLs)",
                     key="extract_paths")
if st.button("Start extraction", type="primary", key="extract_start"):
    targets = [p.strip() for p in paths.splitlines() if p.strip()]
    try:
        if upload is not None:
            targets.append(str(_save_upload(upload)))
        if not targets:
            st.warning("Upload a video or give a path first.")
        else:
            job_id = runner.submit(ws, "extract", extract.ExtractOptions(sources=targets),
                                   started_by=me["name"])
            state.extract_msg = f"started job {job_id}: extract {' '.join(targets)}"
            st.rerun()
    except AnnotatorError as exc:
        st.error(str(exc))

st.subheader("Extraction jobs")
common.show_jobs(ws, kinds=["extract"])
