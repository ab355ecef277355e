"""Grid page: a page of crops pre-set to the model's guess, decided with the keyboard or a click.

Arrow keys move a cursor; m / n / x set the crop under it (and move on); a click sets the next
class; g saves the whole page in one transaction. Everything before g happens in the browser
(``widgets.label_grid``), so a flip costs no server round trip.
"""
from __future__ import annotations

import time

import streamlit as st

from annotator import labeling, trail
from annotator.config import NOT_A_FACE
from annotator.errors import AnnotatorError
from pages import common, widgets

ws = common.workspace()
me = common.require_user()
state = st.session_state
CHOICES = [*ws.config.labels, NOT_A_FACE]  # a click moves a crop to the next one
KEYS = labeling.shortcuts(ws.config.labels)
COLOURS = {v: widgets.colour_of(v, ws.config.labels) for v in CHOICES}
SUBMIT_KEY = "g"


def _load(size: int) -> None:
    cards = labeling.claim(ws, me["id"], size)[:size]  # held ones first; the rest stay held
    state.grid_cards = cards
    state.grid_t = time.monotonic()
    state.grid_page = state.get("grid_page", 0) + 1  # a new component key: a fresh page


def _save(values: dict[int, str]) -> None:
    held = {c.crop_id for c in state.get("grid_cards") or []}
    values = {cid: v for cid, v in values.items() if cid in held and v in CHOICES}
    try:
        n = labeling.submit_page(ws, me["id"], values,
                                 seconds=round(time.monotonic() - state.get("grid_t", 0), 2))
    except AnnotatorError as exc:
        state.grid_msg = f"nothing saved: {exc}"
    else:
        state.grid_msg = f"saved {n} labels"
        state.grid_pages = state.get("grid_pages", 0) + 1
    state.grid_cards = None
    state.label_cards = state.label_refill = None  # the label page re-reads what it holds


with st.sidebar:
    size = st.slider("Crops per page", 30, 60, 40, 5, key="grid_size")
    crop_px = st.slider("Crop size (px)", 64, 192, 112, 16, key="grid_px")
    per_row = st.slider("Crops per row", 4, 12, 8, 1, key="grid_row")
    pixelated = st.toggle("Pixelated upscaling", value=False, key="grid_pixel")

if state.get("grid_cards") is None:
    try:
        _load(size)
    except AnnotatorError as exc:
        st.error(str(exc))
        st.stop()
cards = state.grid_cards

legend = " ".join(
    f'<span style="display:inline-block;margin-right:1rem"><span style="display:inline-block;'
    f'width:.9rem;height:.9rem;border-radius:3px;background:{COLOURS[v]};vertical-align:middle">'
    f'</span> <kbd>{KEYS[v].upper()}</kbd> {v.replace("_", " ")}</span>' for v in CHOICES)
st.html(f'<p>Every crop starts at the model\'s guess. <kbd>←</kbd><kbd>→</kbd><kbd>↑</kbd>'
        f'<kbd>↓</kbd> move the yellow cursor, a label key sets that crop, a click sets the next '
        f'class, <kbd>{SUBMIT_KEY.upper()}</kbd> saves the page.</p><p>{legend}</p>')
if state.get("grid_msg"):
    st.info(state.grid_msg)
if not cards:
    st.success("Nothing left to label right now.")
    if st.button("Check again"):
        state.grid_cards = None
        st.rerun()
    st.stop()

trail.record_shown(ws, state, "grid", me["name"], "grid", [c.crop_id for c in cards])  # privacy
start = {c.crop_id: c.guess if c.guess in ws.config.labels else ws.config.labels[0] for c in cards}
counts = {v: list(start.values()).count(v) for v in CHOICES}
st.caption(" · ".join(f"{v}: {n}" for v, n in counts.items() if n) + f" · {len(cards)} crops "
           "(counts at the start of the page)")
submitted = widgets.label_grid(
    [{"id": c.crop_id, "src": c.data_uri(), "value": start[c.crop_id]} for c in cards],
    choices=CHOICES, colours=COLOURS, keys={KEYS[v]: v for v in CHOICES},
    submit_key=SUBMIT_KEY, per_row=per_row, px=crop_px, pixelated=pixelated,
    key=f"grid_{state.grid_page}")
if submitted is not None:
    _save(submitted)
    st.rerun()
