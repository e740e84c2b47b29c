"""What a search index is to the database: the :class:`SearchIndex` protocol, the
:class:`IndexHome` that keeps indexes between runs, and the array conventions both
index kinds share.

The database (:class:`~robusthash.db.reference.ReferenceDB`) is the source of truth;
an index is derived from it. Two kinds implement the protocol with the same answers:
:class:`~robusthash.db.index.HammingIndex` (FAISS and multi-index hashing, in this
process) and :class:`~robusthash.db.milvus.MilvusIndex` (on a Milvus server). Where an
index lives between runs, and how it remembers how far it followed the store, is its
home's business: FAISS indexes are files next to the database
(:class:`~robusthash.db.index.IndexFiles`), Milvus collections live on the server and
record their progress in the store's meta table
(:class:`~robusthash.db.milvus.MilvusCollections`). So the database never asks which
kind it holds.

Codes are ``np.packbits`` rows (uint8, MSB first) under int64 ids (the store's hash ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# Indexes are asked for this many neighbours beyond k, so that the codes tied at the k-th
# distance can be ordered by id; when even these are all tied, a radius scan collects the rest.
TIE_SLACK = 16

RangeHits = tuple[np.ndarray, np.ndarray]  # (ids int64, distances int32), sorted by (distance, id)


class SearchIndex(Protocol):
    """Exact Hamming search over ``nbits``-bit codes under int64 ids."""

    nbits: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add codes under ids; an id already present (or repeated in the batch) keeps its last code."""

    def remove(self, ids: np.ndarray) -> int:
        """Remove codes by id; returns how many were present."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes per query, ``(distances (q, k), ids (q, k))``: ascending
        distance, ties by smaller id; missing places have id -1 and distance nbits + 1."""

    def range_search(self, queries: np.ndarray, radius: int) -> list[RangeHits]:
        """Per query, every code at distance ``<= radius``, sorted by (distance, id)."""


@dataclass
class FollowedIndex:
    """An index and how far it has followed the store: the last hash id it holds and the
    last entry of the store's removal log it applied."""

    index: SearchIndex
    last_hash_id: int = 0
    last_removal: int = 0
    # The progress its home last recorded, so that an unchanged index costs no write.
    recorded: tuple[int, int] | None = None

    @property
    def progress(self) -> tuple[int, int]:
        return self.last_hash_id, self.last_removal


class IndexHome(Protocol):
    """Where a database's indexes live between runs."""

    def open(self, method: str, version: str, nbits: int) -> FollowedIndex:
        """The (method, version) index as kept here, or a new empty one."""

    def followed(self, method: str, version: str, state: FollowedIndex) -> None:
        """Called after each catch-up: a home whose index outlives the process records the progress."""

    def save(self, method: str, version: str, state: FollowedIndex) -> list[Path]:
        """Persist the index for the next run, if this home keeps files; returns them."""

    def discard(self, method: str, version: str, nbits: int) -> FollowedIndex:
        """Forget the kept index (it disagrees with the store) and give a new, empty one."""


# --- array conventions ----------------------------------------------------------------------


def as_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"ids must be a 1-D integer array, not {ids.dtype} of shape {ids.shape}")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be >= 0 (-1 marks a missing neighbour)")
    return ids.astype(np.int64, copy=False)


def as_codes(codes: np.ndarray, code_bytes: int, what: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != code_bytes:
        raise ValueError(
            f"{what} must be packed uint8 rows of shape (n, {code_bytes}) for {8 * code_bytes}-bit codes, "
            f"not {codes.dtype} of shape {codes.shape}"
        )
    return np.ascontiguousarray(codes)


def last_of_each(ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids sorted and unique, each with the code it had last in the batch."""
    if np.all(ids[1:] > ids[:-1]):  # the database's usual batch: nothing to do
        return ids, codes
    unique, last_from_end = np.unique(ids[::-1], return_index=True)
    return unique, codes[len(ids) - 1 - last_from_end]


def sort_hits(ids: np.ndarray, distances: np.ndarray) -> RangeHits:
    order = np.lexsort((ids, distances))
    return ids[order].astype(np.int64, copy=False), distances[order].astype(np.int32)


def no_neighbours(queries: int, k: int, nbits: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((queries, k), nbits + 1, dtype=np.int32), np.full((queries, k), -1, dtype=np.int64)


def no_hits() -> RangeHits:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
