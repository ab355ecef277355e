"""Grid page: a page of crops pre-set to the model's guess; click to flip, one key to submit."""
from __future__ import annotations

import time

import streamlit as st

from annotator import labeling
from annotator.config import NOT_A_FACE
from annotator.errors import AnnotatorError
from pages import common

ws = common.workspace()
me = common.require_user()
state = st.session_state
CHOICES = [*ws.config.labels, NOT_A_FACE]  # a click moves a crop to the next one
COLORS = ["#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a"]
SUBMIT_KEY = "g"
PER_ROW = 8


def color(value: str) -> str:
    return "#757575" if value == NOT_A_FACE else COLORS[ws.config.labels.index(value) % len(COLORS)]


def _load(size: int) -> None:
    cards = labeling.claim(ws, me["id"], size)[:size]  # held ones first; the rest stay held
    state.grid_cards = cards
    state.grid_values = {c.crop_id: c.guess if c.guess in ws.config.labels else ws.config.labels[0]
                         for c in cards}
    state.grid_t = time.monotonic()


def _flip(crop_id: int) -> None:
    cur = state.grid_values[crop_id]
    state.grid_values[crop_id] = CHOICES[(CHOICES.index(cur) + 1) % len(CHOICES)]


def _submit() -> None:
    values = dict(state.get("grid_values") or {})
    try:
        n = labeling.submit_page(ws, me["id"], values,
                                 seconds=round(time.monotonic() - state.get("grid_t", 0), 2))
    except AnnotatorError as exc:
        state.grid_msg = f"nothing saved: {exc}"
        state.grid_cards = None
        return
    state.grid_msg = f"saved {n} labels"
    state.grid_pages = state.get("grid_pages", 0) + 1
    state.grid_cards = None
    state.label_cards = state.label_refill = None  # the label page re-reads what it holds


with st.sidebar:
    size = st.slider("Crops per page", 30, 60, 40, 5, key="grid_size")
    crop_px = st.slider("Crop size (px)", 64, 192, 112, 16, key="grid_px")
    pixelated = st.toggle("Pixelated upscaling", value=True, key="grid_pixel")

if state.get("grid_cards") is None:
    try:
        _load(size)
    except AnnotatorError as exc:
        st.error(str(exc))
        st.stop()
cards = state.grid_cards
values = state.grid_values

top = st.columns([3, 2])
top[0].markdown("Every crop starts at the model's guess. **Click** a crop's button to flip it "
                f"({' → '.join(CHOICES)}), then press **{SUBMIT_KEY}** to save the whole page.")
if state.get("grid_msg"):
    top[1].info(state.grid_msg)
if not cards:
    st.success("Nothing left to label right now.")
    if st.button("Check again"):
        state.grid_cards = None
        st.rerun()
    st.stop()

counts = {v: list(values.values()).count(v) for v in CHOICES}
st.caption(" · ".join(f"{v}: {n}" for v, n in counts.items()) + f" · {len(cards)} crops")
for start in range(0, len(cards), PER_ROW):
    cols = st.columns(PER_ROW)
    for col, card in zip(cols, cards[start:start + PER_ROW]):
        value = values[card.crop_id]
        with col:
            common.show_crop(card, size=crop_px, pixelated=pixelated, border=color(value))
            col.button(value, key=f"flip_{card.crop_id}", on_click=_flip, args=(card.crop_id,),
                       width="stretch", help=f"crop #{card.crop_id}: click to flip")

st.button(f"Submit page ({SUBMIT_KEY})", key="grid_submit", type="primary", on_click=_submit,
          shortcut=SUBMIT_KEY)
