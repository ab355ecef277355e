"""Label page: one crop at a time, one key per decision, the next crop already loaded.

Beside the crop: the frame around it (on by default for crops under 64 px) and the other kept
crops of the same track; Shift + a label key decides the whole strip at once.
"""
from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor

import streamlit as st

from annotator.data import trail
from annotator.service import crop_cards, labeling
from annotator.core.config import NOT_A_FACE, SKIP
from annotator.core.errors import AnnotatorError, QueueError
from pages import common, session, widgets

ws = common.workspace()
me = common.require_user()
cfg = ws.config.sampling
state = st.session_state
KEYS = labeling.shortcuts(ws.config.labels)
DECISIONS = [*ws.config.labels, NOT_A_FACE, SKIP]
COLOURS = {v: widgets.colour_of(v, ws.config.labels) for v in DECISIONS}
# Crops held for one annotator at a time: few, so a second annotator is never shown an empty
# queue that is only held; topped up in the background when half of them are decided.
HOLD = min(cfg.claim_size, 5)


@st.cache_resource(show_spinner=False)
def _prefetcher() -> ThreadPoolExecutor:
    """Claims the next batch in the background while the annotator works on this one."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefetch")


def _claim(size: int):
    return labeling.claim(ws, me["id"], size)


def _merge(cards, more):
    """Append newly claimed crops; crops decided meanwhile (the claim ran in the background)
    are left out."""
    seen = {c.crop_id for c in cards} | state.setdefault("label_decided", set())
    return cards + [c for c in more if c.crop_id not in seen]


def _cards() -> list:
    """The annotator's batch, current crop first; claimed on first use, refilled ahead of time."""
    if state.get("label_cards") is None:
        state.label_cards = _claim(HOLD)
        state.label_refill = None
    state.holding = True  # app.py gives them back when the annotator leaves the page
    cards = state.label_cards
    refill = state.get("label_refill")
    if refill is not None and (refill.done() or not cards):
        state.label_refill = None
        try:
            cards = state.label_cards = _merge(cards, refill.result())
        except AnnotatorError as exc:
            state.label_msg = str(exc)
    if len(cards) <= HOLD // 2 and state.get("label_refill") is None:
        state.label_refill = _prefetcher().submit(_claim, HOLD)  # held ones + a top-up
    return cards


def _still_signed_in() -> bool:
    """Every decision re-checks the account: a disabled annotator stops at the next key."""
    return session.resume(ws) is not None


def _drop(ids, *, counted: bool) -> None:
    """Take decided crops off the batch; ``counted``: they are this session's labels."""
    state.setdefault("label_decided", set()).update(ids)
    state.label_cards = [c for c in state.get("label_cards") or [] if c.crop_id not in ids]
    if counted:
        state.setdefault("label_times", []).extend([time.monotonic()] * len(ids))
        state.label_done = state.get("label_done", 0) + len(ids)


def _decide(value: str, whole_track: bool = False) -> None:
    cards = state.get("label_cards") or []
    if not cards:
        return
    if not _still_signed_in():
        state.label_cards = None
        return
    card = cards[0]
    seconds = round(time.monotonic() - state.get("label_shown_t", time.monotonic()), 2)
    try:
        if whole_track:
            done = labeling.submit_track(ws, me["id"], card, value, seconds=seconds)
            state.label_msg = f"{value} for {len(done)} crops of track {card.track_id}"
        else:
            labeling.submit(ws, me["id"], card.crop_id, value, seconds=seconds)
            done = [card.crop_id]
            state.label_msg = None
    except QueueError as exc:  # e.g. labeled on the grid page meanwhile: move on
        state.label_msg = str(exc)
        _drop({card.crop_id}, counted=False)
        return
    except AnnotatorError as exc:
        state.label_msg = str(exc)
        return
    _drop(set(done), counted=True)


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
    # The undone crop comes back with its track strip and context view.
    back = crop_cards.cards(ws, [(c.crop_id, "undo") for c in back[:1]], annotator_id=me["id"]) + back[1:]
    state.label_cards = [*back, *rest]
    state.label_done = max(0, state.get("label_done", 0) - len(ids))
    times = state.get("label_times", [])
    state.label_times = times[: max(0, len(times) - len(ids))]
    state.label_msg = (f"undid your last decision on crop #{back[0].crop_id}" if len(ids) == 1
                       else f"undid your last decision (a track or a grid page) on "
                       f"{len(ids)} crops")


