"""Grid page: a page of crops decided with the keyboard.

Each crop starts at the active model's guess, or undecided when there is no model (nothing is
ever saved that nobody chose). Arrow keys or a click move a cursor; m / n / x set the crop under
it (and move on); g saves the decided crops in one transaction (undecided ones stay held); z
takes back the whole last saved page. Everything before g happens in the browser
(``widgets.label_grid``), so a key costs no server round trip; leaving with unsaved decisions
asks first.
"""
from __future__ import annotations

import time
import uuid

import streamlit as st

from annotator.data import trail
from annotator.service import crop_cards, labeling
from annotator.core.config import NOT_A_FACE
from annotator.core.errors import AnnotatorError
from pages import common, widgets

ws = common.workspace()
me = common.require_user()
state = st.session_state
CHOICES = [*ws.config.labels, NOT_A_FACE]  # a click moves a crop to the next one
KEYS = labeling.shortcuts(ws.config.labels)
COLOURS = {v: widgets.colour_of(v, ws.config.labels) for v in CHOICES}
SUBMIT_KEY = "g"
UNDO_KEY = KEYS["undo"]


def _load(size: int) -> None:
    cards = labeling.claim(ws, me["id"], size)[:size]  # held ones first; the rest stay held
    state.grid_cards = cards
    state.holding = True  # app.py gives them back when the annotator leaves the page
    state.grid_t = time.monotonic()
    state.grid_page = uuid.uuid4().hex[:12]  # a new component key: a fresh page in the browser


def _save(values: dict[int, str]) -> None:
    # In page order (the browser sends them by id): an undo brings them back in this order.
    held = [c.crop_id for c in state.get("grid_cards") or []]
    values = {cid: values[cid] for cid in held if values.get(cid) in CHOICES}
    if not values:
        state.grid_msg = "nothing saved: no crop on this page is decided yet"
        return
    try:
        n = labeling.submit_page(ws, me["id"], values,
                                 seconds=round(time.monotonic() - state.get("grid_t", 0), 2))
    except AnnotatorError as exc:
        state.grid_msg = f"nothing saved: {exc}"
    else:
        left = len(held) - n
        state.grid_msg = (f"saved {n} labels" + (f"; {left} undecided crops stay held for you"
                                                 if left > 0 else "")
                          + f" · {UNDO_KEY.upper()} takes this page back")
        state.grid_pages = state.get("grid_pages", 0) + 1
        state.grid_last = values
    state.grid_cards = None
    state.label_cards = state.label_refill = None  # the label page re-reads what it holds


def _undo() -> None:
    """Take back the last saved page (one decision): its crops come back first, as they were."""
    try:
        back = labeling.undo(ws, me["id"])
    except AnnotatorError as exc:
        state.grid_msg = f"nothing undone: {exc}"
        return
    if not back:
        state.grid_msg = "nothing to undo"
        return
    state.grid_restore = {c.crop_id: (state.get("grid_last") or {}).get(c.crop_id) for c in back}
    state.grid_msg = f"took back your last decision on {len(back)} crops: they are below again"
    state.grid_cards = None
    state.label_cards = state.label_refill = None


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
MODEL = crop_cards.active_model(ws)
start_text = ("Every crop starts at the model's guess." if MODEL is not None else
              "No model yet: every crop starts <b>undecided</b> (dashed) and only the crops you "
              "set are saved.")
st.html(f'<p>{start_text} <kbd>←</kbd><kbd>→</kbd><kbd>↑</kbd><kbd>↓</kbd> or a click move '
        f'the yellow cursor, a label key sets that crop, <kbd>{SUBMIT_KEY.upper()}</kbd> saves '
        f'the decided crops, <kbd>{UNDO_KEY.upper()}</kbd> takes back the last saved page, '
        f'<kbd>?</kbd> lists the keys.</p><p>{legend}</p>')
widgets.keyboard_help(
    [("← → ↑ ↓", "move the cursor (a click too: it never changes a label)")]
    + [(KEYS[v].upper(), f"{v.replace('_', ' ')} for the crop under the cursor, then the next")
       for v in CHOICES]
    + [(SUBMIT_KEY.upper(), "save the decided crops of this page (undecided ones stay held)"),
       (UNDO_KEY.upper(), "take back the whole last saved page"), ("?", "this help")],
    key="grid_help")
if state.get("grid_msg"):
    st.info(state.grid_msg)
common.instructions_panel()
if not cards:
    st.success("Nothing left to label right now.")
    if st.button("Check again"):
        state.grid_cards = None
        st.rerun()
    st.stop()

trail.record_shown(ws, state, "grid", me["name"], "grid", [c.crop_id for c in cards])  # privacy
restore = state.pop("grid_restore", None) or {}
# No model, no guess: undecided (None), never a default class that g would save unseen.
start = {c.crop_id: restore.get(c.crop_id) or (c.guess if c.guess in CHOICES else None)
         for c in cards}
counts = {v: list(start.values()).count(v) for v in [*CHOICES, None]}
st.caption(" · ".join(f"{v or 'undecided'}: {n}" for v, n in counts.items() if n)
           + f" · {len(cards)} crops (counts at the start of the page)")
event = widgets.label_grid(
    [{"id": c.crop_id, "src": c.data_uri(), "value": start[c.crop_id]} for c in cards],
    choices=CHOICES, colours=COLOURS, keys={KEYS[v]: v for v in CHOICES},
    submit_key=SUBMIT_KEY, undo_key=UNDO_KEY, per_row=per_row, px=crop_px, pixelated=pixelated,
    key=f"grid_{state.grid_page}")
if event is not None:
    action, values = event
    if action == "undo":
        _undo()
    else:
        _save(values)
    st.rerun()
