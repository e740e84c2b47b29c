"""The evaluation protocol of CMAA (docs/protocol.md), run for several methods at once.

For every original image, every attack of the chosen suites makes one copy; every
method hashes the original and every copy. From those hashes, per method:

* discrimination: NHD between all pairs of distinct originals (μ, σ) and the threshold
  τ at which 1% of those pairs would be (falsely) matched;
* robustness: NHD_r, the mean NHD between an original and its attacked copy;
* identification at τ: F1 with positives (copy, its original) and one negative per
  copy (copy, another original), and rank-1 (is the copy's nearest original its own);
* DET curves, from all (copy, original) pairs;
* hashing time per image.

Attacking and hashing is the expensive part: it runs image by image on a process pool
and every hash goes into a :class:`~robusthash.evaluation.hashcache.HashCache`, so a
re-run only computes what is missing. The metrics come from the hashes alone.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .. import attacks
from ..attacks import AttackCase, spec as attack_spec, suites as attack_suites, transforms as attack_transforms
from ..cluster import usable_cores
from ..hashing import get_hasher, shared_hasher
from ..io import ImageError, load_pil
from .hashcache import HashCache, file_digest, source_fingerprint
from .metrics import (
    det_from_histograms,
    hamming_matrix,
    identification,
    pairwise_hamming,
    rank1_rate,
    threshold_at_fpr,
)

ORIGINAL = "original"  # the attack id of the unattacked image
# The code that makes attacked copies: a change to it invalidates cached hashes of copies.
ATTACK_MODULES = (attack_transforms, attack_spec, attack_suites)
PAPER_ORDER = ("table1", "table2", "strong", "crop", "pad")  # what "all" stands for
# "unseen" (attacks.UNSEEN) is never part of "all": it runs only when named.
SUITE_NAMES = (*PAPER_ORDER, "all", "unseen")
POOLED = "pooled"  # the DET curve over every attack of the run


def default_cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "robusthash" / "bench-hashes.sqlite"


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``attacks`` is what ``robusthash bench --attacks`` takes: suite names
    (table1, table2, strong, crop, pad, all, unseen) and/or attack specs, comma-separated."""

    images: tuple[Path, ...]
    methods: tuple[str, ...]
    attacks: str = "table1,table2"
    fpr: float = 0.01
    seed: int = 0
    workers: int = field(default_factory=usable_cores)
    cache: Path | None = field(default_factory=default_cache_path)


@dataclass(frozen=True)
class GroupedCase:
    """An attack case and the suite it was asked for under (a report section)."""

    group: str
    case: AttackCase


def attack_cases(spec: str) -> list[GroupedCase]:
    """The attack cases of ``--attacks``, each once, in the order asked."""
    seen: set[str] = set()
    cases = []
    parts = [p.strip() for p in attack_spec.split_outside_parentheses(spec, ",") if p.strip()]
    # "all" is reported suite by suite, so the paper's tables keep their own rows and Avg.
    parts = [q for p in parts for q in (PAPER_ORDER if p.lower() == "all" else (p,))]
    for part in parts:
        group = part.lower() if part.lower() in SUITE_NAMES else "custom"
        for case in attacks.suite(part):
            if case.spec not in seen:
                seen.add(case.spec)
                cases.append(GroupedCase(group, case))
    if not cases:
        raise ValueError(f"no attacks in {spec!r}")
    return cases


def case_seed(seed: int, image_digest: str, spec: str) -> int:
    """The seed of one attacked copy: fixed by the run's seed, the image and the attack,
    so copies are the same whatever the order, the pool or the other attacks."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{image_digest}|{spec}".encode()).digest()[:8], "little")


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation without fixed points: copy i's negative is original π(i)."""
    if n < 2:
        raise ValueError("the protocol needs at least two distinct images")
    rng = np.random.default_rng([seed, n])
    return (np.arange(n) + rng.integers(1, n, size=n)) % n


# --- the part that runs in the pool -------------------------------------------------

COPIES_AT_ONCE = 32  # attacked copies of one image held and hashed together


