"""Browse page: your recent labels (fix a mistake in one click), and every crop by source,
track, label, annotator and date."""
from __future__ import annotations

import datetime as dt
import html

import streamlit as st

from annotator.data import trail
from annotator.service import accounts, crop_cards, labeling, review
from annotator.core.config import NOT_A_FACE
from annotator.core.errors import AnnotatorError
from pages import common, widgets
from pages import slices_view

ws = common.workspace()
me = common.require_user()
state = st.session_state
admin = me["role"] == "admin"
CHOICES = [*ws.config.labels, NOT_A_FACE]
PER_ROW = 6



PAGE = 60  # crops a page


def _relabel_selected(ids: list[int], value: str) -> None:
    """Button callback: one decision for every ticked crop (each its own relabel)."""
    done, refused = 0, []
    for cid in ids:
        try:
            review.relabel(ws, me["id"], cid, value)
            done += 1
        except AnnotatorError as exc:
            refused.append(str(exc))
        state.pop(f"sel_{cid}", None)
    state.browse_msg = (f"{done} crops are now {value}"
                        + (f"; {len(refused)} refused: {refused[0]}" if refused else ""))


def show(cards, section: str, *, can_relabel: bool, select: bool = False) -> None:
    if not cards:
        st.caption("nothing here")
        return
    trail.record_shown(ws, st.session_state, f"browse_{section}", me["name"], "browse",
                       [c.crop_id for c in cards])  # privacy: the audit trail
    for start in range(0, len(cards), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, card in zip(cols, cards[start:start + PER_ROW]):
            with col:
                colour = widgets.colour_of(card.label or "", ws.config.labels)
                common.show_crop(card, size=112, pixelated=False,
                                 border=colour if card.label else None)
                where = (f"track {card.track_id} of {html.escape(card.source_name or '?')}"
                         if card.track_id is not None else html.escape(card.source_name or ""))
                st.caption(f"#{card.crop_id} · {html.escape(card.label or 'unlabeled')} · "
                           f"{where}")
                if select:
                    st.checkbox("select", key=f"sel_{card.crop_id}")
                elif can_relabel:
                    for value in CHOICES:
                        if value != card.label:
                            st.button(f"→ {value.replace('_', ' ')}", on_click=common.relabel,
                                      args=(card.crop_id, value), width="stretch",
                                      kwargs={"message_key": "browse_msg"},
                                      key=f"{section}_{card.crop_id}_{value}")


st.title("Browse")
if state.get("browse_msg"):
    st.info(state.browse_msg)
# A radio, not st.tabs: a relabel reruns the page, and the tabs jumped back to the first one.
if slices_view.slice_requested():  # a slice opened from the Dashboard is shown among all crops
    state.browse_view = "All crops"
view = st.radio("Show", ["My recent labels", "All crops"], horizontal=True, key="browse_view",
                label_visibility="collapsed")
if view == "My recent labels":
    st.caption("Your latest decisions, newest first. A click replaces the label (the old one "
               "stays in the history).")
    show(labeling.my_recent(ws, me["id"], limit=30), "mine", can_relabel=True)
else:
    sources = labeling.sources(ws)
    people = accounts.users(ws)["name"].tolist()
    c1, c2, c3, c4 = st.columns(4)
    names = ["any"] + [f"{r.id}: {r.name}" for r in sources.itertuples(index=False)]
    source = c1.selectbox("Source", names, key="browse_source")
    track = c2.number_input("Track", min_value=0, value=None, step=1, key="browse_track")
    label = c3.selectbox("Label", ["any", *CHOICES, "skip"], key="browse_label")
    who = c4.selectbox("Annotator", ["any", *people], key="browse_who")
    c5, c6, c7 = st.columns(3)
    since = c5.date_input("Labeled from", value=None, key="browse_since")
    until = c6.date_input("Labeled until", value=None, key="browse_until")
    model = crop_cards.active_model(ws)
    unsure = c7.slider("Model uncertainty at least (1 = a coin toss)", 0.0, 1.0, 0.0, 0.05,
                       key="browse_unsure", disabled=model is None,
                       help="Only crops the active model is this unsure about.")
    filters = {
        "source_id": None if source == "any" else int(source.split(":")[0]),
        "track_id": None if track is None else int(track),
        "label": None if label == "any" else label,
        "annotator": None if who == "any" else who,
        "since": None if since is None else dt.datetime.combine(since, dt.time()),
        "until": None if until is None else dt.datetime.combine(until, dt.time()) + dt.timedelta(days=1),
        "model_version_id": None if model is None else model.id,
        "min_uncertainty": unsure if model is not None and unsure > 0 else None,
    }
    filters.update(slices_view.browse_filter(ws))  # a slice opened from the Dashboard
    key = repr(sorted(filters.items(), key=lambda kv: kv[0]))
    if state.get("browse_filters") != key:  # other filters: back to the first page
        state.browse_filters, state.browse_page = key, 0
    page = state.get("browse_page", 0)
    found = labeling.browse(ws, limit=PAGE + 1, offset=page * PAGE, **filters)
    more, found = len(found) > PAGE, found[:PAGE]
    nav = st.columns([1, 1, 4])
    if nav[0].button("← Previous", key="browse_prev", disabled=page == 0):
        state.browse_page = page - 1
        st.rerun()
    if nav[1].button("Next →", key="browse_next", disabled=not more):
        state.browse_page = page + 1
        st.rerun()
    nav[2].caption(f"page {page + 1} · crops {page * PAGE + 1 if found else 0}–"
                   f"{page * PAGE + len(found)}" + ("" if admin else " · only admins relabel "
                   "other people's crops here; yours: the first view"))
    if admin and found:
        ticked = [c.crop_id for c in found if state.get(f"sel_{c.crop_id}")]
        bar = st.columns(len(CHOICES) + 1)
        bar[0].caption(f"{len(ticked)} selected")
        for col, value in zip(bar[1:], CHOICES):
            col.button(f"selected → {value.replace('_', ' ')}", key=f"bulk_{value}",
                       disabled=not ticked, on_click=_relabel_selected, args=(ticked, value),
                       width="stretch")
    show(found, "all", can_relabel=admin, select=admin)
