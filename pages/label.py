"""Label page: one crop at a time, one key per decision, the next crop already loaded."""
from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor

import streamlit as st

from annotator import labeling
from annotator.config import NOT_A_FACE, SKIP
from annotator.errors import AnnotatorError, QueueError
from pages import common

ws = common.workspace()
me = common.require_user()
cfg = ws.config.sampling
state = st.session_state
KEYS = labeling.shortcuts(ws.config.labels)


@st.cache_resource(show_spinner=False)
def _prefetcher() -> ThreadPoolExecutor:
    """Claims the next batch in the background while the annotator works on this one."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefetch")


def _merge(cards, more):
    """Append newly claimed crops; crops decided meanwhile (the claim ran in the background)
    are left out."""
    seen = {c.crop_id for c in cards} | state.setdefault("label_decided", set())
    return cards + [c for c in more if c.crop_id not in seen]


def _cards() -> list:
    """The annotator's batch, current crop first; claimed on first use, refilled ahead of time."""
    if state.get("label_cards") is None:
        state.label_cards = labeling.claim(ws, me["id"], cfg.batch_size)
        state.label_refill = None
    cards = state.label_cards
    refill = state.get("label_refill")
    if refill is not None and (refill.done() or not cards):
        state.label_refill = None
        try:
            cards = state.label_cards = _merge(cards, refill.result())
        except AnnotatorError as exc:
            state.label_msg = str(exc)
    if len(cards) <= max(2, cfg.batch_size // 2) and state.get("label_refill") is None:
        state.label_refill = _prefetcher().submit(
            labeling.claim, ws, me["id"], len(cards) + cfg.batch_size)
    return cards


def _decide(value: str) -> None:
    cards = state.get("label_cards") or []
    if not cards:
        return
    card = cards[0]
    seconds = time.monotonic() - state.get("label_shown_t", time.monotonic())
    try:
        labeling.submit(ws, me["id"], card.crop_id, value, seconds=round(seconds, 2))
    except QueueError as exc:  # e.g. labeled on the grid page meanwhile: move on
        state.label_msg = str(exc)
    except AnnotatorError as exc:
        state.label_msg = str(exc)
        return
    else:
        state.label_done = state.get("label_done", 0) + 1
        state.label_msg = None
    state.setdefault("label_decided", set()).add(card.crop_id)
    state.label_cards = cards[1:]


def _undo() -> None:
    try:
        back = labeling.undo(ws, me["id"])
    except AnnotatorError as exc:
        state.label_msg = str(exc)
        return
    if not back:
        state.label_msg = "nothing to undo"
        return
    ids = {c.crop_id for c in back}
    state.setdefault("label_decided", set()).difference_update(ids)
    rest = [c for c in state.get("label_cards") or [] if c.crop_id not in ids]
    state.label_cards = [*back, *rest]
    state.label_done = max(0, state.get("label_done", 0) - len(back))
    state.label_msg = (f"undid your last decision on crop #{back[0].crop_id}" if len(back) == 1
                       else f"undid your track decision on {len(back)} crops")


@st.cache_data(max_entries=64, show_spinner=False)
def _frame(_card, crop_id: int, pad: float):
    return labeling.frame_context(_card, pad=pad)


with st.sidebar:
    show_guess = st.toggle("Show model guess", value=True, key="opt_guess",
                           help="Hide it to avoid anchoring on the model.")
    pixelated = st.toggle("Pixelated upscaling", value=True, key="opt_pixel")
    show_frame = st.toggle("Show frame around the crop", value=False, key="opt_frame")
    size = st.slider("Crop size (px)", 128, 640, 360, 32, key="opt_size")



@st.fragment
def panel() -> None:
    """The crop, the decision keys and the counters. A key press reruns only this fragment
    (not the navigation and the sidebar), which keeps the next crop quick to appear."""
    try:
        cards = _cards()
    except AnnotatorError as exc:
        st.error(str(exc))
        return

    if "label_started" not in state:
        state.label_started = time.monotonic()
    done = state.get("label_done", 0)
    elapsed_h = max((time.monotonic() - state.label_started) / 3600, 1 / 3600)
    rate = labeling.rate(ws, me["id"])
    pace = int(done / elapsed_h) if done else 0
    if state.get("label_msg"):
        st.info(state.label_msg)

    if not cards:
        st.success("Nothing left to label right now.")
        if st.button("Check again"):
            state.label_cards = None
            st.rerun()
        return

    card = cards[0]
    if state.get("label_shown_id") != card.crop_id:
        state.label_shown_id, state.label_shown_t = card.crop_id, time.monotonic()

    # Few elements per key press: every element is one message from the server, and the next
    # crop appears sooner when the fragment sends ~8 of them instead of ~25.
    counters = (f"<b>{done}</b> labeled this session · <b>{pace}</b> labels/h · "
                f"<b>{rate.last_hour}</b> in the last hour · {rate.today} today")
    about = (f"crop #{card.crop_id} · {card.width}x{card.height}px · "
             f"{html.escape(card.source_name or '')} · picked by {card.sampling or 'queue'}"
             + (" · second vote" if card.votes_needed > 1 else ""))
    guess = f"<p><b>{common.guess_text(card)}</b></p>" if show_guess else ""
    st.html(
        f'<div class="label-panel"><p>{counters}</p>'
        f'<div style="display:flex;gap:2rem;align-items:flex-start;flex-wrap:wrap">'
        f'<div>{common.crop_html(card, size=size, pixelated=pixelated)}'
        f'<p class="crop-about" style="opacity:.7;font-size:.85rem">{about}</p></div>'
        f'<div>{guess}<p style="opacity:.7;font-size:.85rem">{len(cards)} crops held for you; '
        f'they return to the queue {cfg.lease_seconds // 60} min after you leave.</p></div>'
        f'</div></div>'
    )
    with st.container(horizontal=True):
        for value in ws.config.labels:
            st.button(value, key=f"btn_{value}", shortcut=KEYS[value], on_click=_decide,
                      args=(value,), type="primary")
        st.button("not a face", key="btn_not_a_face", shortcut=KEYS[NOT_A_FACE],
                  on_click=_decide, args=(NOT_A_FACE,))
        st.button("skip", key="btn_skip", shortcut=KEYS[SKIP], on_click=_decide, args=(SKIP,))
        st.button("undo", key="btn_undo", shortcut=KEYS["undo"], on_click=_undo)

    if show_frame:
        if card.has_frame:
            view = _frame(card, card.crop_id, 1.5)
            if view is not None:
                st.image(view, caption=f"frame {card.frame_index} of {card.source_name}")
            else:
                st.caption("could not read that frame")
        else:
            st.caption("no source video on disk for this crop")


panel()
