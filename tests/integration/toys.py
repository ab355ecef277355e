"""What several integration tests share: a learnable toy ImageFolder made in code, and the CLI
called in-process (``cli``) or for its JSON report (``ok_json``)."""
from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok_json(*args):
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def write_toy_folder(root, counts, *, seed=0):
    """``root/<label>/*.png`` with ``counts[label]`` pictures each: 'mask' = dark lower half,
    'no_mask' = bright lower half, learnable in an epoch or two."""
    import cv2

    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(90, 170, (48, 48, 3)).astype(np.uint8)
            lo, hi = (0, 40) if label == "mask" else (200, 255)
            img[26:, 8:40] = rng.integers(lo, hi, (22, 32, 3))
            cv2.imwrite(str(root / label / f"{label}_{i:04d}.png"), img)
    return root