with st.sidebar:
    show_guess = st.toggle("Show model guess", value=True, key="opt_guess",
                           help="Hide it to avoid anchoring on the model.")
    context_mode = st.radio("Frame around the crop", ["small crops", "always", "never"],
                            key="opt_context", help="Small crops: under 64 px, where the crop "
                            "alone is hard to decide.")
    pixelated = st.toggle("Pixelated upscaling", value=False, key="opt_pixel",
                          help="Off: smooth upscaling (reads better on tiny crops).")
    size = st.slider("Crop size (px)", 128, 640, 320, 32, key="opt_size")

widgets.button_colours({f"btn_{v}": COLOURS[v] for v in DECISIONS if v != SKIP}
                       | {f"trk_{v}": COLOURS[v] for v in ws.config.labels + [NOT_A_FACE]})
widgets.keyboard_help(
    [(KEYS[v].upper(), v.replace("_", " ")) for v in DECISIONS]
    + [(f"Shift+{KEYS[v].upper()}", f"{v.replace('_', ' ')}: the whole track strip")
       for v in [*ws.config.labels, NOT_A_FACE]]
    + [(KEYS["undo"].upper(), "undo (a track decision at once)"), ("?", "this help")],
    key="label_help")


def _strip_html(card) -> str:
    if not card.strip:
        return ""
    thumbs = []
    for m in card.strip:
        colour = COLOURS.get(m.label or "", "#bbb")
        badge = html.escape(m.label or ("open" if m.decidable else "held"))
        thumbs.append(
            f'<figure style="margin:0;text-align:center;font-size:.7rem">'
            f'<img src="{m.data_uri()}" width="64" height="64" data-strip-id="{m.crop_id}" '
            f'style="object-fit:cover;border:3px solid {colour};border-radius:4px;'
            f'opacity:{1 if m.decidable else .55}" alt="crop {m.crop_id}"/>'
            f'<figcaption>{badge}</figcaption></figure>')
    open_n = sum(m.decidable for m in card.strip)
    more = f"{len(card.strip)} more {'crop' if len(card.strip) == 1 else 'crops'}"
    # A column beside the crop and its frame (3 thumbnails a row), not a row below them:
    # Shift + key needs a look at the strip, and below the fold it is not seen.
    return (f'<div class="track-strip" style="flex:0 0 222px">'
            f'<p style="margin:0 0 .4rem;font-size:.85rem">Same person (track {card.track_id}'
            f'{", " + html.escape(card.source_name) if card.source_name else ""}): {more}, '
            f'{open_n} open · <b>Shift</b> + key labels all open ones</p>'
            f'<div style="display:flex;gap:6px;flex-wrap:wrap">{"".join(thumbs)}</div></div>')


def _end_of_queue() -> None:
    st.success("Nothing left to label right now.")
    done = state.get("label_done", 0)
    others = labeling.held_by_others(ws, me["id"])
    if done:
        st.markdown(f"You labeled **{done}** crops in this session.")
    elif not others:
        st.markdown("The queue is empty.")
    if others:  # not empty: held by someone else for now
        st.info(others)
    if me["role"] == "admin":
        st.markdown("Next: **retrain** so the queue is re-ranked by a model that learned from "
                    "these labels, or **extract** more footage.")
        cols = st.columns(3)
        cols[0].page_link("admin_models.py", label="Retrain on the Models page",
                          icon=":material/model_training:")
        cols[1].page_link("admin_extract.py", label="Extract more footage",
                          icon=":material/movie:")
    else:
        st.markdown("Next: ask an admin to **retrain** (the queue is then re-ranked) or to "
                    "extract more footage. Meanwhile you can check your recent labels.")
    st.page_link("browse.py", label="Your recent labels", icon=":material/history:")
    if st.button("Check again"):
        state.label_cards = None
        st.rerun()


