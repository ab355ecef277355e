"""Browse page: your recent labels (fix a mistake in one click), and every crop by source,
track, label, annotator and date."""
from __future__ import annotations

import datetime as dt
import html

import streamlit as st

from annotator import labeling, team, trail
from annotator.config import NOT_A_FACE
from pages import common, widgets
from pages import slices_view

ws = common.workspace()
me = common.require_user()
state = st.session_state
admin = me["role"] == "admin"
CHOICES = [*ws.config.labels, NOT_A_FACE]
PER_ROW = 6



def show(cards, section: str, *, can_relabel: bool) -> None:
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
                st.caption(f"#{card.crop_id} · {html.escape(card.label or 'unlabeled')} · "
                           f"track {card.track_id if card.track_id is not None else '-'}")
                if can_relabel:
                    for value in CHOICES:
                        if value != card.label:
                            st.button(f"→ {value.replace('_', ' ')}", on_click=common.relabel,
                                      args=(card.crop_id, value), width="stretch",
                                      kwargs={"message_key": "browse_msg"},
                                      key=f"{section}_{card.crop_id}_{value}")


st.title("Browse")
if state.get("browse_msg"):
    st.info(state.browse_msg)
mine, everything = st.tabs(["My recent labels", "All crops"])
with mine:
    st.caption("Your latest decisions, newest first. A click replaces the label (the old one "
               "stays in the history).")
    show(labeling.my_recent(ws, me["id"], limit=30), "mine", can_relabel=True)
with everything:
    sources = labeling.sources(ws)
    people = team.users(ws)["name"].tolist()
    c1, c2, c3, c4 = st.columns(4)
    names = ["any"] + [f"{r.id}: {r.name}" for r in sources.itertuples(index=False)]
    source = c1.selectbox("Source", names, key="browse_source")
    track = c2.number_input("Track", min_value=0, value=None, step=1, key="browse_track")
    label = c3.selectbox("Label", ["any", *CHOICES, "skip"], key="browse_label")
    who = c4.selectbox("Annotator", ["any", *people], key="browse_who")
    c5, c6 = st.columns(2)
    since = c5.date_input("Labeled from", value=None, key="browse_since")
    until = c6.date_input("Labeled until", value=None, key="browse_until")
    filters = {
        "source_id": None if source == "any" else int(source.split(":")[0]),
        "track_id": None if track is None else int(track),
        "label": None if label == "any" else label,
        "annotator": None if who == "any" else who,
        "since": None if since is None else dt.datetime.combine(since, dt.time()),
        "until": None if until is None else dt.datetime.combine(until, dt.time()) + dt.timedelta(days=1),
    }
    filters.update(slices_view.browse_filter(ws))  # a slice opened from the Dashboard
    found = labeling.browse(ws, limit=60, **filters)
    st.caption(f"{len(found)} crops (at most 60 shown)" + ("" if admin else
               " · only admins relabel other people's crops here; yours: the first tab"))
    show(found, "all", can_relabel=admin)
