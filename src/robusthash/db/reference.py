"""The reference database users talk to: register originals, ask "is this one of mine?".

:class:`ReferenceDB` joins the :class:`~robusthash.db.store.Store` (the source of
truth), one search index per (method, version) derived from it (a
:class:`~robusthash.db.search.SearchIndex` kept by its :class:`~robusthash.db.search.IndexHome`:
FAISS files next to the database, or Milvus collections), and the hashers' decisions:

* a method with its own rule (``own_rule``: forbild's two steps, which need the fresh
  query hash's reliabilities; imagehash's crop-resistant segments) decides by it;
* every other method matches when NHD ≤ its threshold: the one calibrated on this
  collection (``calibrate``), else the hasher's default.

Each hasher owns its decision (``decide``) and the radius its matches lie within
(``search_radius``); the database asks it and checks no names.

Indexes follow the store, HMA-style: before a query, rows added since the index last
looked (ids only grow) are added and logged removals are removed, so several
processes can share one database. Indexes can be saved next to the database and
loaded instead of rebuilt; they then catch up the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import FIRST_COMPLETED, Executor, Future, as_completed, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..measure import hamming_rows, threshold_at_fpr
from ..hashing import BaseHasher, Hash, MultiHash, available_methods
from ..hashing.base import shared_hasher
from ..information import DEFAULT_RULE
from ..io import DEFAULT_LIMITS, ImageSource, LoadLimits
from .index import IndexFiles
from ..compare.features import DEFAULT_FEATURES, FeatureConfig
from ..compare.features import KIND as FEATURES_KIND
from ..compare.features import OLDER_VERSIONS as OLDER_FEATURES
from ..compare.features import VERSION as FEATURES_VERSION
from .ingest import (CROPS, DEFAULT_ADMISSION, Admission, Admitted, Examined, ExaminedRegion, admit, crops_of,
                     examine, examine_halves, examine_negative, examine_region, file_digest, ingest,
                     ingest_batch, read_file, segments, with_variants)
from .metadata import check_metadata
from .milvus import MilvusCollections, connect, is_milvus_url, parse_milvus_url
from .search import FollowedIndex, IndexHome
from .store import ADDED, UPDATED, Calibration, HashRow, ImageRecord, NewImage, Store, StoreUnavailable

log = logging.getLogger("robusthash.db")

DEFAULT_METHODS = ("forbild",)
# A method's matches decided per query hash, its nearest first: a loose method matches
# about 1% of distinct references, and each decision costs a store read.
MOST_DECIDED = 1000
# Distributed registering: files per task (each task's bytes travel to a worker), and the
# tasks submitted ahead of the results, which bounds what this process holds in memory.
TASK_SIZE = 16
IN_FLIGHT = 32


@dataclass(frozen=True)
class Match:
    """One registered image found for a query, with the method's verdict."""

    image: ImageRecord
    method: str
    distance: float  # NHD (or the method's own distance for multi-hashes)
    hamming: int | None
    matched: bool
    rule: str
    # For methods with several parts per image (segments): the query's part that decided
    # (0 = the whole image) and its box in the query.
    query_part: int | None = None
    query_box: tuple[int, int, int, int] | None = None
    quality: int | None = None  # the registered hash's quality, where the method has one
    # Where the method stores crops of each reference (BaseHasher.reference_crops): the
    # query's distance to the nearest of them, when nearer than to the whole image.
    crop_distance: float | None = None

    @property
    def nearest(self) -> float:
        """The query's distance to the nearest hash stored for the image (itself or a crop)."""
        return self.distance if self.crop_distance is None else min(self.distance, self.crop_distance)


@dataclass(frozen=True)
class QueryResult:
    source: str
    method: str
    matches: list[Match]  # nearest first
    # Why the query cannot match anything (too little information, a hash below the
    # quality floor); its nearest images are still listed, none as a match.
    refused: str | None = None
    quality: int | None = None  # the query hash's quality, where the method has one
    # Images the query's hash, or one of its variants' (borders trimmed, a half turn, the
    # picture cut out), ranked among its own nearest (``query_examined``'s ``lead``).
    leading: frozenset[int] = frozenset()

    @property
    def matched(self) -> list[Match]:
        return [m for m in self.matches if m.matched]

    @property
    def montage(self) -> bool:
        """Two or more registered images found through different parts of the query: the
        query combines pictures (a montage), rather than being a copy of one."""
        matched = [m for m in self.matched if m.query_part is not None]
        return len({m.image.id for m in matched}) >= 2 and len({m.query_part for m in matched}) >= 2

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.source, "method": self.method, "matched": bool(self.matched),
                "montage": self.montage, "refused": self.refused, "quality": self.quality,
                "matches": [_match_dict(m) for m in self.matches]}