@st.fragment
def panel() -> None:
    """The crop, its context and track, the decision keys and the counters. A key press reruns
    only this fragment (not the navigation and the sidebar), so the next crop appears quickly."""
    try:
        cards = _cards()
    except AnnotatorError as exc:
        st.error(str(exc))
        return
    if state.get("label_msg"):
        st.info(state.label_msg)
    if not cards:
        _end_of_queue()
        return

    card = cards[0]
    if state.get("label_shown_id") != card.crop_id:
        state.label_shown_id, state.label_shown_t = card.crop_id, time.monotonic()
    done = state.get("label_done", 0)
    pace = labeling.pace(state.get("label_times", []), time.monotonic())
    rate = labeling.rate(ws, me["id"])
    left = labeling.queue_left(ws)
    pace_text = f"<b>{pace:,.0f}</b> labels/h (last 15 min)" if pace else "labels/h after 10 labels"
    counters = (f"<b>{done}</b> labeled this session · {pace_text} · <b>{rate.last_hour}</b> in "
                f"the last hour · {rate.today} today · <b>{left:,}</b> left in the queue")
    about = (f"crop #{card.crop_id} · {card.width}x{card.height}px · "
             f"{html.escape(card.source_name or '')} · picked by {card.sampling or 'queue'}"
             + (" · second vote" if card.votes_needed > 1 else ""))
    guess = f"<p><b>{common.guess_text(card)}</b></p>" if show_guess else ""
    show_context = card.context is not None and (
        context_mode == "always" or (context_mode == "small crops" and card.small))
    context = (f'<figure style="margin:0;flex:1 1 0;min-width:0;max-width:'
               f'{crop_cards.CONTEXT_WIDTH}px"><img src="{card.context_uri()}" '
               f'class="context-view" alt="frame around crop {card.crop_id}" '
               f'style="border-radius:4px;width:100%;height:auto"/><figcaption '
               f'style="font-size:.8rem;opacity:.7">frame {card.frame_index}, around the head'
               f'</figcaption></figure>') if show_context else ""
    if state.get("trail_shown_id") != card.crop_id:  # privacy: the audit trail, off the key path
        state.trail_shown_id = card.crop_id
        trail.record_later(ws, me["name"], trail.VIEW, page="label", crop_ids=[card.crop_id])
        if show_context:
            trail.record_later(ws, me["name"], trail.CONTEXT, page="label", crop_ids=[card.crop_id],
                               detail={"frame": card.frame_index})
    if not show_context and card.frame_gone and context_mode != "never":  # privacy: retention
        context = ('<p class="frame-gone" style="opacity:.7;font-size:.85rem">frame is gone: '
                   'its source was deleted (retention or erasure)</p>')
    # One HTML block + one row of buttons per key press: every element is one message from the
    # server, and the next crop appears sooner with ~8 of them than with ~25. Crop, frame and
    # track strip side by side, each shrinking to fit: all of it above the fold at 1366x768.
    st.html(
        '<style>.label-panel .crop-col img{max-width:100%;height:auto}</style>'
        f'<div class="label-panel"><p>{counters}</p>'
        f'<div style="display:flex;gap:1.2rem;align-items:flex-start">'
        f'<div class="crop-col" style="flex:0 1 {size}px;min-width:120px">'
        f'{common.crop_html(card, size=size, pixelated=pixelated)}'
        f'<p class="crop-about" style="opacity:.7;font-size:.85rem">{about}</p>{guess}</div>'
        f'{context}{_strip_html(card)}</div>'
        f'<p style="opacity:.6;font-size:.8rem">{len(cards)} '
        f'{"crop" if len(cards) == 1 else "crops"} held for you; they go back to the queue when '
        f'you leave this page or sign out. Press ? for every key.</p></div>'
    )
    with st.container(horizontal=True):
        for value in ws.config.labels:
            st.button(value, key=f"btn_{value}", shortcut=KEYS[value], on_click=_decide,
                      args=(value,))
        st.button("not a face", key="btn_not_a_face", shortcut=KEYS[NOT_A_FACE],
                  on_click=_decide, args=(NOT_A_FACE,))
        st.button("skip", key="btn_skip", shortcut=KEYS[SKIP], on_click=_decide, args=(SKIP,))
        st.button("undo", key="btn_undo", shortcut=KEYS["undo"], on_click=_undo)
    if any(m.decidable for m in card.strip):
        with st.container(horizontal=True):
            for value in [*ws.config.labels, NOT_A_FACE]:
                st.button(f"{value.replace('_', ' ')}: whole track", key=f"trk_{value}",
                          shortcut=f"Shift+{KEYS[value]}", on_click=_decide,
                          args=(value, True))


panel()
common.instructions_panel()
