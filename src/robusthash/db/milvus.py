"""The search index on a Milvus server, for collections that outgrow one machine.

A database named ``milvus://host:port?store=STORE`` keeps its truth where every other
database does, in the store (``STORE``: a SQLite file or a ``postgresql://`` URL: images,
metadata, hashes, the removal log, calibrations), and moves the search to Milvus, a
distributed vector database with binary vectors and the Hamming metric. Milvus holds no
transactions, unique constraints or removal log, so it cannot be the source of truth;
like the FAISS index, its collections are derived from the store and caught up before
each query (:class:`~robusthash.db.reference.ReferenceDB`).

:class:`MilvusIndex` answers the questions :class:`~robusthash.db.index.HammingIndex`
answers, with the same results (``tests/test_milvus.py`` runs the index's exactness tests
against a real server):

* ``search(queries, k)``: the k nearest, ascending distance, ties by smaller id. Milvus
  orders ties arbitrarily, so it is asked for ``k + TIE_SLACK`` and, when even those end
  tied with the k-th, for every code at that distance (a range search);
* ``range_search(queries, radius)``: every code at distance ``<= radius``. Milvus's range
  is strict (``distance < radius``), so it is asked for ``radius + 1``.

Each (method, version) has its own collection (a ``BINARY_VECTOR`` of the hash's bits
under the store's int64 hash id), named after the store's identity so that databases
sharing a server never mix. Writes are upserts by id, so replaying a catch-up is harmless.

Milvus returns at most :data:`MILVUS_LIMIT` results per query (top-k and range search);
more codes than that at one distance or within one radius raise rather than answer
incompletely. The default ``BIN_FLAT`` index is exact; ``index=BIN_IVF_FLAT`` (with
``nlist``, ``nprobe``) searches only the ``nprobe`` nearest of ``nlist`` clusters: faster
on large collections, and approximate (``benchmarks/scale.py`` measures its recall).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .search import TIE_SLACK, FollowedIndex, RangeHits, as_codes, as_ids, last_of_each, no_hits, no_neighbours, sort_hits

if TYPE_CHECKING:
    from .store import Store

SCHEME = "milvus://"
MILVUS_LIMIT = 16384  # Milvus's topk cap, for search and range search alike
INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
WRITE_CHUNK = 10_000  # rows per upsert or delete request (gRPC messages stay small)


@dataclass(frozen=True)
class MilvusLocation:
    """Where a ``milvus://`` database lives: the Milvus server, the store, and the index type."""

    host: str
    port: int
    store: str
    index_type: str = "BIN_FLAT"
    nlist: int = 1024
    nprobe: int = 16
    timeout: float = 10.0  # seconds to wait for the server

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"milvus index must be one of {', '.join(INDEX_TYPES)}, not {self.index_type!r}")
        if self.nlist < 1 or not 1 <= self.nprobe <= self.nlist:
            raise ValueError(f"milvus needs 1 <= nprobe <= nlist, not nprobe={self.nprobe}, nlist={self.nlist}")


def is_milvus_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(SCHEME)


