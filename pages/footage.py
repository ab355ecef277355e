"""Footage page: what the model does on a video. Admins start a run (a known source, a path on
the server or an upload) in the background; everyone signed in watches the annotated video, the
faces per minute by label and the tracks, and admins send the uncertain tracks to the queue."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator.core.errors import AnnotatorError
from pages import common
from pipelines import detect
from pipelines.cli import runner
from pipelines.common import scoring
from pipelines.detect import rendering, tiles, view
from pipelines.detect.to_queue import queue_hard

ws = common.workspace()
me = common.require_user()
state = st.session_state
is_admin = me["role"] == "admin"
VIDEO_TYPES = ["mp4", "avi", "mkv", "mov", "webm", "mpg", "mpeg", "ts", "jpg", "jpeg", "png"]
FROM = ("a known source", "a path on the server", "an upload")


def _save_upload(upload) -> Path:
    # Content-hash name (`<sha12>-name`), as on the Extract page: an upload never replaces
    # another one of the same name that crops or runs point to.
    from pipelines.extract import uploads

    return uploads.save_upload(ws, upload.name, upload)


def _start(target: str | None, upload, **options) -> None:
    common.require_admin()  # the button is shown to admins only; this is the check
    try:
        if upload is not None:
            common.recheck_admin()
            target = str(_save_upload(upload))
        if not target:
            st.warning("Pick a source, give a path or upload a video first.")
            return
        job_id = runner.submit(ws, "detect", detect.DetectOptions(sources=[target], **options),
                               started_by=me["name"], account_id=me["id"],
                               token=state.get("session_token"))
    except AnnotatorError as exc:
        st.error(str(exc))
        return
    state.footage_msg = f"started job {job_id}: detect {common.md_escape(Path(target).name)}"
    st.rerun()


def _send_hard(run: view.RunInfo) -> None:
    common.require_admin()
    try:
        common.recheck_admin()
        res = queue_hard(ws, run.path)
        scored = scoring.score_new(ws) if res.added else 0  # the active model's guess, at once
    except AnnotatorError as exc:
        st.error(str(exc))
        return
    # Said next to the button that did it (the top of the page is 2,800 px away).
    state.footage_sent = (f"{res.added} crops of uncertain tracks added to the queue "
                          f"({res.known} were already there)"
                          + (f"; {scored} scored by the active model" if scored else ""))
    st.rerun()


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _play(run_name: str, source: str, track: int, second: int) -> None:
    state.footage_jump = (run_name, source, track, second)  # before the rerun draws the video


def _tiles(run: view.RunInfo, src: dict, shown, *, playable: bool, per_row: int = 8) -> None:
    """A page of tracks: each with its picture and a button that plays the video from it."""
    n_pages = tiles.page_count(len(shown))
    page = 1
    if n_pages > 1:
        page = st.number_input(f"Page (of {n_pages}, {tiles.PER_PAGE} tracks each)", 1, n_pages,
                               1, key=f"footage_page_{run.name}")
    rows = shown.iloc[(page - 1) * tiles.PER_PAGE:page * tiles.PER_PAGE]
    found = tiles.tiles(run.path, run.report, src, rows,
                        max_pixels=ws.config.limits.max_image_pixels)
    for start in range(0, len(found), per_row):
        for col, t in zip(st.columns(per_row), found[start:start + per_row]):
            with col:
                if t.png:
                    st.image(t.png, width=tiles.THUMB)
                else:
                    st.caption("no picture (the source is not on this server)")
                st.caption(common.md_escape(f"#{t.track} {t.voted} · {t.first_s:.1f}-"
                                            f"{t.last_s:.1f} s"))
                st.button(f"▶ {_clock(t.start_s)}", key=f"footage_play_{t.track}",
                          disabled=not playable, help="play the video from this track",
                          on_click=_play, args=(run.name, src["name"], t.track, t.start_s))


st.title("Footage")
if state.get("footage_msg"):
    st.info(state.footage_msg)

if is_admin:
    with st.expander("Run the model on footage", expanded=True):
        origin = st.radio("Source", FROM, horizontal=True, key="footage_from")
        target, upload = None, None
        if origin == FROM[0]:
            known = view.server_sources(ws)
            if known:
                target = st.selectbox("Known source", [u for _n, u in known],
                                      format_func=dict((u, n) for n, u in known).get,
                                      key="footage_known")
            else:
                st.caption("no video sources on this server yet: give a path or upload one")
        elif origin == FROM[1]:
            target = st.text_input("Path on the server (a file, a folder or a stream URL)",
                                   key="footage_path").strip() or None
        else:
            upload = st.file_uploader("Upload a video", type=VIDEO_TYPES, key="footage_upload")
        c1, c2, c3, c4 = st.columns(4)
        fps = c1.number_input("Frames per second", 0.1, 30.0, 2.0, 0.5, key="footage_fps")
        vote = c2.selectbox("Vote per track", ["debounce:3", "majority"], key="footage_vote")
        min_score = c3.slider("Unknown below", 0.5, 1.0, 0.75, 0.01, key="footage_min_score")
        seconds = c4.number_input("First seconds only (0: all)", 0.0, 86_400.0, 0.0, 10.0,
                                  key="footage_seconds")
        to_queue = st.checkbox("Send the uncertain tracks to the queue when done",
                               key="footage_to_queue")
        if st.button("Run detect", type="primary", key="footage_start"):
            # VP9: the one codec OpenCV writes here that browsers (st.video) play.
            _start(target, upload, fps=float(fps), vote=vote, min_prob=float(min_score),
                   max_seconds=float(seconds) or None, to_queue=bool(to_queue), codec="vp09")
    st.subheader("Detect jobs")
    common.show_jobs(ws, kinds=["detect"], limit=5)
else:
    st.caption("An admin starts runs; every finished run shows here.")

st.subheader("Results")
found = view.runs(ws)
if not found:
    st.caption("no finished runs yet")
    st.stop()
run = st.selectbox("Run", found, key="footage_run", format_func=lambda r: (
    f"{r.name} · model {r.report.get('model')} · {r.report.get('frames')} frames · "
    f"{', '.join(s['name'] for s in r.report.get('per_source', []))}"))
rep = run.report
sources = [s for s in rep.get("per_source", []) if not s.get("error") or s.get("frames")]
if not sources:
    st.warning(common.md_escape("this run read no frames: " + "; ".join(rep.get("errors") or [])))
    st.stop()
src = sources[0]
if len(sources) > 1:
    src = st.selectbox("Source", sources, format_func=lambda s: s["name"], key="footage_source")
flicker = src.get("flicker") or {}
m = st.columns(5)
m[0].metric("Frames", src["frames"])
m[1].metric("Faces", src["detections"])
m[2].metric("People (tracks)", src["tracks"])
m[3].metric("Flicker per frame", f"{flicker.get('per_frame', 0):.2f}/s",
            help="label changes per track per second of track, frame by frame")
m[4].metric("Flicker voted", f"{flicker.get('voted', 0):.2f}/s",
            help=f"the same after the vote ({rep.get('vote')})")
st.caption(common.md_escape(
    f"model {rep.get('model')} · detector {rep.get('detector')} · vote {rep.get('vote')} · "
    f"unknown below {rep.get('min_score')} · tracks by label {src.get('tracks_by_label')}"))
drawn = run.path / src["video"] if src.get("video") else None
if drawn is not None and drawn.suffix == ".jpg" and drawn.is_file():  # a still image's run
    st.image(str(drawn))
playable = drawn is not None and drawn.suffix == ".mp4" and drawn.is_file()
jump = state.get("footage_jump")  # (run, source, track, second): a tile's play button
jump = jump if jump and tuple(jump[:2]) == (run.name, src["name"]) else None
if playable:
    # From the chosen track's first second (st.video seeks there), playing at once.
    st.video(str(drawn), start_time=jump[3] if jump else 0,
             autoplay=jump is not None, muted=True)
    if jump:
        st.caption(f"playing from track #{jump[2]} at {_clock(jump[3])}")
    if src.get("codec") == "mp4v":
        st.caption(common.md_escape("this video is mp4v (MPEG-4 part 2): browsers do not play "
                                    f"it; open the file {drawn} in a video player"))
tracks = view.table(run, "tracks")
shown = tracks[tracks["source"] == src["name"]].drop(columns=["source"]).sort_values("track")
st.subheader("Tracks")
_tiles(run, src, shown, playable=playable)
with st.expander("All tracks as a table"):
    st.dataframe(shown, hide_index=True, column_config={  # plain headers, not column names
        c: st.column_config.Column(c.replace("_", " ").capitalize()) for c in shown.columns})
summary = view.table(run, "summary")
summary = summary[summary["source"] == src["name"]]
st.subheader("Faces per minute by voted label")
cols = [c for c in [*rep.get("classes", []), "unknown"] if c in summary.columns]
# The video's colours (rendering.colour is BGR).
st.bar_chart(summary.set_index("minute")[cols], x_label="minute of video", y_label="faces",
             color=["#%02x%02x%02x" % rendering.colour(c)[::-1] for c in cols])
hard = f"{rep.get('hard_tracks', 0)} uncertain tracks, {rep.get('hard_crops', 0)} crops"
if is_admin:
    if st.button(f"Send hard tracks to the queue ({hard})", key="footage_queue",
                 disabled=not rep.get("hard_crops")):
        _send_hard(run)
    if state.get("footage_sent"):
        st.info(state.pop("footage_sent"))
else:
    st.caption(hard)
