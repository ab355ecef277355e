"""Extract page (admin): choose the detector and sampling, upload a video or name sources on the
server; extraction runs as a background job and reports its detector and progress here."""
from __future__ import annotations

import streamlit as st

from annotator.service import jobs
from annotator.core.config import DETECTOR_CHOICES
from annotator.core.errors import AnnotatorError
from pages import common
from pipelines import extract
from pipelines.cli import runner
from pipelines.extract import uploads
from pipelines.extract.options import MOTION

me = common.require_admin()
ws = common.workspace()
cfg = ws.config.extract
state = st.session_state
VIDEO_TYPES = ["mp4", "avi", "mkv", "mov", "webm", "mpg", "mpeg", "ts", "jpg", "jpeg", "png"]
FPS, EVERY = "frames per second", "every N-th frame"

st.title("Extract head crops")
if state.get("extract_msg"):
    st.info(state.extract_msg)

detector = st.selectbox(
    "Detector", DETECTOR_CHOICES, index=DETECTOR_CHOICES.index(cfg.detector), key="extract_detector",
    help="auto: OpenPifPaf when its checkpoint is on the server, otherwise YuNet (offline). "
         "yunet and mtcnn find faces with weights that ship with them; openpifpaf finds people "
         "by their keypoints and needs its checkpoint.")
left, right = st.columns(2)
sampling = left.radio("Sample", [FPS, EVERY], horizontal=True, key="extract_sampling")
if sampling == FPS:
    fps = left.number_input("Frames per second of video", min_value=0.01, max_value=1000.0,
                            value=float(cfg.fps), key="extract_fps")
    every = None
else:
    every = int(left.number_input("Every N-th frame", min_value=1, value=12, step=1,
                                  key="extract_every"))
    fps = None
per_track = int(right.number_input("Crops per tracked head", min_value=1, max_value=1000,
                                   value=int(cfg.per_track), step=1, key="extract_per_track"))
min_size = int(right.number_input("Minimum head size (px)", min_value=0, max_value=10_000,
                                  value=int(cfg.min_size), step=1, key="extract_min_size"))
min_score = right.number_input(
    "Minimum detector score (empty: the detector's default)", min_value=0.0, max_value=1.0,
    value=None if cfg.min_score < 0 else float(cfg.min_score), step=0.05,
    key="extract_min_score")
motion = left.selectbox(
    "Motion gating", MOTION, index=MOTION.index("auto"), key="extract_motion",
    help="Run the detector only where something moved (or a face was seen lately); frames where "
         "nothing moved skip it. auto = on for video files and streams (fixed cameras), off for "
         "photos.")
redo = st.checkbox("Redo sources already extracted (their unlabeled crops are replaced; labeled "
                   "crops and labels are kept)", key="extract_redo")

upload = st.file_uploader("Upload a video", type=VIDEO_TYPES,
                          max_upload_size=ws.config.limits.max_upload_mb)
paths = st.text_area("…or paths on the server (one per line: files, folders or stream URLs)",
                     key="extract_paths")
if st.button("Start extraction", type="primary", key="extract_start"):
    try:
        common.recheck_admin()  # at the click: the page may be older than a disable or demotion
        targets = uploads.source_lines(paths)  # first: a refused line leaves no upload behind
        if upload is not None:
            targets.append(str(uploads.save_upload(ws, upload.name, upload)))
        if not targets:
            st.warning("Upload a video or give a path first.")
        else:
            opts = extract.ExtractOptions(
                sources=targets, detector=detector, fps=fps, every=every, per_track=per_track,
                min_size=min_size, min_score=min_score, motion=motion, redo=redo)
            job_id = runner.submit(ws, "extract", opts, started_by=me["name"],
                                   account_id=me["id"], token=state.get("session_token"))
            state.extract_msg = f"started job {job_id}: extract {' '.join(targets)}"
            st.rerun()
    except AnnotatorError as exc:
        st.error(str(exc))


def job_details(job) -> None:
    """Which detector a finished job ran and why, what it made, and each source's error."""
    result = job.result or {}
    if not result.get("detector"):
        return
    st.caption(f"job {job.id}: detector {result['detector']} ({result.get('detector_reason', '')})"
               f" · {result.get('frames', 0)} frames, {result.get('crops_kept', 0)} crops kept"
               + (f", {result['scored']} scored by the active model" if result.get("scored")
                  else ""))
    if result.get("skipped") and not result.get("sources"):  # nothing new in it
        st.info(f"job {job.id}: already extracted ({result['skipped']} of the sources), so "
                "nothing was added: tick 'Redo sources already extracted' to extract again")
    for line in result.get("errors") or []:
        st.error(f"job {job.id}: {line}")


st.subheader("Extraction jobs")
common.show_jobs(ws, kinds=["extract"])  # progress (its message names the detector), failures
for job in jobs.list_jobs(ws, kinds=["extract"], limit=8):
    job_details(job)