def parse_milvus_url(url: str) -> MilvusLocation:
    """``milvus://host:port?index=BIN_FLAT&nlist=1024&nprobe=16&timeout=10&store=STORE``.

    ``store`` is required and comes last: everything after ``store=`` is the store's
    path or URL, which may hold its own ``?`` and ``&``."""
    head, marker, store = url.partition("store=")
    if not marker or not store:
        raise ValueError(f"{url}: a milvus:// database needs store=SQLITE_FILE_OR_POSTGRESQL_URL as its last "
                         "parameter: Milvus holds the search index, the store holds the images and their hashes")
    parts = urlsplit(head.rstrip("?&"))
    if parts.path not in ("", "/"):
        raise ValueError(f"{url}: expected milvus://host:port?...&store=..., not a path {parts.path!r}")
    try:
        port = parts.port or 19530
    except ValueError:
        raise ValueError(f"{url}: the port must be a number") from None
    if not parts.hostname:
        raise ValueError(f"{url}: no Milvus host")
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - {"index", "nlist", "nprobe", "timeout"}
    if unknown:
        raise ValueError(f"{url}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                         "known: index, nlist, nprobe, timeout, store")
    try:
        return MilvusLocation(parts.hostname, port, store, options.get("index", "BIN_FLAT").upper(),
                              int(options.get("nlist", 1024)), int(options.get("nprobe", 16)),
                              float(options.get("timeout", 10)))
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None


def collection_name(identity: str, method: str, version: str) -> str:
    """A Milvus name (letters, digits, underscores) for one database's (method, version)."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", f"{method}_{version}")[:48]
    digest = hashlib.sha1(f"{method}\0{version}".encode()).hexdigest()[:8]
    return f"robusthash_{identity[:12]}_{readable}_{digest}"


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise RuntimeError("milvus:// databases need the Milvus client: pip install 'robusthash[milvus]'") from None
    return pymilvus


def connect(location: MilvusLocation) -> str:
    """The pymilvus connection alias of the server (connected once per process)."""
    pymilvus = _pymilvus()
    alias = f"robusthash-{location.host}:{location.port}"
    if not pymilvus.connections.has_connection(alias):
        try:
            pymilvus.connections.connect(alias=alias, host=location.host, port=str(location.port),
                                           timeout=location.timeout)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises its own types for every connection problem
            raise RuntimeError(f"cannot reach Milvus at {location.host}:{location.port}: {exc}") from None
    return alias


# Reads see every write of this client (Milvus's "Session" level). A database catches its
# collection up before each query, writing whatever it has not itself seen, so its reads
# need no more; "Strong" would wait for the server's next time tick (~200 ms) per query.
CONSISTENCY = "Session"
ETCD_PEER_PORT = 2380  # fixed in the embedded build: one embedded server per machine at a time


def start_embedded(root: str, port: int | None = None):
    """Start the embedded standalone Milvus server of the ``milvus`` package (tests and
    benchmarks; a deployment runs its own cluster) with its data in ``root``; returns the
    running ``MilvusServer`` (``.listen_port``, ``.stop()``)."""
    import socket

    try:
        from milvus import MilvusServer
    except ImportError:
        raise RuntimeError("the embedded Milvus server is the PyPI package milvus==2.3.5") from None
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", ETCD_PEER_PORT))
        except OSError:
            raise RuntimeError(f"port {ETCD_PEER_PORT} is taken: another embedded Milvus server is running on this "
                               "machine (its etcd port cannot be changed)") from None
    server = MilvusServer()
    server.set_base_dir(root)
    if port is not None:
        server.listen_port = port
    server.start()
    return server


class MilvusIndex:
    """Exact (``BIN_FLAT``) top-k and radius search over ``nbits``-bit codes in one Milvus
    collection, with :class:`~robusthash.db.index.HammingIndex`'s interface and answers."""

    def __init__(self, location: MilvusLocation, name: str, nbits: int):
        if nbits <= 0 or nbits % 8:
            raise ValueError(f"nbits must be a positive multiple of 8, not {nbits!r}")
        self.location, self.name, self.nbits = location, name, int(nbits)
        pymilvus = _pymilvus()
        alias = connect(location)
        self.created = not pymilvus.utility.has_collection(name, using=alias)
        if self.created:
            schema = pymilvus.CollectionSchema([
                pymilvus.FieldSchema("id", pymilvus.DataType.INT64, is_primary=True),
                pymilvus.FieldSchema("code", pymilvus.DataType.BINARY_VECTOR, dim=self.nbits),
            ], description="robusthash hashes (derived from the store)")
            collection = pymilvus.Collection(name, schema, using=alias, consistency_level=CONSISTENCY)
            params = {"nlist": location.nlist} if location.index_type == "BIN_IVF_FLAT" else {}
            collection.create_index("code", {"index_type": location.index_type, "metric_type": "HAMMING",
                                             "params": params})
        else:
            collection = pymilvus.Collection(name, using=alias, consistency_level=CONSISTENCY)
            dim = next(f.params.get("dim") for f in collection.schema.fields if f.name == "code")
            if int(dim) != self.nbits:
                raise ValueError(f"Milvus collection {name} holds {dim}-bit codes, not {self.nbits}")
        collection.load()
        self._collection, self._alias = collection, alias
        self._search_params = {"nprobe": location.nprobe} if location.index_type == "BIN_IVF_FLAT" else {}

    def __len__(self) -> int:
        # Strong: a count under "Session" missed this client's own recent deletes.
        rows = self._collection.query("id >= 0", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def __repr__(self) -> str:
        return f"MilvusIndex({self.name!r}, nbits={self.nbits}, {self.location.index_type})"

    @property
    def code_bytes(self) -> int:
        return self.nbits // 8

    # --- changes ----------------------------------------------------------------------

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add codes under ids; an id already present (or repeated in the batch) keeps its last code."""
        ids, codes = as_ids(ids), as_codes(codes, self.code_bytes, "codes")
        if len(ids) != len(codes):
            raise ValueError(f"{len(ids)} ids for {len(codes)} codes")
        if not len(ids):
            return
        ids, codes = last_of_each(ids, codes)
        for start in range(0, len(ids), WRITE_CHUNK):
            chunk = slice(start, start + WRITE_CHUNK)
            self._collection.upsert([ids[chunk].tolist(), [row.tobytes() for row in codes[chunk]]])

    def remove(self, ids: np.ndarray) -> int:
        """Remove codes by id; returns how many were present (unknown ids are ignored)."""
        ids = np.unique(as_ids(ids))
        present = 0
        for start in range(0, len(ids), WRITE_CHUNK):
            expression = f"id in {ids[start:start + WRITE_CHUNK].tolist()}"
            present += len(self._collection.query(expression, output_fields=["id"], consistency_level="Strong"))
            self._collection.delete(expression)
        return present

    def flush(self) -> None:
        """Seal what was written and wait until the server has indexed it: Milvus searches
        unsealed ("growing") segments by brute force, whatever the index type."""
        utility = _pymilvus().utility
        self._collection.flush()
        utility.wait_for_index_building_complete(self.name, using=self._alias)
        # That call has been seen to return while rows were still unindexed: wait for the count.
        deadline = time.monotonic() + 600
        while True:
            progress = utility.index_building_progress(self.name, using=self._alias)
            if progress["indexed_rows"] >= progress["total_rows"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Milvus has not indexed collection {self.name} after 600 s")
            time.sleep(0.5)
        # Segments loaded before their index was built are searched raw until the query
        # nodes swap the index in; loading again makes every later search use it.
        self._collection.release()
        self._collection.load()

    def drop(self) -> None:
        """Delete the collection from the server (the store can rebuild it)."""
        self._collection.drop()

    # --- queries ----------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes per query: ``(distances int32 (q, k), ids int64 (q, k))``;
        missing places have id -1 and distance nbits + 1."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        if k > MILVUS_LIMIT:
            raise ValueError(f"k must be at most {MILVUS_LIMIT} on Milvus, not {k}")
        queries = as_codes(queries, self.code_bytes, "queries")
        distances, ids = no_neighbours(len(queries), int(k), self.nbits)
        if not len(queries):
            return distances, ids
        asked = min(int(k) + TIE_SLACK, MILVUS_LIMIT)
        for row, (hit_ids, hit_distances) in enumerate(self._search(queries, asked, None)):
            if len(hit_ids) >= asked and len(hit_ids) > k and hit_distances[-1] == hit_distances[k - 1]:
                # Every code returned past the k-th ties with it: the ones Milvus left out
                # might have smaller ids. All codes at that distance or nearer decide.
                hit_ids, hit_distances = self._range_one(queries[row], int(hit_distances[k - 1]))
            n = min(k, len(hit_ids))
            ids[row, :n], distances[row, :n] = hit_ids[:n], hit_distances[:n]
        return distances, ids

    def range_search(self, queries: np.ndarray, radius: int) -> list[RangeHits]:
        """Per query, ``(ids, distances)`` of every code with distance ``<= radius``, by (distance, id)."""
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, not {radius!r}")
        queries = as_codes(queries, self.code_bytes, "queries")
        return [self._range_one(query, int(radius)) for query in queries]

    def _range_one(self, query: np.ndarray, radius: int) -> RangeHits:
        if radius >= self.nbits:  # every code: Milvus's range must stay below nbits + 1
            return self._search(query[None, :], MILVUS_LIMIT, None, complete=True)[0]
        if self.location.index_type == "BIN_IVF_FLAT":
            return self._range_by_top_k(query, radius)
        return self._search(query[None, :], MILVUS_LIMIT, radius + 1, complete=True)[0]

    def _range_by_top_k(self, query: np.ndarray, radius: int) -> RangeHits:
        """Range search on an IVF index, as a growing top-k cut at the radius. Milvus
        2.3.5's own IVF range search missed codes in range even with every list probed
        (benchmarks/scale.py), while its top-k honours nprobe."""
        limit = 64
        while True:
            ids, distances = self._search(query[None, :], limit, None)[0]
            inside = distances <= radius
            if not inside.all() or len(ids) < limit:
                return ids[inside], distances[inside]
            if limit == MILVUS_LIMIT:
                raise RuntimeError(f"more than {MILVUS_LIMIT} codes in Milvus collection {self.name} lie this close "
                                   "to the query; Milvus cannot return them all")
            limit = min(limit * 4, MILVUS_LIMIT)

    def _search(self, queries: np.ndarray, limit: int, below: int | None, complete: bool = False) -> list[RangeHits]:
        params: dict = {"metric_type": "HAMMING", "params": dict(self._search_params)}
        if below is not None:
            params["params"]["radius"] = below
        results = self._collection.search([q.tobytes() for q in queries], "code", params, limit=limit,
                                          consistency_level=CONSISTENCY)
        out = []
        for hits in results:
            if complete and len(hits) >= limit:
                raise RuntimeError(f"more than {MILVUS_LIMIT} codes in Milvus collection {self.name} lie this close "
                                   "to the query; Milvus cannot return them all")
            if not len(hits):
                out.append(no_hits())
                continue
            out.append(sort_hits(np.array(hits.ids, dtype=np.int64),
                                  np.rint(np.array(hits.distances)).astype(np.int32)))
        return out


__all__ = ["MILVUS_LIMIT", "MilvusIndex", "MilvusLocation", "collection_name", "connect", "is_milvus_url",
           "parse_milvus_url", "start_embedded"]


class MilvusCollections:
    """The home of a database's indexes on a Milvus server: one collection per (method,
    version), which outlives the process, so how far it followed the store is kept in the
    store's meta table (``milvus:<collection>``) after each catch-up."""

    def __init__(self, location: MilvusLocation, store: "Store", identity: str):
        self.location, self.store, self.identity = location, store, identity

    def open(self, method: str, version: str, nbits: int) -> FollowedIndex:
        index = MilvusIndex(self.location, collection_name(self.identity, method, version), nbits)
        recorded = self.store.meta(f"milvus:{index.name}")
        if index.created or recorded is None:
            return FollowedIndex(index)  # a new (or re-created) collection starts from nothing
        progress = json.loads(recorded)
        saved = (int(progress["last_hash_id"]), int(progress["last_removal"]))
        return FollowedIndex(index, *saved, recorded=saved)

    def followed(self, method: str, version: str, state: FollowedIndex) -> None:
        if state.progress == state.recorded:
            return  # nothing new: no meta-table write on the query path
        name = collection_name(self.identity, method, version)
        self.store.set_meta(f"milvus:{name}",
                            json.dumps({"last_hash_id": state.last_hash_id, "last_removal": state.last_removal}))
        state.recorded = state.progress

    def save(self, method: str, version: str, state: FollowedIndex) -> list[Path]:
        return []  # the collection is already on the server

    def discard(self, method: str, version: str, nbits: int) -> FollowedIndex:
        name = collection_name(self.identity, method, version)
        _pymilvus().utility.drop_collection(name, using=connect(self.location))
        self.store.set_meta(f"milvus:{name}", json.dumps({"last_hash_id": 0, "last_removal": 0}))
        return FollowedIndex(MilvusIndex(self.location, name, nbits))
