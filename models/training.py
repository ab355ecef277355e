"""Array-level training for ``OFMClassifier`` (no workspace, no database).

Images are uint8 RGB arrays ``(N, 45, 45, 3)``; labels are class indices ``(N,)``. Every batch
is preprocessed and augmented as one tensor (no per-image Python work), so the network, not the
input pipeline, sets the speed. Inference (PyTorch, ONNX Runtime, int8) is
:mod:`models.inference`; ``fit`` uses its ``predict`` for the validation epochs.

Public API (also used by the active-learning simulator; images are read by
``annotator.media.images`` and ``annotator.media.cache``, whose memory-mapped arrays ``fit`` accepts):

- ``fit(model, train_x, train_y, val_x, val_y, *, epochs, batch_size, lr, seed, ...) -> History``
- ``augment_batch(x, generator)`` and ``load_mask_overlays(folder, ...)``
- ``train_threads()``: intra-op threads for training on the CPU
"""
from __future__ import annotations

import copy
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from annotator.core.errors import InputError
from annotator.core.metrics import balanced_accuracy
from annotator.core.progress import ProgressFn
from models.inference import default_device, predict, to_tensor
from models.ofm import INPUT_SIZE

__all__ = [
    "augment_batch",
    "prepare_batch",
    "SyntheticMasks",
    "load_mask_overlays",
    "balanced_indices",
    "History",
    "fit",
    "train_threads",
]

# --- augmentation -----------------------------------------------------------------------------


