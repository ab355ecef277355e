"""The tensor cache: every stored crop decoded once, at the model's input size.

Scoring, training, build-dataset and the simulator read crops as uint8 RGB ``(size, size, 3)``
tensors (``images.to_model_input``: area resize, ~6 KB each at 45 px) from a memory-mapped
file instead of opening, decoding and resizing image files again every time. Entries are keyed
by the crop's content hash (the store's sha256) and the input size (one folder per size).

It fills lazily: a reader that misses decodes the file and appends the tensor. Not at import
or extract: those stay as fast as they are, a crop nobody scores or trains on costs nothing,
and the first use (build-dataset, score) decodes it anyway; ``annotator cache rebuild`` fills
everything up front when wanted.

Layout of ``WORKSPACE/cache/rgb45/``::

    lock        flock(2): exclusive while a process appends, forgets or rebuilds
    CURRENT     the live generation's number, replaced atomically (os.replace) by a rebuild
    data.N      fixed-size records (size*size*3 bytes), append-only, read through np.memmap
    index.N     64-byte entries, append-only: "put" (sha256, slot, crc32 of the record) or
                "forget" (sha256); each entry carries a crc32 of itself

Crash safety: an append writes the records, fsyncs them, then appends their index entries
(and fsyncs). An entry is only valid when it is complete and its own checksum holds, so a
process killed at any point leaves at worst records no entry points to, or a torn entry at
the tail, and both are ignored: readers stop at the first invalid entry, and the next writer
(holding the lock, so nobody else is mid-append) truncates that garbage before it appends.
Every read also checks each record against the crc32 in its entry, so a damaged record is
decoded again from its file rather than served.

Locking: appends, ``forget`` and ``rebuild`` take an exclusive ``flock`` on ``lock`` (one
writer at a time, any number of processes). Readers take no lock: indexed records never
change, and a rebuild writes a new generation (``data.N+1``/``index.N+1``) before it swaps
``CURRENT``, so a reader with the old files open or mapped keeps valid data (Linux keeps an
unlinked file alive while it is mapped) and moves to the new generation on its next refresh.

Invalidation: :func:`forget` appends "forget" entries for crops whose files are gone (their
records become dead space); :func:`rebuild` compacts into a new generation, dropping forgotten
and damaged records and every sha256 no crop row uses, then fills what is missing.
"""
from __future__ import annotations

import fcntl
import os
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from annotator.media import images
from annotator.core.errors import InputError
from annotator.core.failpoints import failpoint

DIRNAME = "cache"
_MAGIC = b"TNS1"
_PUT, _FORGET = 1, 2
# magic, kind, slot, sha256 (raw), crc32 of the record, reserved, crc32 of the 60 bytes before
_ENTRY = struct.Struct("<4sB3xQ32sI8xI")
ENTRY_SIZE = _ENTRY.size  # 64
FILL_CHUNK = 2048  # records per append when rebuild fills the cache


def _folder_name(size: int) -> str:
    return f"rgb{size}"


