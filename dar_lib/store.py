"""A content-addressed artefact store: corpus embeddings, generated images, LLM outputs.

An entry's key is the sha256 of everything that produced it (model fingerprint, inputs,
settings; the key functions live in :mod:`dar_lib.cachekeys`), so a stale entry can never be
mistaken for a fresh one. Each file carries a header
with its payload's length and sha256; a truncated or corrupt entry is reported, removed and
recomputed, never used. Writes go to a temporary file in the same folder and are renamed into
place, so readers never see a partial file and two writers racing on one key both succeed.

Examples:
    >>> import tempfile
    >>> store = ArtefactStore(tempfile.mkdtemp())
    >>> from dar_lib.cachekeys import llm_key
    >>> key = llm_key("toy:rules", stage="R2", query="a red circle", k=1)
    >>> store.get_or_compute_json("llm", key, lambda: {"text": "a red circle"})
    {'text': 'a red circle'}
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

# The atomic write lives in dar_lib.atomic; re-exported for the callers that import it from the store.
from dar_lib.atomic import atomic_write_bytes

# Key functions live in dar_lib.cachekeys; re-exported here for the callers that import them from the store.

log = logging.getLogger(__name__)

_MAGIC = b"DAR1"


class CorruptEntry(Exception):
    """An entry whose header, length or checksum does not match its payload."""


class ArtefactStore:
    """Content-addressed, atomic, self-verifying file store.

    Args:
        root: folder holding the store; may be shared by several processes or machines.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        #: Entries found corrupt and removed since this object was made.
        self.corrupt_found = 0

    def __repr__(self) -> str:
        return f"ArtefactStore({str(self.root)!r})"

    def path(self, kind: str, key: str) -> Path:
        """The file of an entry, ``<root>/<kind>/<key[:2]>/<key>``; it need not exist."""
        return self.root / kind / key[:2] / key

    # -- raw bytes ----------------------------------------------------------------------
    def put_bytes(self, kind: str, key: str, payload: bytes) -> None:
        """Store ``payload`` under ``(kind, key)`` atomically, replacing any existing entry.

        The file holds a header line ``DAR1 <sha256 hex> <length>`` and then the payload; it is
        written to a temporary file in the same folder and renamed into place.

        Args:
            kind: entry kind, the store's top-level folder (e.g. ``"llm"``, ``"image_emb"``).
            key: the entry's key, usually from :meth:`key`.
            payload: the bytes to store.
        """
        digest = hashlib.sha256(payload).hexdigest().encode()
        header = _MAGIC + b" " + digest + b" " + str(len(payload)).encode() + b"\n"
        atomic_write_bytes(self.path(kind, key), header + payload)

    def _decode(self, blob: bytes) -> bytes:
        head, sep, payload = blob.partition(b"\n")
        parts = head.split(b" ")
        if not sep or len(parts) != 3 or parts[0] != _MAGIC:
            raise CorruptEntry("bad header")
        if not parts[2].isdigit() or int(parts[2]) != len(payload):
            raise CorruptEntry(f"length {len(payload)} != header {parts[2].decode(errors='replace')}")
        if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
            raise CorruptEntry("checksum mismatch")
        return payload

    def get_bytes(self, kind: str, key: str) -> bytes | None:
        """The payload, or ``None`` if absent or corrupt (a corrupt entry is logged and removed)."""
        p = self.path(kind, key)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._decode(blob)
        except CorruptEntry as exc:
            log.warning("artefact store: corrupt entry %s (%s); removing it, it will be recomputed", p, exc)
            self.corrupt_found += 1
            p.unlink(missing_ok=True)
            return None

    def has(self, kind: str, key: str) -> bool:
        """Whether a valid entry exists; reads and verifies it, removing it if corrupt (see :meth:`get_bytes`)."""
        return self.get_bytes(kind, key) is not None

    # -- typed helpers ------------------------------------------------------------------
    def put_json(self, kind: str, key: str, value: Any) -> None:
        """Store ``value`` as UTF-8 JSON with sorted keys.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
        """
        self.put_bytes(kind, key, json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"))

    def get_json(self, kind: str, key: str) -> Any | None:
        """The decoded JSON value, or ``None`` if absent or corrupt (a stored JSON ``null`` also reads as ``None``)."""
        b = self.get_bytes(kind, key)
        return None if b is None else json.loads(b.decode("utf-8"))

    def put_array(self, kind: str, key: str, arr: np.ndarray) -> None:
        """Store ``arr`` in ``.npy`` format (dtype and shape kept, made C-contiguous, no pickle).

        Raises:
            ValueError: ``arr`` has dtype ``object`` (pickling is not allowed).
        """
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        self.put_bytes(kind, key, buf.getvalue())

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        """The stored array with its original dtype and shape, or ``None`` if absent or corrupt."""
        b = self.get_bytes(kind, key)
        return None if b is None else np.load(io.BytesIO(b), allow_pickle=False)

    def put_image(self, kind: str, key: str, image: Image.Image) -> None:
        """Store ``image`` as a (lossless) PNG."""
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        self.put_bytes(kind, key, buf.getvalue())

    def get_image(self, kind: str, key: str) -> Image.Image | None:
        """The stored image, fully loaded, in the mode it was saved in; ``None`` if absent or corrupt."""
        b = self.get_bytes(kind, key)
        if b is None:
            return None
        img = Image.open(io.BytesIO(b))
        img.load()
        return img

    def get_or_compute_json(self, kind: str, key: str, fn: Callable[[], Any]) -> Any:
        """The stored JSON value, or ``fn()`` computed, stored and returned when there is none.

        A ``fn`` returning ``None`` is stored as ``null`` but reads back as missing, so it is
        called again next time.

        Args:
            kind: entry kind.
            key: the entry's key.
            fn: computes the value (JSON-serialisable) on a miss.

        Returns:
            The value; on a miss, ``fn()``'s own object (not a JSON round trip of it).
        """
        value = self.get_json(kind, key)
        if value is None:
            value = fn()
            self.put_json(kind, key, value)
        return value

    def get_or_compute_array(self, kind: str, key: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored array, or ``np.asarray(fn())`` computed, stored and returned when there is none.

        Args:
            kind: entry kind.
            key: the entry's key.
            fn: computes the array on a miss (anything ``np.asarray`` accepts, e.g. a CPU tensor).

        Returns:
            The array, with the dtype and shape ``fn`` produced.
        """
        value = self.get_array(kind, key)
        if value is None:
            value = np.asarray(fn())
            self.put_array(kind, key, value)
        return value

    # -- maintenance --------------------------------------------------------------------
    def keys(self, kind: str) -> Iterator[str]:
        """Yield the key of every entry file of ``kind`` (sorted; not verified; nothing if the kind has none)."""
        base = self.root / kind
        if base.is_dir():
            for p in sorted(base.glob("*/*")):
                if p.is_file() and not p.name.startswith("."):
                    yield p.name

    def merge_from(self, other: "ArtefactStore | str | os.PathLike",
                   damaged: list[tuple[Path, str]] | None = None) -> int:
        """Copy every valid entry of ``other`` missing here (merging shard stores); returns the count.

        ``other`` is only read, never changed: a damaged entry there (bad header, length or checksum,
        or unreadable) is skipped and reported, not removed, so a read-only source merges every valid
        entry and a writable one keeps its files for whoever owns them.

        Args:
            other: the source store (or its folder).
            damaged: if given, ``(path, reason)`` of each damaged source entry is appended to it.
        """
        other = other if isinstance(other, ArtefactStore) else ArtefactStore(other)
        copied = 0
        for kind_dir in sorted(p for p in other.root.iterdir() if p.is_dir()):
            for key in other.keys(kind_dir.name):
                if self.get_bytes(kind_dir.name, key) is not None:
                    continue
                path = other.path(kind_dir.name, key)
                try:
                    payload = other._decode(path.read_bytes())
                except (CorruptEntry, OSError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    log.warning("artefact store: damaged entry %s (%s) left in place, not copied", path, reason)
                    if damaged is not None:
                        damaged.append((path, reason))
                    continue
                self.put_bytes(kind_dir.name, key, payload)
                copied += 1
        return copied

    def is_empty(self) -> bool:
        """Whether the store holds no entry of any kind."""
        return not any(next(self.keys(p.name), None) for p in self.root.iterdir() if p.is_dir())

    def clear(self) -> None:
        """Delete every entry of every kind, leaving an empty ``root`` folder."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


class CachedWrapper:
    """What every caching wrapper of a model shares (the generator's and the reformulator's): the wrapped
    model, the store, the wrapped model's ``id`` and ``fingerprint`` (caching does not change outputs),
    hit and miss counts, and :meth:`uncached`. Subclasses set ``KIND`` (the store kind they write) and
    read and fill the store in their own calls.

    Args:
        wrapped: the model (any object with ``id`` and ``fingerprint()``).
        store: the :class:`ArtefactStore`.
    """

    KIND = ""

    def __init__(self, wrapped, store: ArtefactStore):
        self.wrapped = wrapped
        self.store = store
        self.id = wrapped.id
        #: Outputs served from the store / computed, since this object was made.
        self.hits = 0
        self.misses = 0

    def fingerprint(self) -> str:
        """The wrapped model's fingerprint (caching does not change what it outputs)."""
        return self.wrapped.fingerprint()

    def uncached(self):
        """The model this caches, for a caller that must compute afresh (a timing, a diagnostic)."""
        return self.wrapped