def train_threads(*, busy: bool | None = None) -> int:
    """Intra-op threads for training steps on the CPU: every core on a quiet machine, one when
    other work already keeps the cores busy (``busy``; None: the 1-minute load average is at
    least the number of cores). Beside other work, threads that share a core wait for each
    other at every op; ``bench.train --with-load`` measures the policies side by side."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if busy is None:
        busy = os.getloadavg()[0] >= cores if hasattr(os, "getloadavg") else False
    return 1 if busy else cores


@contextmanager
def _one_thread(device: torch.device):
    """Run small tensor ops on one CPU thread: batches of 45x45 crops are too small to gain
    from intra-op threads, and on a busy machine the thread hand-offs cost far more than the
    work (measured: 5 ms per batch of 16 on one thread vs 40-170 ms on two, 2 shared cores)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _rand(n, lo, hi, g, device):
    return torch.rand(n, generator=g).mul_(hi - lo).add_(lo).to(device)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with edge replication, as sums of shifted slices (tiny images:
    cheaper than a depthwise convolution)."""
    radius = max(1, int(math.ceil(2 * sigma)))
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).tolist()
    h, w = x.shape[-2:]
    xp = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    rows = sum(kv * xp[..., i: i + w] for i, kv in enumerate(k))
    return sum(kv * rows[..., i: i + h, :] for i, kv in enumerate(k))


def _on_some(x: torch.Tensor, p: float, g: torch.Generator, fn) -> torch.Tensor:
    """Apply ``fn`` to a random share ``p`` of the batch only (in place on ``x``)."""
    idx = torch.nonzero(torch.rand(x.shape[0], generator=g) < p).flatten().to(x.device)
    if idx.numel():
        x[idx] = fn(x[idx])
    return x


def augment_batch(x: torch.Tensor, g: torch.Generator, *, strength: float = 1.0) -> torch.Tensor:
    """CCTV-style augmentation of a whole batch at once (about 20 tensor ops per batch).

    Per sample: horizontal flip, small shift / zoom / rotation, low resolution (downscale then
    upscale), blur, brightness and contrast, grey (night) and sensor noise.

    Parameters
    ----------
    x : float (B, 3, H, W) in [0, 1]
    g : torch.Generator (CPU) for reproducible draws
    """
    b, _, h, w = x.shape
    dev = x.device
    # Geometry: one affine grid for flip, shift (up to ~9% of the side), zoom and rotation.
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0).to(dev)
    zoom = _rand(b, 1 - 0.1 * strength, 1 + 0.1 * strength, g, dev)
    angle = _rand(b, -0.17 * strength, 0.17 * strength, g, dev)  # about +-10 degrees
    tx, ty = (_rand(b, -0.18 * strength, 0.18 * strength, g, dev) for _ in range(2))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Output pixel centres in [-1, 1] mapped through the inverse transform (what affine_grid
    # computes, without its batched matrix product).
    gx = ((torch.arange(w, device=dev) * 2 + 1) / w - 1).view(1, 1, w)
    gy = ((torch.arange(h, device=dev) * 2 + 1) / h - 1).view(1, h, 1)
    v = lambda t: t.view(b, 1, 1)  # noqa: E731
    grid = torch.stack([v(cos * flip) * gx - v(sin) * gy + v(tx),
                        v(sin * flip) * gx + v(cos) * gy + v(ty)], dim=-1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Low resolution: far-away heads are a few pixels wide, upscaled to 45 by the crop step.
    side = int(torch.randint(10, h - 4, (1,), generator=g))
    x = _on_some(x, 0.4 * strength, g, lambda t: F.interpolate(
        F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False),
        size=(h, w), mode="bilinear", align_corners=False))
    # Blur (motion, focus, compression).
    sigma = float(torch.empty(1).uniform_(0.5, 1.3, generator=g))
    x = _on_some(x, 0.3 * strength, g, lambda t: _gaussian_blur(t, sigma))
    # Grey (night, IR cameras).
    x = _on_some(x, 0.1 * strength, g, lambda t: t.mean(dim=1, keepdim=True).expand_as(t))
    # Brightness / contrast around each image's mean, and sensor noise (uniform, same variance
    # as a Gaussian of the drawn standard deviation), in one pass.
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _rand(b, 1 - 0.4 * strength, 1 + 0.4 * strength, g, dev).view(b, 1, 1, 1)
    bright = _rand(b, -0.2 * strength, 0.2 * strength, g, dev).view(b, 1, 1, 1)
    noise_sd = _rand(b, 0.0, 0.06 * strength, g, dev).view(b, 1, 1, 1)
    noise = torch.rand(x.shape, generator=g).to(dev).sub_(0.5).mul_(noise_sd * 3.4641)
    x = (x - mean).mul_(contrast).add_(mean + bright).add_(noise)
    return x.clamp_(0.0, 1.0)


@dataclass
class SyntheticMasks:
    """Mask pictures ready to paste on faces (Neuralet's "Extended-Synthetic" idea).

    ``canvases`` holds RGBA float ``(M, 4, 45, 45)``: each a mask placed over the lower face. A
    pasted sample of ``source_class`` (no mask) becomes ``target_class`` (mask).
    """

    canvases: torch.Tensor
    source_class: int
    target_class: int
    p: float = 0.25

    def apply(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator):
        b = x.shape[0]
        pick = (y == self.source_class) & (torch.rand(b, generator=g) < self.p).to(y.device)
        if not bool(pick.any()):
            return x, y
        idx = torch.randint(0, self.canvases.shape[0], (b,), generator=g)
        canvas = self.canvases[idx].to(x.device)
        alpha = canvas[:, 3:4] * pick.view(b, 1, 1, 1)
        x = x * (1 - alpha) + canvas[:, :3] * alpha
        return x, torch.where(pick, torch.full_like(y, self.target_class), y)


def load_mask_overlays(
    folder: Path, *, source_class: int, target_class: int, p: float = 0.25, size: int = INPUT_SIZE
) -> SyntheticMasks:
    """Build ``SyntheticMasks`` from the RGBA PNGs under ``folder`` (searched recursively).

    Each overlay is placed at a few widths and positions over the lower half of a face crop.
    """
    import cv2

    files = sorted(Path(folder).rglob("*.png")) if Path(folder).is_dir() else []
    canvases = []
    for f in files:
        rgba = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            continue
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        ys, xs = np.nonzero(rgba[:, :, 3] > 0)
        if ys.size == 0:
            continue
        rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
        for width in (0.55, 0.7):
            for cx in (0.45, 0.5, 0.55):
                for cy in (0.7, 0.78):
                    canvases.append(_place(rgba, size, width, cx, cy))
    if not canvases:
        raise InputError(f"no RGBA mask PNGs found under {folder}")
    arr = np.stack(canvases).astype(np.float32) / 255.0
    return SyntheticMasks(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), source_class,
                          target_class, p)


def _place(rgba: np.ndarray, size: int, width: float, cx: float, cy: float) -> np.ndarray:
    import cv2

    w = max(2, int(round(width * size)))
    h = max(2, min(size, int(round(w * rgba.shape[0] / rgba.shape[1]))))
    small = cv2.resize(rgba, (w, h), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 4), dtype=np.uint8)
    x0, y0 = int(round(cx * size - w / 2)), int(round(cy * size - h / 2))
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
    canvas[ya:yb, xa:xb] = small[ya - y0: yb - y0, xa - x0: xb - x0]
    return canvas


def prepare_batch(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    g: torch.Generator,
    *,
    device: torch.device | str = "cpu",
    augment: bool = True,
    synthetic: SyntheticMasks | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: uint8 ``(B, 45, 45, 3)`` -> augmented float ``(B, 3, 45, 45)``.

    Conversion, synthetic masks and augmentation run as whole-batch tensor ops on one thread.
    """
    device = torch.device(device)
    with _one_thread(device):
        x = to_tensor(images, device)
        y = torch.as_tensor(labels).to(device)
        if synthetic is not None:
            x, y = synthetic.apply(x, y, g)
        if augment:
            x = augment_batch(x, g)
    return x, y


# --- sampling ---------------------------------------------------------------------------------


def _prefetched(source, batches: list[torch.Tensor]):
    """Yield ``(idx, source[idx])`` (a uint8 tensor) for each index tensor in ``batches``,
    gathering the next batch on a background thread while the caller trains on this one.

    Only the gather (memmap reads, decoding) runs there: augmentation stays on the caller's
    thread, because ``torch.set_num_threads`` is process-wide and the step needs both cores.
    Not pinned and not channels_last on CUDA: neither was measured (no GPU here).
    """
    from concurrent.futures import ThreadPoolExecutor

    def gather(idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(source[idx.numpy()]))

    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(gather, batches[0])
        for i in range(len(batches)):
            cur = nxt.result()
            if i + 1 < len(batches):
                nxt = pool.submit(gather, batches[i + 1])
            yield batches[i], cur


def balanced_indices(labels: np.ndarray, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` training indices drawn with replacement so that every class is equally likely."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(labels).float()
    weights = (1.0 / counts.clamp(min=1))[labels]
    return torch.multinomial(weights, n, replacement=True, generator=g)


# --- training ---------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch ``loss``, ``val_loss``, ``val_accuracy``, ``val_balanced_accuracy``, ``seconds``.

    ``images_per_s`` counts training steps only (augmentation included, validation excluded).
    """

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch finished
    best_val_balanced_accuracy: float | None = None
    images_per_s: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"


def fit(
    model: torch.nn.Module,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    augment: bool = True,
    balanced: bool = True,
    synthetic: SyntheticMasks | None = None,
    progress: ProgressFn | None = None,
    init_state: dict | None = None,
    device: torch.device | str | None = None,
    bn_momentum: float = 0.1,
) -> History:
    """Train ``model`` in place with Adam and cross-entropy; keep the best validation epoch.

    Parameters
    ----------
    train_x : uint8 (N, 45, 45, 3)
        An ndarray, or any array-like whose ``x[index_array]`` returns one (the workspace's
        memory-mapped tensor cache): each batch is gathered on a background thread while the
        previous one trains.
    val_x : uint8 (N, 45, 45, 3)
    train_y, val_y : int (N,) class indices
    balanced : bool
        Draw each epoch's N samples class-balanced (with replacement) instead of a permutation.
    synthetic : SyntheticMasks, optional
        Paste masks on some ``source_class`` samples (they become ``target_class``).
    progress : ProgressFn, optional
        Called after every epoch (stage ``"train"``) with the epoch's row as ``data``.
    init_state : state dict, optional
        Starting weights (e.g. the active model's).
    bn_momentum : float
        BatchNorm running-statistics momentum while training (PyTorch convention). Keras's 0.99
        (0.01 here) needs thousands of steps before the running statistics settle, so short
        retraining rounds on a few hundred crops evaluated badly; 0.1 settles in ~50 steps.

    Returns
    -------
    History
        The model ends holding the weights of the epoch with the best validation balanced
        accuracy (the last epoch when there is no validation set).
    """
    train_y = np.asarray(train_y, dtype=np.int64)
    if len(train_x) != len(train_y) or len(train_x) == 0:
        raise InputError("training set is empty or its images and labels differ in length")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("epochs and batch size must be >= 1 and the learning rate > 0")
    has_val = val_x is not None and len(val_x) > 0
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved_momentum = [m.momentum for m in bns]
    for m in bns:
        m.momentum = bn_momentum
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-7)
    ys = torch.from_numpy(train_y)
    n = len(ys)
    hist = History(device=str(device))
    best_score, best_state = -1.0, None
    t_start = time.perf_counter()
    seen, train_time = 0, 0.0
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = balanced_indices(train_y, n, g) if balanced else torch.randperm(n, generator=g)
            total_loss, steps = 0.0, 0
            batches = [order[s: s + batch_size] for s in range(0, n, batch_size)]
            # BatchNorm cannot train on a single sample
            batches = [b for b in batches if b.numel() >= 2 or n < 2]
            nb = len(batches)  # progress counts batches: it moves inside an epoch too
            for step, (idx, xu8) in enumerate(_prefetched(train_x, batches), 1):
                xb, yb = prepare_batch(xu8, ys[idx], g, device=device, augment=augment,
                                       synthetic=synthetic)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += float(loss.detach())
                steps += 1
                seen += idx.numel()
                if progress is not None and step < nb:
                    progress((epoch - 1) * nb + step, epochs * nb,
                             f"epoch {epoch}/{epochs} · batch {step}/{nb}", stage="train")
            train_time += time.perf_counter() - t0
            row = {"epoch": epoch, "loss": round(total_loss / max(steps, 1), 5)}
            if has_val:
                probs, _ = predict(model, val_x, batch_size=256, device=device)
                vy = np.asarray(val_y, dtype=np.int64)
                p_true = np.clip(probs[np.arange(len(vy)), vy], 1e-7, 1.0)
                row.update(
                    val_loss=round(float(-np.log(p_true).mean()), 5),
                    val_accuracy=round(float((probs.argmax(1) == vy).mean()), 5),
                    val_balanced_accuracy=round(
                        balanced_accuracy(vy, probs.argmax(1), probs.shape[1]), 5),
                )
                score = row["val_balanced_accuracy"]
            else:
                score = float(epoch)  # no validation: the last epoch wins
            row["seconds"] = round(time.perf_counter() - t0, 2)
            hist.epochs.append(row)
            if score > best_score:
                best_score, hist.best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            if progress is not None:
                msg = f"epoch {epoch}/{epochs} done · loss {row['loss']:.3f}"
                if has_val:
                    msg += f" val bal.acc {row['val_balanced_accuracy']:.3f}"
                progress(epoch * nb, epochs * nb, msg, stage="train", data=row)
    finally:
        for m, mom in zip(bns, saved_momentum):
            m.momentum = mom
    if best_state is not None:
        model.load_state_dict(best_state)
    hist.best_val_balanced_accuracy = best_score if has_val and best_state is not None else None
    hist.seconds = round(time.perf_counter() - t_start, 2)
    hist.images_per_s = round(seen / max(train_time, 1e-9), 1)  # training steps only
    model.eval()
    return hist