@dataclass
class ImageOutcome:
    """What one image's task returns: new hashes or why the image could not be used."""

    index: int
    hashes: list[tuple[str, str, bytes, float]] = field(default_factory=list)  # spec, method, bits, s
    attack_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def attack_and_hash(index: int, path: str, digest: str, jobs: dict[str, list[str]], seed: int) -> ImageOutcome:
    """Make the copies ``jobs`` asks for (spec → methods) of one image and hash them."""
    outcome = ImageOutcome(index)
    try:
        original = load_pil(path)
    except ImageError as exc:
        outcome.error = str(exc)
        return outcome
    specs = list(jobs)
    for first in range(0, len(specs), COPIES_AT_ONCE):  # bounded memory for big originals
        copies: dict[str, Image.Image] = {}
        for spec in specs[first:first + COPIES_AT_ONCE]:
            start = time.perf_counter()
            try:
                copies[spec] = original if spec == ORIGINAL else attacks.parse(spec)(original, seed=case_seed(seed, digest, spec))
            except Exception as exc:  # noqa: BLE001 - one failing attack must not end a long run
                outcome.error = f"{path}: attack {spec} failed ({type(exc).__name__}: {exc})"
                return outcome
            outcome.attack_seconds[spec] = time.perf_counter() - start
        for method in dict.fromkeys(m for spec in copies for m in jobs[spec]):
            # The copies together: learned hashers batch them through the model.
            wanted = [spec for spec in copies if method in jobs[spec]]
            start = time.perf_counter()
            values = shared_hasher(method).hash_pils([copies[spec] for spec in wanted])
            seconds = (time.perf_counter() - start) / len(wanted)
            outcome.hashes += [(spec, method, value.data, seconds) for spec, value in zip(wanted, values)]
    return outcome


def _single_threaded_blas() -> None:
    # Each pool process is one core's worth of work; BLAS threads would only fight over
    # the same cores (blockhash's small matrix products run ~10× slower with them).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


# --- results ---------------------------------------------------------------------


@dataclass
class CaseResult:
    group: str
    family: str
    spec: str
    nhd_r: float
    f1: float
    tpr: float
    fpr: float
    rank1: float


@dataclass
class MethodResult:
    method: str
    version: str
    bits: int
    tau: float  # NHD threshold at the configured FPR on distinct originals
    tau_bits: float
    mu: float
    sigma: float
    ms_per_image: float
    cases: list[CaseResult]
    det: dict[str, dict[str, list[float]]]  # group (and POOLED) → NHD thresholds, fpr, fnr

    def family_means(self, key: str) -> dict[str, float]:
        """Mean of ``key`` over each family's cases (families in report order)."""
        by_family: dict[str, list[float]] = {}
        for case in self.cases:
            by_family.setdefault(case.family, []).append(getattr(case, key))
        order = {family: i for i, family in enumerate(attacks.FAMILY_ORDER)}
        ordered = sorted(by_family, key=lambda f: (order.get(f, len(order)), f))
        return {family: float(np.mean(by_family[family])) for family in ordered}

    def average(self, key: str, families: Sequence[str] | None = None) -> float:
        """The "Avg." row: the mean over families (each family weighs the same)."""
        means = self.family_means(key)
        chosen = [means[f] for f in (families or means) if f in means]
        return float(np.mean(chosen)) if chosen else float("nan")


@dataclass
class BenchResult:
    config: dict[str, Any]
    images: list[str]
    skipped: dict[str, str]
    groups: dict[str, list[str]]  # group → families in it
    methods: list[MethodResult]
    computed: int  # hashes computed in this run (the rest came from the cache)
    cached: int
    seconds: float
    attack_ms: dict[str, float]  # family → ms per copy, for the copies made in this run

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        for method, result in zip(data["methods"], self.methods):
            method["families"] = {
                key: result.family_means(key) for key in ("nhd_r", "f1", "tpr", "rank1")
            }
            method["average"] = {key: result.average(key) for key in ("nhd_r", "f1", "tpr", "rank1")}
        return data


# --- the run ----------------------------------------------------------------------

Progress = Callable[[int, int], None]