def _match_dict(m: Match) -> dict[str, Any]:
    record = {"image_id": m.image.id, "source": m.image.source, "metadata": m.image.metadata, "distance": m.distance,
              "hamming": m.hamming, "matched": m.matched, "rule": m.rule}
    if m.query_part is not None:
        record |= {"query_part": m.query_part, "query_box": m.query_box}
    if m.quality is not None:
        record["quality"] = m.quality
    if m.crop_distance is not None:
        record["crop_distance"] = m.crop_distance
    return record


@dataclass
class AddReport:
    added: list[tuple[str, int]] = field(default_factory=list)
    # Registered before; hashes it lacked (a method added since, a method's new version) were added.
    updated: list[tuple[str, int]] = field(default_factory=list)
    existing: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # unreadable, or refused (no information)
    # Registered without some methods' hashes, and why (e.g. PDQ quality below the floor).
    partial: list[tuple[str, str]] = field(default_factory=list)


Progress = Callable[[int, int], None]


class ReferenceDB:
    """Registered originals, their hashes, indexes and decisions.

    ``url``: SQLite file path, ``postgresql://`` URL, or ``milvus://host:port?store=STORE``
    (search on a Milvus server, truth in ``STORE``: :mod:`robusthash.db.milvus`).
    ``methods``: the hashers used by :meth:`add` (default: those the database was created
    with, else forbild). ``index_dir``: where FAISS indexes are saved (default for SQLite:
    ``<file>.index/``; for PostgreSQL none unless given; Milvus keeps its own).
    """

    def __init__(self, url: str | Path, methods: Sequence[str] | None = None, index_dir: Path | None = None,
                 limits: LoadLimits = DEFAULT_LIMITS, admission: Admission = DEFAULT_ADMISSION,
                 features: FeatureConfig | None = DEFAULT_FEATURES):
        milvus = parse_milvus_url(str(url)) if is_milvus_url(url) else None
        if milvus:
            connect(milvus)  # an unreachable server is reported now, not at the first query
        store_url = milvus.store if milvus else url
        self.store = Store(store_url)
        self.limits = limits
        self.admission = admission
        # What registering stores for verification (robusthash.identify); None: hashes only.
        self.features = features
        self.methods = list(methods) if methods else self._stored_methods()
        self.hashers: dict[str, BaseHasher] = {m: shared_hasher(m) for m in self.methods}  # type: ignore[misc]
        if index_dir is None and not self.store.is_postgres and not milvus:
            index_dir = Path(f"{store_url}.index")
        self.index_dir = index_dir
        self.identity = self._identity()
        self.index_home: IndexHome = (MilvusCollections(milvus, self.store, self.identity) if milvus
                                      else IndexFiles(index_dir, self.identity))
        self._indexes: dict[tuple[str, str], FollowedIndex] = {}
        self._store_checked = False

    def _stored_methods(self) -> list[str]:
        """The methods recorded for this database (``db init --methods``, ``db add
        --methods``); where none are, those whose hashes it holds (a database made
        through the API with ``methods`` records none: opened again without them, it
        searched with forbild alone, though it held pdq's and cmaa's hashes); else the
        default."""
        stored = self.store.meta("methods")
        if stored:
            return json.loads(stored)
        held: dict[str, set[str]] = {}
        for method, version in self.store.methods():
            if not method.endswith(CROPS) and method in available_methods():
                held.setdefault(method, set()).add(version)
        current = [m for m, versions in held.items() if shared_hasher(m).version in versions]
        return current or list(DEFAULT_METHODS)

    def _identity(self) -> str:
        """A random id of this database, so a saved index is never applied to another one."""
        return self.store.meta("identity") or self.store.setdefault_meta("identity", uuid.uuid4().hex)

    def set_methods(self, methods: Sequence[str]) -> tuple[list[str], list[str]]:
        """Record the methods this database registers with (``db init --methods``); returns
        the methods (added, dropped). Hashes already stored are kept either way; images
        registered before get a new method's hashes when ``add`` is run on them again."""
        hashers = {m: shared_hasher(m) for m in methods}
        before = self._stored_methods()
        self.store.set_meta("methods", json.dumps(list(methods)))
        self.methods, self.hashers = list(methods), hashers  # type: ignore[assignment]
        return [m for m in methods if m not in before], [m for m in before if m not in methods]

    def unregistered(self, method: str) -> str | None:
        """Why ``method`` cannot be searched here (None when it can): no image has its hashes,
        or only of another version than this robusthash makes."""
        versions = [v for m, v in self.store.methods() if m == method]
        hasher = self._hasher(method)
        if hasher.version in versions or (not versions and method in self.methods):
            return None
        if versions:
            return (f"{method}: the registered hashes are of version {', '.join(versions)}, this robusthash makes "
                    f"{hasher.version}; run `db add` on the originals again to hash them anew")
        known = sorted({m for m, _ in self.store.methods()} | set(self.methods))
        return f"{method} is not registered in this database (it has {', '.join(known) or 'no method'})"

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "ReferenceDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- registering ----------------------------------------------------------------

    def add(self, sources: Iterable[str | Path], metadata: dict[str, Any] | None = None, batch: int = 64,
            progress: Progress | None = None, executor: Executor | None = None,
            task_size: int = TASK_SIZE) -> AddReport:
        """Hash and register files; bad files are reported in the result, never raised
        (metadata that cannot be stored is: :class:`~robusthash.db.metadata.MetadataError`).

        Each batch is one transaction: if the process dies, committed batches stay and a
        re-run skips them (same digest) and completes the rest, without duplicates.

        ``executor`` (a process pool, or a Dask cluster's: :mod:`robusthash.cluster`) hashes
        ``task_size`` files per task: this process reads the files and sends their bytes, so
        workers need no access to them; it alone writes to the store, as results arrive.
        """
        metadata = check_metadata(metadata or {})
        paths = [Path(s) for s in sources]
        report = AddReport()
        pending: list[tuple[str, NewImage]] = []
        done = 0
        for results in self._hashed(paths, metadata, executor, task_size):
            for source, result in results:
                if isinstance(result, int):  # registered whole before: nothing to hash
                    report.existing.append((source, result))
                elif isinstance(result, Admitted):
                    pending.append((source, result.image))
                    report.partial += [(source, why) for why in result.left_out]
                else:
                    report.failed.append((source, result))
            done += len(results)
            if len(pending) >= batch or done == len(paths):
                self._commit(pending, report)
                pending = []
            if progress:
                progress(done, len(paths))
        return report

    def _hashed(self, paths: list[Path], metadata: dict[str, Any], executor: Executor | None,
                task_size: int) -> Iterator[list[tuple[str, Admitted | str | int]]]:
        """(source, Admitted, the reason it failed, or the id of the image it is when that
        is registered with everything an add would give it) of every path, a task's worth
        at a time. A registered file is not hashed again: a re-run of an add killed early,
        again and again, would otherwise hash what is done before reaching anything new."""
        if executor is None:
            for path in paths:
                data = read_file(path, self.limits)
                if isinstance(data, str):
                    yield [(str(path), data)]
                    continue
                digest = file_digest(data)  # once: it finds a registered file and registers a new one
                done = self._registered(digest)
                yield [(str(path), done if done is not None else
                        ingest(data, str(path), self.methods, self.limits, metadata, self.admission, self.features,
                               digest))]
            return
        chunks = [paths[i:i + task_size] for i in range(0, len(paths), task_size)]
        running: set[Future] = set()
        for chunk in chunks:
            if len(running) >= IN_FLIGHT:  # bounded: only these tasks' bytes are held
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
            read = [(str(path), read_file(path, self.limits)) for path in chunk]
            digests = {source: file_digest(data) for source, data in read if isinstance(data, bytes)}
            done = [(source, self._registered(digest)) for source, digest in digests.items()]
            registered = {source for source, image_id in done if image_id is not None}
            encoded = [(source, data, digests[source]) for source, data in read
                       if isinstance(data, bytes) and source not in registered]
            failed = [(source, why) for source, why in read if isinstance(why, str)]
            known = [(source, image_id) for source, image_id in done if image_id is not None]
            if failed or known:
                yield failed + known
            if encoded:
                running.add(executor.submit(ingest_batch, encoded, self.methods, self.limits, metadata,
                                            self.admission, self.features))
        for future in as_completed(running):
            yield future.result()

    def _registered(self, digest: str) -> int | None:
        """The id of the image with this digest, if it holds every hash and the local
        features an add would give it (:meth:`Store.complete`)."""
        hashers = [(m, self._hasher(m)) for m in self.methods]
        wanted = [(m, h.version, 1) for m, h in hashers]
        wanted += [(crops_of(m), h.version, h.reference_crop_count) for m, h in hashers if h.reference_crop_count]
        feature = (FEATURES_KIND, FEATURES_VERSION) if self.features is not None else None
        return self.store.complete(digest, wanted, feature)

    def _commit(self, pending: list[tuple[str, NewImage]], report: AddReport) -> None:
        if not pending:
            return
        for (source, _), (image_id, status) in zip(pending, self.store.add_images([p for _, p in pending])):
            {ADDED: report.added, UPDATED: report.updated}.get(status, report.existing).append((source, image_id))

    def add_examined(self, source: str, examined: Examined,
                     metadata: dict[str, Any] | None = None) -> tuple[int, str, list[str]]:
        """Register a file examined elsewhere (e.g. by the service, outside its lock):
        (image id, status, the methods left out and why). Raises ValueError when the image
        is refused, or was examined from pixels rather than a file (MetadataError, a
        ValueError, for metadata that cannot be stored)."""
        admitted = admit(examined, source, check_metadata(metadata or {}), self.admission,
                         {m: self._hasher(m) for m in examined.hashes})
        if isinstance(admitted, str):
            raise ValueError(admitted)
        image_id, status = self.store.add_images([admitted.image])[0]
        return image_id, status, admitted.left_out

    def remove(self, image_ids: Iterable[int]) -> int:
        return self.store.remove_images(image_ids)

    # --- searching ------------------------------------------------------------------

    def query(self, image: Any, methods: Sequence[str] | None = None, k: int = 5,
              source: str | None = None) -> list[QueryResult]:
        """Hash ``image`` (anything the loader takes) with each method and search.
        Raises ValueError naming a method that cannot be searched here (:meth:`unregistered`)."""
        names = list(methods or self.methods)
        problems = [why for why in map(self.unregistered, names) if why]
        if problems:
            raise ValueError("; ".join(problems))
        examined = self.examine(image, names)
        name = source or (str(image) if isinstance(image, (str, Path)) else "<image>")
        return self.query_examined(examined, names, k=k, source=name)

    def stored_features(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        """Each of these images' stored local features (:meth:`LocalFeatures.from_bytes`):
        this version's, else an older version's (``OLDER_VERSIONS``: the same check, with
        fewer keypoints for a smooth picture) until ``db add`` of its file stores this
        version's; an image holding none is left out."""
        found = self.store.features(image_ids, FEATURES_KIND, FEATURES_VERSION)
        for version in OLDER_FEATURES:
            missing = [i for i in image_ids if i not in found]
            if not missing:
                break
            found.update(self.store.features(missing, FEATURES_KIND, version))
        return found

    def examine(self, image: ImageSource, methods: Sequence[str] | None = None, name: str | None = None,
                variants: bool = True, features: FeatureConfig | None = None, query: bool = False) -> Examined:
        """:func:`examine` with this database's methods (or ``methods``), limits and rule:
        a query with each method's query variants unless ``variants`` is False; then a
        query as it is given with ``query`` (:meth:`with_variants` adds them), else an
        image to register; with local features when ``features`` is given
        (:attr:`features` to register)."""
        return examine(image, [self._hasher(m) for m in (methods or self.methods)], self.limits, name,
                       self.admission.information or DEFAULT_RULE, variants, features,
                       crops=not (variants or query), query=query)

    def with_variants(self, examined: Examined, methods: Sequence[str] | None = None) -> Examined:
        """A query examined as it was given, with its query variants added
        (:func:`~robusthash.db.ingest.with_variants`) for its methods (or ``methods``)."""
        return with_variants(examined, [self._hasher(m) for m in (methods or examined.hashes)])

    def examine_region(self, examined: Examined, box: tuple[int, int, int, int], methods: Sequence[str] | None = None,
                       features: FeatureConfig | None = None) -> ExaminedRegion:
        """A region of an examined query, looked at again with the query's methods (or
        ``methods``; none: no hashes), and with ``features`` its local features
        (:func:`~robusthash.db.ingest.examine_region`)."""
        names = examined.hashes if methods is None else methods
        return examine_region(examined, [self._hasher(m) for m in names], box, features)

    def crop_methods(self, methods: Sequence[str]) -> list[str]:
        """Those of ``methods`` that find a crop of a picture (they store crops beside each
        reference: ``BaseHasher.reference_crops``), so that a part of a query is worth
        their search."""
        return [m for m in methods if self._hasher(m).reference_crop_count]

    def negative_hashes(self, examined: Examined, methods: Sequence[str]) -> list[Hash]:
        """The hashes of the query's negative (colours inverted) that ``methods`` tell from
        its hashes and their variants alone (PDQ's complements: no image work)."""
        found = []
        for name in methods:
            hasher = self._hasher(name)
            for value in (examined.hashes[name], *examined.variants.get(name, [])):
                negative = hasher.negative_hash(value)
                if negative is not None:
                    found.append(negative)
        return found

    def examine_negative(self, examined: Examined, methods: Sequence[str], features: FeatureConfig) -> ExaminedRegion:
        """The query's negative examined with ``methods`` and its local features
        (:func:`~robusthash.db.ingest.examine_negative`)."""
        return examine_negative(examined, [self._hasher(m) for m in methods], features)

    def examine_halves(self, examined: Examined, methods: Sequence[str]) -> list[ExaminedRegion]:
        """The halves of an examined query hashed with ``methods``
        (:func:`~robusthash.db.ingest.examine_halves`)."""
        return examine_halves(examined, [self._hasher(m) for m in methods])

    def query_examined(self, examined: Examined, methods: Sequence[str] | None = None, k: int = 5,
                       source: str = "<image>", most: int = MOST_DECIDED, lead: int = 0,
                       searched: dict[str, QueryResult] | None = None) -> list[QueryResult]:
        """Search each method's hash of an examined image (:meth:`query_hash`), and its
        variants' (each image at its nearest); an image with too little information
        (unless the admission rule allows it) matches nothing. The query's and each
        variant's own ``lead`` nearest are kept whatever the others bring, and named in
        the result's ``leading``. ``searched``: each method's result for the query's own
        hash without its variants, from this call with the same arguments before (the
        query judged as it was given); only the variants are searched then."""
        refused = self.refusal(examined)
        results = []
        for name, value in examined.hashes.items():
            if methods is not None and name not in methods:
                continue
            variants = examined.variants.get(name, [])
            before = (searched or {}).get(name)
            found = self.query_hashes([*([] if before else [value]), *variants], k=k, source=source,
                                      refused=refused, most=most)
            result, found = (before, found) if before else (_led(found[0], lead), found[1:])
            for variant, of_variant in zip(variants, found):
                result = _best_of(result, _led(of_variant, lead), variant.extra.get("variant", "a variant"), k)
            results.append(result)
        return results

    def refusal(self, examined: Examined) -> str | None:
        """Why an examined query can match nothing here (too little information in it,
        unless the admission rule allows it); None when it can match."""
        if self.admission.information is not None and not examined.information.informative:
            return f"cannot be identified: {examined.information.reason}"
        return None

    def query_hash(self, value: Hash | MultiHash, k: int = 5, source: str = "<hash>",
                   refused: str | None = None, most: int = MOST_DECIDED) -> QueryResult:
        """Registered images nearest to a hash: every one the method matches (its
        ``most`` nearest of them) and at least the ``k`` nearest, each with the method's
        decision; where the method stores crops of each image, also the ``k`` with the
        nearest crops. A hash below its method's quality floor, or a query ``refused``
        for another reason, lists its nearest images, none of them as a match."""
        return self.query_hashes([value], k, source, refused, most)[0]

    def query_hashes(self, values: Sequence[Hash | MultiHash], k: int = 5, source: str = "<hash>",
                     refused: str | None = None, most: int = MOST_DECIDED) -> list[QueryResult]:
        """:meth:`query_hash` of each of ``values`` (a query's hashes and their variants),
        in order. The hashes of one method are searched together: its index catches up
        with the store once, and the store is read once for all of them (a query's
        twenty-odd hashes each read it four times before)."""
        results: list[QueryResult | None] = [None] * len(values)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, value in enumerate(values):
            groups.setdefault((value.method, value.version), []).append(i)
        for (method, version), where in groups.items():
            found = self._search_method(method, version, [values[i] for i in where], k, source, refused, most)
            for i, result in zip(where, found):
                results[i] = result
        return results  # type: ignore[return-value]

    def _search_method(self, method: str, version: str, values: list[Hash | MultiHash], k: int, source: str,
                       refused: str | None, most: int) -> list[QueryResult]:
        hasher = self._hasher(method)
        state = self._index(method, version)
        threshold = self.threshold(hasher)
        radius = hasher.search_radius(threshold[0])
        # Every part of every value, searched in one call; the nearest non-matches too
        # where the matches are too few (exact top-k far from every code is a full scan on
        # any index, so it is only asked for then).
        owner = [i for i, value in enumerate(values) for _ in segments(value)]
        codes = np.stack([np.frombuffer(part.data, dtype=np.uint8) for value in values for part in segments(value)])
        ids = [list(hits[0][:most]) for hits in state.index.range_search(codes, radius)]  # nearest first
        short = [j for j, found in enumerate(ids) if len(found) < k]
        if short:
            for j, more in zip(short, state.index.search(codes[short], k)[1]):
                ids[j] += list(more)
        wanted: list[set[int]] = [set() for _ in values]
        for j, found in enumerate(ids):
            wanted[owner[j]].update(int(i) for i in found if i >= 0)
        rows = self.store.hash_rows(set().union(*wanted))
        crops = self._nearest_crops(hasher, method, version, values, k)
        first_rows = {r.image_id: r for r in rows.values() if r.segment == 0}
        lacking = {i for near in crops for i in near} - set(first_rows)
        first_rows |= self.store.images_hashes(lacking, method, version) if lacking else {}
        images = self.store.images({r.image_id for r in rows.values()} | set(first_rows))
        results = []
        for value, hash_ids, near in zip(values, wanted, crops):
            own = {i: rows[i] for i in hash_ids if i in rows}
            held = {r.image_id for r in own.values()}
            own |= {first_rows[i].id: first_rows[i] for i in near if i not in held and i in first_rows}
            matches = self._decide(hasher, value, own, threshold, images, near)
            why = refused or hasher.weakness(value, self.admission.min_quality)
            if why:
                matches = [replace(m, matched=False, rule=f"{m.rule}; not a match: the query {why}") for m in matches]
            matches.sort(key=lambda m: (not m.matched, m.distance, m.image.id))
            quality = value.extra.get("quality") if isinstance(value, Hash) else None
            results.append(QueryResult(source, value.method, _shown(matches, k), why, quality))
        return results

    def _nearest_crops(self, hasher: BaseHasher, method: str, version: str, values: Sequence[Hash | MultiHash],
                       k: int) -> list[dict[int, float]]:
        """Per value (hashes of ``method`` at ``version``), the ``k`` images whose stored
        crops (BaseHasher.reference_crops) are nearest to it: image id → NHD to its
        nearest crop; none where the method stores none."""
        searched = [i for i, value in enumerate(values) if isinstance(value, Hash)]
        out: list[dict[int, float]] = [{} for _ in values]
        if not hasher.reference_crop_count or not searched:
            return out
        state = self._index(crops_of(method), version)
        codes = np.stack([np.frombuffer(values[i].data, dtype=np.uint8) for i in searched])
        distances, ids = state.index.search(codes, k * hasher.reference_crop_count)
        rows = self.store.hash_rows({int(i) for i in ids.ravel() if i >= 0})
        for i, row_distances, row_ids in zip(searched, distances, ids):
            nearest: dict[int, float] = {}
            for d, hash_id in zip(row_distances, row_ids):
                if hash_id >= 0 and int(hash_id) in rows:
                    image_id = rows[int(hash_id)].image_id
                    nearest[image_id] = min(nearest.get(image_id, 1.0), float(d) / hasher.bits)
            out[i] = dict(sorted(nearest.items(), key=lambda item: (item[1], item[0]))[:k])
        return out

    def _hasher(self, method: str) -> BaseHasher:
        if method not in self.hashers:
            self.hashers[method] = shared_hasher(method)  # type: ignore[assignment]
        return self.hashers[method]

    def threshold(self, hasher: BaseHasher) -> tuple[float, str]:
        """The NHD threshold a method decides with here, and where it comes from."""
        calibration = self.store.calibration(hasher.name, hasher.version)
        if calibration and not hasher.own_rule:
            return calibration.threshold, f"calibrated at {calibration.fpr:.2%} FPR on {calibration.images} images"
        return hasher.threshold, hasher.threshold_source or "the method's default"

    def _decide(self, hasher: BaseHasher, value: Hash | MultiHash, rows: dict[int, HashRow],
                decision: tuple[float, str], images: dict[int, ImageRecord],
                crops: dict[int, float] | None = None) -> list[Match]:
        by_image: dict[int, list[HashRow]] = {}
        for row in rows.values():
            by_image.setdefault(row.image_id, []).append(row)
        threshold, source = decision
        crops = crops or {}
        matches = []
        for image_id, image_rows in by_image.items():
            if image_id not in images:
                continue  # removed between the search and now
            stored = self._stored_value(hasher, value, image_id, image_rows)
            comparison, rule = hasher.decide(value, stored, threshold, source)
            box = comparison.details.get("query_box")
            crop = crops.get(image_id)
            if crop is not None and crop < comparison.distance:
                rule = f"{rule}; NHD {crop:.4f} to a stored crop of it"
            else:
                crop = None
            matches.append(Match(images[image_id], hasher.name, float(comparison.distance), comparison.hamming,
                                 bool(comparison.matched), rule, comparison.details.get("query_part"),
                                 tuple(box) if box is not None else None, image_rows[0].quality, crop))
        return matches

    def _stored_value(self, hasher: BaseHasher, value: Hash | MultiHash, image_id: int,
                      rows: list[HashRow]) -> Hash | MultiHash:
        if isinstance(value, MultiHash):
            every = self.store.image_hashes(image_id, value.method, value.version)
            segments = tuple(_unpack(r, hasher.bits) for r in every)
            return MultiHash(segments, value.method, value.version)
        return _unpack(rows[0], hasher.bits)

    # --- indexes ----------------------------------------------------------------------

    def _index(self, method: str, version: str) -> FollowedIndex:
        key = (method, version)
        if key not in self._indexes:
            bits = self._hasher(method.removesuffix(CROPS)).bits  # a method's crops: its codes
            state = self.index_home.open(method, version, bits)
            why = self._disagreement(method, version, state)
            if why:
                log.warning("the saved %s (%s) index does not match the database %s: %s; rebuilding it from the "
                            "database", method, version, self.store.url, why)
                state = self.index_home.discard(method, version, bits)
            if state.progress == (0, 0):
                self._check_store()  # an index built from the store is only as good as the store
            self._indexes[key] = state
        state = self._indexes[key]
        self._catch_up(method, version, state)
        self.index_home.followed(method, version, state)
        return state

    def _check_store(self) -> None:
        """SQLite's quick_check, once per opening, before an index is built from the
        store: random bytes in a page otherwise became wrong "no match" answers. Raises
        :class:`~robusthash.db.store.StoreUnavailable` naming what is damaged."""
        if self._store_checked:
            return
        problems = self.store.quick_check()
        if problems:
            raise StoreUnavailable(f"the database {self.store.url} is damaged ({'; '.join(problems[:3])}); restore it "
                                   "from a backup, or register the files again into a new one")
        self._store_checked = True

    def _disagreement(self, method: str, version: str, state: FollowedIndex, sample: int = 32) -> str | None:
        """Why a kept index cannot be the store's rows as far as it says it followed them,
        or None. A database restored from a backup, a lost or truncated WAL, or an index
        file overwritten by an older one leave an index *ahead* of its store: new rows
        reuse ids it already holds, and catching up from its last id would skip them,
        hidden from every query while ``db stats`` counts them. So: the removal log must
        reach as far as the index applied it, the index must hold exactly the rows up to
        its last id (those removed since included), and the newest of them must be in it
        with the store's codes."""
        if state.last_hash_id == 0 and state.last_removal == 0 and len(state.index) == 0:
            return None  # a new index: nothing to trust
        if self.store.last_removal() < state.last_removal:
            return (f"it applied removals up to entry {state.last_removal} of a log that ends at "
                    f"{self.store.last_removal()}")
        count, newest = self.store.hashes_up_to(method, version, state.last_hash_id, sample)
        pending = sum(1 for _, h in self.store.removals(method, version, state.last_removal) if h <= state.last_hash_id)
        if len(state.index) != count + pending:
            return f"it holds {len(state.index)} codes where the database has {count + pending} up to id {state.last_hash_id}"
        if newest:
            codes = np.frombuffer(b"".join(r.bits for r in newest), dtype=np.uint8).reshape(len(newest), -1)
            for row, (ids, _) in zip(newest, state.index.range_search(codes, 0)):
                if row.id not in ids:
                    return f"its code for hash {row.id} is not the database's"
        return None

    def _catch_up(self, method: str, version: str, state: FollowedIndex) -> None:
        """Apply what the store gained and lost since the index last looked."""
        removals = self.store.removals(method, version, state.last_removal)
        if removals:
            state.index.remove(np.array([h for _, h in removals], dtype=np.int64))
            state.last_removal = removals[-1][0]
        for batch in self.store.hashes(method, version, after_id=state.last_hash_id):
            ids = np.array([r.id for r in batch], dtype=np.int64)
            codes = np.frombuffer(b"".join(r.bits for r in batch), dtype=np.uint8).reshape(len(batch), -1)
            state.index.add(ids, codes)
            state.last_hash_id = int(ids[-1])

    def refresh(self) -> None:
        """Bring every index in step with the store (queries do this themselves)."""
        for method, version in self.store.methods():
            self._index(method, version)

    def save_indexes(self) -> list[Path]:
        """Persist every index with how far it followed the store; returns the files written."""
        return [path for (method, version), state in self._indexes.items()
                for path in self.index_home.save(method, version, state)]

    # --- calibration ----------------------------------------------------------------

    def calibrate(self, method: str, fpr: float = 0.01, max_pairs: int = 2_000_000, seed: int = 0) -> Calibration:
        """Threshold at ``fpr`` from pairs of distinct registered images (whole-image hashes)."""
        hasher = self._hasher(method)
        codes = [r.bits for batch in self.store.hashes(method, hasher.version) for r in batch if r.segment == 0]
        n = len(codes)
        if n < 20:
            raise ValueError(f"calibrating {method} needs at least 20 registered images, found {n}")
        packed = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(n, -1)
        total = n * (n - 1) // 2
        if total <= max_pairs:
            rows, cols = np.triu_indices(n, 1)
        else:
            rng = np.random.default_rng(seed)
            rows = rng.integers(0, n, size=max_pairs)
            cols = (rows + rng.integers(1, n, size=max_pairs)) % n  # never the same image
        distances = hamming_rows(packed[rows], packed[cols]) / hasher.bits
        calibration = Calibration(method, hasher.version, fpr, threshold_at_fpr(distances, fpr), len(distances), n,
                                  datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.store.save_calibration(calibration)
        return calibration

    def stats(self) -> dict[str, Any]:
        stats = self.store.stats()
        for key, entry in stats["methods"].items():
            method, version = key.split("@", 1)
            calibration = self.store.calibration(method, version)
            entry["calibration"] = asdict(calibration) if calibration else None
        stats["registering_with"] = self.methods
        return stats


def _shown(matches: list[Match], k: int) -> list[Match]:
    """What a result lists of ``matches`` (matched first, then nearest): every match and
    the ``k`` nearest, and the ``k`` whose stored hashes (crops included) are nearest."""
    shown = matches[: max(k, sum(m.matched for m in matches))]
    listed = {m.image.id for m in shown}
    by_crop = sorted((m for m in matches if m.crop_distance is not None), key=lambda m: (m.nearest, m.image.id))
    return shown + [m for m in by_crop[:k] if m.image.id not in listed]


def _led(result: QueryResult, lead: int) -> QueryResult:
    """``result`` with its ``lead`` nearest images (through a crop too) named as leading."""
    nearest = sorted(result.matches, key=lambda m: (m.nearest, m.image.id))[:lead]
    return replace(result, leading=frozenset(m.image.id for m in nearest))


def _best_of(result: QueryResult, variant: QueryResult, label: str, k: int) -> QueryResult:
    """Each image's better match of a query and one of its variants (the variant's is
    marked so), as one result of the query; the leading images of both stay."""
    best = {m.image.id: m for m in result.matches}
    for m in variant.matches:
        kept = best.get(m.image.id)
        crop = min((c for c in (m.crop_distance, kept and kept.crop_distance) if c is not None), default=None)
        chosen = replace(m, rule=f"{m.rule} (the query's {label})") if kept is None or (
            (m.matched, -m.distance) > (kept.matched, -kept.distance)) else kept
        best[m.image.id] = replace(chosen, crop_distance=crop if crop is not None and crop < chosen.distance else None)
    matches = sorted(best.values(), key=lambda m: (not m.matched, m.distance, m.image.id))
    leading = result.leading | variant.leading
    shown = {m.image.id for m in _shown(matches, k)}
    return replace(result, matches=[m for m in matches if m.image.id in shown or m.image.id in leading],
                   leading=leading)


def _unpack(row: HashRow, nbits: int) -> Hash:
    return Hash(row.bits, nbits, row.method, row.version)


__all__ = ["AddReport", "Match", "QueryResult", "ReferenceDB"]
