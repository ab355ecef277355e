"""Shared fixtures. Real-data tests read ../shared/data (override: ANNOTATOR_SHARED_DATA)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder. Missing on CI is a failure, not a skip."""
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path} (set ANNOTATOR_SHARED_DATA)")
        pytest.skip(f"real data not available at {path}")
    return path


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest leaves the page script as ``sys.modules["__main__"]``; a later
    spawn-based worker pool (parallel extraction) would then re-run that page in every child.
    Put the real one back after each test."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture
def workspace(tmp_path):
    from annotator.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    yield ws
    ws.dispose()


def write_image_folder(root: Path, counts: dict[str, int], *, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder of small distinct PNGs made in code (no real data needed)."""
    import cv2

    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / label / f"{label}_{i:05d}.png"), img)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "folder", {"mask": 12, "no_mask": 9})