def run_bench(config: BenchConfig, progress: Progress | None = None, executor: Executor | None = None) -> BenchResult:
    """Attack, hash (cached, in parallel) and measure; see the module docstring.

    ``executor`` (e.g. a Dask cluster's, :mod:`robusthash.cluster`) runs the per-image tasks
    instead of a local pool of ``config.workers`` processes; its workers must see the image
    files at the same paths."""
    started = time.perf_counter()
    cases = attack_cases(config.attacks)
    hashers = {m: get_hasher(m) for m in config.methods}
    for name, hasher in hashers.items():
        if not isinstance(getattr(hasher, "bits", None), int) or getattr(hasher, "multi", False):
            raise ValueError(f"method {name!r} has no fixed-length hash; the protocol compares fixed-length hashes")
    method_ids = {m: f"{h.name}@{h.version}#{source_fingerprint(type(h))}" for m, h in hashers.items()}
    attack_code = source_fingerprint(*ATTACK_MODULES)
    attack_ids = {ORIGINAL: ORIGINAL} | {
        c.case.spec: f"{c.case.spec}|seed={config.seed}|{attack_code}" for c in cases
    }

    images, digests, skipped = _distinct_readable(config.images)
    cache = HashCache(config.cache)
    try:
        stored, jobs = _plan(images, digests, cache, method_ids, attack_ids)
        computed, attack_seconds = _execute(config, images, digests, jobs, stored, cache, attack_ids, method_ids, skipped,
                                            progress, executor)
    finally:
        cache.close()

    keep = [i for i, path in enumerate(images) if str(path) not in skipped]
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} usable image(s); the protocol needs at least two")
    partner = derangement(len(keep), config.seed)
    specs = [ORIGINAL] + [c.case.spec for c in cases]
    results = []
    for method, hasher in hashers.items():
        packed = np.stack([
            np.stack([np.frombuffer(stored[i][(attack_ids[s], method_ids[method])][0], np.uint8) for i in keep])
            for s in specs
        ])
        seconds = [stored[i][(attack_ids[s], method_ids[method])][1] for i in keep for s in specs]
        results.append(_measure(hasher.name, hasher, packed, cases, partner, config.fpr, float(np.mean(seconds))))

    groups: dict[str, list[str]] = {}
    for c in cases:
        families = groups.setdefault(c.group, [])
        if c.case.family not in families:
            families.append(c.case.family)
    family_of = {c.case.spec: c.case.family for c in cases}
    attack_ms: dict[str, list[float]] = {}
    for spec, seconds in attack_seconds:
        if spec != ORIGINAL:
            attack_ms.setdefault(family_of[spec], []).append(seconds * 1000)
    return BenchResult(
        config={
            "methods": list(config.methods), "attacks": config.attacks, "fpr": config.fpr, "seed": config.seed,
            "workers": config.workers, "cache": str(config.cache) if config.cache else None,
            "cases": [{"group": c.group, "family": c.case.family, "spec": c.case.spec} for c in cases],
            "method_ids": method_ids, "attack_code": attack_code,
        },
        images=[str(images[i]) for i in keep],
        skipped=skipped,
        groups=groups,
        methods=results,
        computed=computed,
        cached=len(keep) * len(specs) * len(hashers) - computed,
        seconds=time.perf_counter() - started,
        attack_ms={family: float(np.mean(v)) for family, v in attack_ms.items()},
    )


def _distinct_readable(paths: Sequence[Path]) -> tuple[list[Path], list[str], dict[str, str]]:
    """Files that can be read, each content once (a duplicate would be a false "distinct" pair)."""
    images, digests, skipped = [], [], {}
    first_of: dict[str, Path] = {}
    for path in paths:
        try:
            digest = file_digest(path)
        except OSError as exc:
            skipped[str(path)] = f"cannot read: {exc.strerror or exc}"
            continue
        if digest in first_of:
            skipped[str(path)] = f"same bytes as {first_of[digest]}"
            continue
        first_of[digest] = path
        images.append(Path(path))
        digests.append(digest)
    return images, digests, skipped


def _plan(images, digests, cache, method_ids, attack_ids):
    """What the cache holds per image and, for the rest, which copies each method needs."""
    stored: list[dict[tuple[str, str], tuple[bytes, float]]] = []
    jobs: list[dict[str, list[str]]] = []
    for digest in digests:
        held = cache.lookup(digest, method_ids.values())
        stored.append(held)
        need: dict[str, list[str]] = {}
        for spec, attack_id in attack_ids.items():
            missing = [m for m, mid in method_ids.items() if (attack_id, mid) not in held]
            if missing:
                need[spec] = missing
        jobs.append(need)
    return stored, jobs


