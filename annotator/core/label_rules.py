"""Pure rules of labels: the majority of a crop's votes (a tie decides nothing)."""
from __future__ import annotations

from collections import Counter
from typing import Sequence


def majority(values: Sequence[str]) -> str | None:
    """The most common value, or None on a tie."""
    if not values:
        return None
    ranked = Counter(values).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]
