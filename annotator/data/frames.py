"""Query rows -> DataFrames (the read models' one conversion, kept fast)."""
from __future__ import annotations

import pandas as pd
from sqlalchemy.orm import Session


def frame(rows, columns) -> pd.DataFrame:
    # Plain tuples: pandas probes each Row object otherwise (7x slower on 3,000 rows).
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def select_frame(session: Session, q) -> pd.DataFrame:
    return frame(session.execute(q).all(), list(q.selected_columns.keys()))