def _execute(config, images, digests, jobs, stored, cache, attack_ids, method_ids, skipped, progress, executor):
    """Run the pending jobs: on ``executor`` when given, else on a process pool when ``config.workers > 1``."""
    pending = [i for i, need in enumerate(jobs) if need]
    done, computed, attack_seconds = 0, 0, []
    total = len(images)
    if progress:
        progress(total - len(pending), total)

    def collect(outcome: ImageOutcome) -> None:
        nonlocal done, computed
        done += 1
        if outcome.error:
            skipped[str(images[outcome.index])] = outcome.error
        else:
            entries = [(attack_ids[s], method_ids[m], bits, sec) for s, m, bits, sec in outcome.hashes]
            cache.store(digests[outcome.index], entries)
            for attack_id, method_id, bits, sec in entries:
                stored[outcome.index][(attack_id, method_id)] = (bits, sec)
            computed += len(entries)
            attack_seconds.extend(outcome.attack_seconds.items())
        if progress:
            progress(total - len(pending) + done, total)

    args = [(i, str(images[i]), digests[i], jobs[i], config.seed) for i in pending]
    if executor is None and (config.workers <= 1 or len(pending) <= 1):
        for a in args:
            collect(attack_and_hash(*a))
        return computed, attack_seconds
    with ExitStack() as stack:
        if executor is None:
            _single_threaded_blas()
            context = multiprocessing.get_context("spawn")
            executor = stack.enter_context(ProcessPoolExecutor(max_workers=config.workers, mp_context=context))
        futures = [executor.submit(attack_and_hash, *a) for a in args]
        for future in as_completed(futures):
            collect(future.result())
    return computed, attack_seconds


def _measure(method: str, hasher, packed: np.ndarray, cases: list[GroupedCase], partner: np.ndarray,
             fpr: float, seconds: float) -> MethodResult:
    """All metrics of one method from its packed hashes ``[original + cases, image, bytes]``."""
    nbits = hasher.bits
    originals = packed[0]
    n = len(originals)
    distinct = pairwise_hamming(originals)
    tau_bits = threshold_at_fpr(distinct, fpr)
    positives: dict[str, list[np.ndarray]] = {}
    negatives: dict[str, list[np.ndarray]] = {}
    off_diagonal = ~np.eye(n, dtype=bool)
    case_results = []
    for k, grouped in enumerate(cases, start=1):
        distances = hamming_matrix(packed[k], originals)  # copy × original
        own = np.diagonal(distances)
        decided = identification(own, distances[np.arange(n), partner], tau_bits)
        case_results.append(CaseResult(
            group=grouped.group, family=grouped.case.family, spec=grouped.case.spec,
            nhd_r=float(own.mean() / nbits), f1=decided.f1, tpr=decided.tpr, fpr=decided.fpr,
            rank1=rank1_rate(distances, np.arange(n)),
        ))
        for group in (grouped.group, POOLED):
            positives.setdefault(group, []).append(np.bincount(own, minlength=nbits + 1))
            negatives.setdefault(group, []).append(np.bincount(distances[off_diagonal], minlength=nbits + 1))
    det = {}
    for group in positives:
        false_pos, false_neg = det_from_histograms(np.sum(positives[group], axis=0),
                                                   np.sum(negatives[group], axis=0))
        det[group] = {"nhd": (np.arange(nbits + 1) / nbits).tolist(),
                      "fpr": false_pos.tolist(), "fnr": false_neg.tolist()}
    return MethodResult(
        method=method, version=hasher.version, bits=nbits, tau=tau_bits / nbits, tau_bits=tau_bits,
        mu=float(distinct.mean() / nbits), sigma=float(distinct.std() / nbits), ms_per_image=seconds * 1000,
        cases=case_results, det=det,
    )


__all__ = [
    "BenchConfig", "BenchResult", "CaseResult", "MethodResult", "attack_and_hash", "attack_cases", "case_seed",
    "default_cache_path", "derangement", "run_bench",
]