def _pack(kind: int, slot: int, sha: str, crc: int) -> bytes:
    head = _ENTRY.pack(_MAGIC, kind, slot, bytes.fromhex(sha), crc, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Generation:
    """One generation's files and this process's view of its index."""

    number: int  # 0: nothing on disk yet
    data: Path | None = None
    index: Path | None = None
    offset: int = 0  # bytes of valid entries read so far
    entries: dict = field(default_factory=dict)  # sha256 hex -> (slot, crc32)
    next_slot: int = 0  # one past the highest slot any entry (live or forgotten) ever used
    mm: np.ndarray | None = None  # memmap of data, (slots, size, size, 3)


class TensorCache:
    """Crops as model-input tensors, keyed by sha256, for one input size.

    Parameters
    ----------
    root : folder holding one subfolder per input size (``WORKSPACE/cache``)
    size : model input side in pixels

    ``hits``, ``filled``, ``unreadable`` and ``repaired`` count what this object served since
    it was made: from the cache, decoded and added, not decodable, and records that failed
    their checksum (decoded again).
    """

    def __init__(self, root: Path, size: int = images.MODEL_SIZE):
        self.size = int(size)
        self.dir = Path(root) / _folder_name(self.size)
        self.record = self.size * self.size * 3
        self._gen = _Generation(0)
        self.hits = self.filled = self.unreadable = self.repaired = 0

    # --- reading the index -----------------------------------------------------------------

    def _current(self) -> int:
        try:
            return int((self.dir / "CURRENT").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def refresh(self) -> None:
        """Catch up with entries other processes appended (and with a rebuild's generation)."""
        for _ in range(5):
            cur = self._current()
            if cur != self._gen.number:
                self._gen = _Generation(cur, self.dir / f"data.{cur}", self.dir / f"index.{cur}")
            if cur == 0:
                return
            try:
                self._read_tail(self._gen)
                return
            except FileNotFoundError:  # a rebuild swapped generations under us: read CURRENT again
                self._gen = _Generation(0)
        raise RuntimeError(f"{self.dir}: generations keep changing")

    def _read_tail(self, g: _Generation) -> None:
        with open(g.index, "rb") as fh:
            fh.seek(g.offset)
            buf = fh.read()
        n = len(buf) // ENTRY_SIZE
        for i in range(n):
            raw = buf[i * ENTRY_SIZE:(i + 1) * ENTRY_SIZE]
            magic, kind, slot, sha, crc, check = _ENTRY.unpack(raw)
            if magic != _MAGIC or check != zlib.crc32(raw[:-4]) or kind not in (_PUT, _FORGET):
                break  # torn or not yet fully written: stop here, read again next time
            if kind == _PUT:
                g.entries[sha.hex()] = (slot, crc)
                g.next_slot = max(g.next_slot, slot + 1)
            else:
                g.entries.pop(sha.hex(), None)
            g.offset += ENTRY_SIZE

    def _mapped(self, g: _Generation, slots_needed: int) -> np.ndarray:
        """The data file as ``(slots, size, size, 3)``, remapped when it has grown."""
        if g.mm is None or g.mm.shape[0] < slots_needed:
            n = os.path.getsize(g.data) // self.record
            g.mm = np.memmap(g.data, dtype=np.uint8, mode="r",
                             shape=(n, self.size, self.size, 3)) if n else np.zeros(
                (0, self.size, self.size, 3), np.uint8)
        return g.mm

    def __len__(self) -> int:
        self.refresh()
        return len(self._gen.entries)

    def __contains__(self, sha256: str) -> bool:
        self.refresh()
        return sha256 in self._gen.entries

    # --- reads -----------------------------------------------------------------------------

    def get(self, sha256s: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached tensors; misses (and records failing their checksum) give zeros.

        Returns
        -------
        x : uint8 (N, size, size, 3) RGB
        ok : bool (N,) True where ``x[i]`` came from the cache
        """
        self.refresh()
        g = self._gen
        x = np.zeros((len(sha256s), self.size, self.size, 3), dtype=np.uint8)
        ok = np.zeros(len(sha256s), dtype=bool)
        found = [(i, g.entries.get(h)) for i, h in enumerate(sha256s)]
        found = [(i, e) for i, e in found if e is not None]
        if not found:
            return x, ok
        idx = np.fromiter((i for i, _ in found), np.int64, len(found))
        slots = np.fromiter((e[0] for _, e in found), np.int64, len(found))
        try:
            mm = self._mapped(g, int(slots.max()) + 1)
        except FileNotFoundError:  # a rebuild removed this generation since we read its index
            self._gen = _Generation(0)
            return self.get(sha256s)
        x[idx] = mm[slots]
        ok[idx] = [zlib.crc32(x[i]) == e[1] for i, e in found]
        bad = idx[~ok[idx]]
        x[bad] = 0
        self.repaired += len(bad)
        return x, ok

    def load(self, items: Sequence[tuple[str, str | Path]], *, workers: int = 4,
             fill: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Tensors of ``(sha256, file)`` pairs: from the cache, decoding the misses from their
        files and (``fill``) adding them.

        Returns
        -------
        x : uint8 (N, size, size, 3) RGB
        ok : bool (N,) False where the crop is neither cached nor decodable (``x[i]`` is zeros)
        """
        shas = [h for h, _ in items]
        x, ok = self.get(shas)
        self.hits += int(ok.sum())
        miss = np.flatnonzero(~ok)
        if miss.size:
            first: dict[str, int] = {}  # byte-identical crops: decode one file per sha256
            for i in miss:
                first.setdefault(shas[i], int(i))
            todo = list(first.values())
            dec, dec_ok = images.load_images_checked([items[i][1] for i in todo], self.size,
                                                     workers=workers)
            got = {shas[i]: dec[k] for k, i in enumerate(todo) if dec_ok[k]}
            for i in miss:
                t = got.get(shas[i])
                if t is not None:
                    x[i] = t
                    ok[i] = True
            self.unreadable += int((~ok[miss]).sum())
            damaged = [h for h in got if h in self._gen.entries]  # failed their checksum
            if fill and damaged:
                self.forget(damaged)
            if fill and got:
                self.filled += self.put(list(got), np.stack(list(got.values())))
        return x, ok

    def view(self, items: Sequence[tuple[str, str | Path]], *, workers: int = 4) -> "CachedArray":
        """A read-only array of the crops, backed by the memory-mapped cache (misses are filled
        first). Raises InputError when a crop is neither cached nor decodable."""
        shas = [h for h, _ in items]
        for start in range(0, len(items), FILL_CHUNK * 4):
            part = items[start:start + FILL_CHUNK * 4]
            self.refresh()
            missing = [it for it in part if it[0] not in self._gen.entries]
            if missing:
                _, ok = self.load(missing, workers=workers)
                if not ok.all():
                    bad = [str(p) for (_, p), good in zip(missing, ok) if not good]
                    raise InputError(f"{len(bad)} unreadable image(s), e.g. {', '.join(bad[:3])}")
        self.refresh()
        g = self._gen
        try:
            slot_crc = [g.entries[h] for h in shas]
        except KeyError as exc:  # forgotten by another process between the fill and now
            raise InputError(f"crop {exc.args[0][:12]}... left the cache while it was read; "
                             "run again") from None
        slots = np.array([s for s, _ in slot_crc], dtype=np.int64)
        crcs = np.array([c for _, c in slot_crc], dtype=np.uint32)
        try:
            mm = self._mapped(g, int(slots.max()) + 1 if len(slots) else 0)
        except FileNotFoundError:  # a rebuild removed this generation since we read its index
            self._gen = _Generation(0)
            return self.view(items, workers=workers)
        return CachedArray(mm, slots, crcs, [p for _, p in items], self)

    # --- writes ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _writable(self) -> _Generation:
        """The current generation, created on first use (call with the lock held)."""
        self.refresh()
        if self._gen.number == 0:
            self._new_generation(1, [])
            self.refresh()
        return self._gen

    def put(self, sha256s: Sequence[str], x: np.ndarray) -> int:
        """Append tensors ``x`` uint8 (N, size, size, 3) under their sha256s; ones already
        cached are skipped. Returns how many were added."""
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"tensors must be uint8 (N, {self.size}, {self.size}, 3), "
                             f"got {x.dtype} {x.shape}")
        with self._locked():
            g = self._writable()
            new: dict[str, int] = {}
            for i, h in enumerate(sha256s):
                if h not in g.entries and h not in new:
                    new[h] = i
            if not new:
                return 0
            rows = np.ascontiguousarray(x[list(new.values())])
            n0 = g.next_slot
            with open(g.data, "r+b") as fh:
                fh.truncate(n0 * self.record)  # records of a crashed append: never indexed
                fh.seek(n0 * self.record)
                _write_durably(fh, memoryview(rows).cast("B"), self.record, "cache_mid_data")
            failpoint("cache_before_index")
            entries = b"".join(_pack(_PUT, n0 + k, h, zlib.crc32(rows[k]))
                               for k, h in enumerate(new))
            self._append_index(g, entries)
            self.refresh()
        return len(new)

    def _append_index(self, g: _Generation, entries: bytes) -> None:
        with open(g.index, "r+b") as fh:
            fh.truncate(g.offset)  # a torn entry a crashed writer left at the tail
            fh.seek(g.offset)
            _write_durably(fh, entries, ENTRY_SIZE, "cache_mid_index")

    def forget(self, sha256s: Sequence[str]) -> int:
        """Drop the entries of these sha256s (their files are gone). Returns how many."""
        if not self._current() and not self._gen.number:
            return 0
        with self._locked():
            g = self._writable()
            gone = sorted({h for h in sha256s if h in g.entries})
            if gone:
                self._append_index(g, b"".join(_pack(_FORGET, 0, h, 0) for h in gone))
                self.refresh()
        return len(gone)

    def _new_generation(self, number: int, live: list[tuple[str, int, int]]) -> tuple[int, int]:
        """Write generation ``number`` holding the verified records of ``live`` (sha256, slot,
        crc) of the current one, then make it current. Returns ``(kept, damaged)``. Lock held."""
        data, index = self.dir / f"data.{number}", self.dir / f"index.{number}"
        old = self._gen
        kept = damaged = 0
        with open(data, "wb") as fd, open(index, "wb") as fi:
            live = sorted(live, key=lambda e: e[1])  # sequential reads of the old file
            for start in range(0, len(live), FILL_CHUNK):
                part = live[start:start + FILL_CHUNK]
                slots = np.array([s for _, s, _ in part], dtype=np.int64)
                rows = np.ascontiguousarray(self._mapped(old, int(slots.max()) + 1)[slots])
                good = [k for k, (_, _, crc) in enumerate(part) if zlib.crc32(rows[k]) == crc]
                damaged += len(part) - len(good)
                fd.write(memoryview(np.ascontiguousarray(rows[good])).cast("B"))
                fi.write(b"".join(_pack(_PUT, kept + j, part[k][0], part[k][2])
                                  for j, k in enumerate(good)))
                kept += len(good)
            for fh in (fd, fi):
                fh.flush()
                os.fsync(fh.fileno())
        tmp = self.dir / "CURRENT.tmp"
        tmp.write_text(f"{number}\n")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "CURRENT")
        _fsync_dir(self.dir)
        if old.number:
            for p in (old.data, old.index):
                p.unlink(missing_ok=True)
        return kept, damaged

    def compact(self, keep: set[str] | None = None) -> dict:
        """Rewrite the cache as a new generation with only the live, undamaged records whose
        sha256 is in ``keep`` (all live ones when None)."""
        with self._locked():
            self.refresh()
            g = self._gen
            if g.number == 0:
                return {"kept": 0, "dropped_unused": 0, "dropped_damaged": 0, "reclaimed_bytes": 0}
            before = self.disk_bytes()
            live = [(h, s, c) for h, (s, c) in g.entries.items() if keep is None or h in keep]
            unused = len(g.entries) - len(live)
            kept, damaged = self._new_generation(g.number + 1, live)
            self.refresh()
            return {"kept": kept, "dropped_unused": unused, "dropped_damaged": damaged,
                    "reclaimed_bytes": before - self.disk_bytes()}

    # --- figures ---------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        g = self._gen
        return sum(p.stat().st_size for p in (g.data, g.index) if p is not None and p.exists())

    def status(self) -> dict:
        """Entries, bytes on disk, dead records and the generation, as plain numbers."""
        self.refresh()
        g = self._gen
        return {"size": self.size, "path": str(self.dir), "generation": g.number,
                "entries": len(g.entries), "bytes": self.disk_bytes(),
                "dead_records": g.next_slot - len(g.entries),
                "dead_bytes": (g.next_slot - len(g.entries)) * self.record}


class CachedArray:
    """A read-only uint8 array ``(N, size, size, 3)`` whose rows live in the cache's memmap.

    Indexing (an int, a slice, an index or boolean array) gathers the rows into a new ndarray
    and checks each against its crc32; a row that fails (damaged on disk) is decoded again from
    its file, so a bad record is never served. Holds the generation's mapping, so a rebuild
    running meanwhile does not disturb it.
    """

    def __init__(self, mm: np.ndarray, slots: np.ndarray, crcs: np.ndarray,
                 paths: list, cache: TensorCache):
        self._mm, self._slots, self._crcs, self._paths, self._cache = mm, slots, crcs, paths, cache
        self.shape = (len(slots), *mm.shape[1:])
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[[key]][0]
        slots, crcs = self._slots[key], self._crcs[key]  # numpy does ints, slices and masks
        x = self._mm[slots] if slots.size else np.zeros((0, *self.shape[1:]), np.uint8)
        bad = [k for k in range(len(slots)) if zlib.crc32(x[k]) != crcs[k]]
        if bad:
            rows = np.arange(len(self._slots))[key]
            self._cache.repaired += len(bad)
            x[bad] = images.load_images([self._paths[rows[k]] for k in bad], self.shape[1])
        return x

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = self[:]
        return x if dtype is None else x.astype(dtype)


# --- the workspace's cache ----------------------------------------------------------------------


def of(ws, size: int = images.MODEL_SIZE) -> TensorCache:
    """The workspace's tensor cache for one input size."""
    return TensorCache(Path(ws.root) / DIRNAME, size)


def _sizes(ws) -> list[int]:
    root = Path(ws.root) / DIRNAME
    if not root.is_dir():
        return []
    return sorted(int(p.name[3:]) for p in root.iterdir()
                  if p.is_dir() and p.name.startswith("rgb") and p.name[3:].isdigit())


def forget(ws, sha256s: Sequence[str]) -> int:
    """Invalidate the cached tensors of crops whose stored files are gone (every input size).

    Call it after the files are removed (``extract --redo``, a deleted source); a crop later
    stored with the same bytes is simply cached again. Returns the entries dropped.
    """
    sha256s = list(sha256s)
    return sum(TensorCache(Path(ws.root) / DIRNAME, n).forget(sha256s) for n in _sizes(ws))


def stored_images(ws) -> dict[str, str]:
    """sha256 -> store path of every crop row (one path per distinct image)."""
    from annotator.data import reports

    with ws.read_session() as s:
        return reports.crop_images(s)


def status(ws, size: int = images.MODEL_SIZE) -> dict:
    """The cache's figures plus how many of the workspace's distinct crop images it holds.

    ``hit_share``: share of the distinct crop images a read would find in the cache now.
    """
    c = of(ws, size)
    st = c.status()
    stored = stored_images(ws)
    cached = sum(1 for h in stored if h in c._gen.entries)
    st.update(crops=len(stored), cached_crops=cached, missing=len(stored) - cached,
              unused_entries=st["entries"] - cached,
              hit_share=round(cached / len(stored), 4) if stored else None)
    return st


def _write_durably(fh, data, unit: int, point: str) -> None:
    """Write ``data`` (whole records of ``unit`` bytes) and fsync. It goes out in two parts that
    split a record, with failpoint ``point`` between them, so the crash tests can leave exactly
    the torn record a power cut would."""
    half = (len(data) // unit // 2) * unit + unit // 2
    fh.write(data[:half])
    fh.flush()
    failpoint(point)
    fh.write(data[half:])
    fh.flush()
    os.fsync(fh.fileno())
