"""The identification engine against each single method, in one run (issue 23).

    python -m robusthash.evaluation.identify_report --corpus corpus --out results/identify \\
        [--split test|train] [--originals N] [--distractors M] [--unregistered U]

**References** (one SQLite database, every file registered with ``--methods``, local
features stored): N originals spread evenly over the split; M distractors, the split's
other photos (neither originals nor kept out) first, then, for the test split, train
photos, then the ``--extra`` training-only photos (a corpus built with ``--extra``);
and a crop (``CROP(0.6)``) of every ``crop_every``-th distractor, saved as a file
and registered too (references that look like copies of other references).

**Queries**, each a PIL image given to ``Identifier(ref).identify``:

- *registered*: every original under the attack suites: Table 1, Table 2, the strong
  attack, crops, padding and the unseen suite (``attacks.suites``; the unseen suite is
  used to tune nothing). A suite with a stride ``k`` gives
  original ``i`` the cases ``j`` with ``j ≡ i (mod k)``: every case is asked, by a k-th of
  the originals;
- *montages*: two registered originals side by side, or one pasted into the other
  (``synth.montage.random_montage``), partners half the originals' list apart (it is
  sorted by source: a montage mixes sources); both sources registered;
- *adversarial* (``--adversarial``): a Table 1 / 2 copy of an original, then white-box
  PGD on the learned hashes (:data:`ADVERSARIAL`), reported apart from the suites;
- *unregistered*: U attacked copies of kept-out photos of the split (never registered),
  random noise, smooth noise, flat colours and gradients.

**The single methods are measured in the same run**: each verdict carries every
method's own result (``Verdict.results``; where the engine decided the query as it was
given, each method's result with the query's variants is searched after the engine's
time: ``Identifier.method_results``), and a method's decision is its own: its first
(nearest) reference, and every reference it matches. ``union`` is every reference any
method matches (docs/identify.md's baseline).

**Metrics**, per attack family, for the engine and each method: recall@1 (the first
reference named is the query's original: the engine's first match; a method's nearest
reference, matched), TPR (the original is among those named: the verdict's matches; the
method's matched), false matches per query (named references that are not the
original; for unregistered queries every one), precision (true names over all names).
A false match that is another rendition of the same artwork (a Plasma wallpaper ships
one design at several sizes and crops, ``manifest.csv``) is counted false and also shown
apart. Montages: both sources named, the verdict ``montage``. Time per query: the engine
as a whole (decode of the in-memory image, every hash, local features, search, the
variants where needed, verification), wall and CPU time, one query at a time, and the
share of queries decided as given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from ..attacks import CROPS, PADDING, STRONG, TABLE1, TABLE2, UNSEEN, AttackCase, parse
from ..attacks import suite as named_cases
from ..db import ReferenceDB
from ..runtime import one_query_at_a_time
from ..files import evenly_spaced
from ..identify import MONTAGE, NO_MATCH, Identifier, IdentifyConfig, Verdict
from ..io import load_pil
from ..synth.corpus import Corpus
from ..synth.montage import random_montage

SUITE_CASES: dict[str, tuple[AttackCase, ...]] = {
    "table1": TABLE1, "table2": TABLE2, "strong": STRONG, "crop": CROPS, "pad": PADDING, "unseen": UNSEEN}
SUITE_TITLES = {"table1": "Table 1", "table2": "Table 2", "strong": "strong attack", "crop": "crops",
                "pad": "padding", "unseen": "unseen", "custom": "attacks given (--attacks)"}
DEFAULT_STRIDES = (("table1", 8), ("table2", 4), ("strong", 2), ("crop", 2), ("pad", 2), ("unseen", 5))
SYNTHETIC = ("noise", "smooth noise", "flat", "gradient")
# White-box PGD (ℓ∞ 8/255, 50 steps, through JPEG 90) on a random Table 1 / 2 copy, away
# from its original's features: on one learned hash, and on every differentiable signal
# at once (verification's ORB and the classical hashes are not differentiable).
ADVERSARIAL = {"PGD(cmaa)": ("cmaa",), "PGD(cmaa+aria)": ("cmaa", "aria")}
ADVERSARIAL_SIDE = 512  # the attacked copy's longer side (PGD's cost grows with pixels)
MONTAGE_KINDS = ("side by side", "inset")
ENGINE, UNION = "engine", "union"


@dataclass(frozen=True)
class IdentifyReportConfig:
    corpus: Path
    split: str = "test"  # the originals' split; "train" for development, "validation" to choose models
    originals: int = 60
    distractors: int = 1000  # photos, besides their crops
    unregistered: int = 300  # attacked copies of kept-out photos
    kept_out: int | None = None  # photos those copies are made of (default: half as many)
    methods: tuple[str, ...] = ("forbild", "pdq", "cmaa")
    crop_every: int = 4  # a crop of every 4th distractor is registered as well
    distractor_crop: str = "CROP(0.6)"
    strides: tuple[tuple[str, int], ...] = DEFAULT_STRIDES  # suite -> stride (0 leaves the suite out)
    cases: tuple[AttackCase, ...] | None = None  # instead of the suites: these, asked of every original
    montages: int | None = None  # default: one per original
    synthetic: int = 10  # of each kind of SYNTHETIC
    adversarial: int = 0  # originals whose attacked copy is also attacked adversarially (ADVERSARIAL)
    seed: int = 0
    # Every match of every method decided: the single methods' false matches are counted
    # in full (the engine's own default decides only the nearest it can use).
    engine: IdentifyConfig = IdentifyConfig(every_match=True)


@dataclass
class Query:
    """One query: what it is and what its true answer is (reference ids; none when unregistered)."""

    kind: str  # "attack", "adversarial", "montage", "unregistered"
    group: str  # attack: the suite; montage: its kind; unregistered: photo or a SYNTHETIC kind
    family: str
    spec: str
    truth: tuple[int, ...]
    make: Callable[[], Image.Image] = field(repr=False)
    about: str = ""  # the photo(s) it is made of


# --- queries ----------------------------------------------------------------------


def apply_attack(spec: str, im: Image.Image, seed: int) -> Image.Image:
    """``spec`` (the attack language) applied to ``im``."""
    return parse(spec)(im, seed=seed)


def cases_for(suite: str, stride: int, index: int) -> tuple[AttackCase, ...]:
    """The cases of ``suite`` original ``index`` is asked with: ``j ≡ index (mod stride)``."""
    cases = SUITE_CASES[suite]
    return tuple(case for j, case in enumerate(cases) if stride and j % stride == index % stride)


def side_by_side(a: Image.Image, b: Image.Image, height: int = 480, gap: int = 16) -> Image.Image:
    """``a`` and ``b`` scaled to one height, next to each other on white (a comparison post)."""
    scaled = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height),
                                       Image.Resampling.LANCZOS) for im in (a, b)]
    canvas = Image.new("RGB", (scaled[0].width + gap + scaled[1].width, height + 2 * gap), (255, 255, 255))
    canvas.paste(scaled[0], (0, gap))
    canvas.paste(scaled[1], (scaled[0].width + gap, gap))
    return canvas


def inset(a: Image.Image, b: Image.Image, seed: int) -> Image.Image:
    """``b`` pasted into ``a`` (longer side 40–60% of ``a``'s shorter side, ±30°, anywhere)."""
    montage, _ = random_montage(a, b.convert("RGBA"), np.random.default_rng(seed), scale=(0.4, 0.6))
    return montage


def synthetic(kind: str, rng: np.random.Generator) -> Image.Image:
    """An image of no registered photo: white noise, smooth noise, a flat colour, a gradient."""
    w, h = (int(v) for v in rng.integers(256, 900, 2))
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if kind == "smooth noise":
        small = Image.fromarray(rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3), dtype=np.uint8))
        return small.resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    if kind == "flat":
        return Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == "gradient":
        a, b = rng.integers(0, 256, (2, 3))
        t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
        pixels = a + (b.astype(np.float64) - a) * t
        return Image.fromarray(np.broadcast_to(pixels, (h, w, 3)).round().astype(np.uint8))
    raise ValueError(f"unknown synthetic kind {kind!r}")


def adversarial_copy(copy: Image.Image, original: Image.Image, methods: tuple[str, ...], seed: int) -> Image.Image:
    """``copy`` (reduced to ADVERSARIAL_SIDE) pushed away from ``original`` in the
    features of every one of ``methods`` at once (white-box PGD, ℓ∞ 8/255, each method's
    distance relative to its own scale), published as JPEG 90."""
    import torch

    from ..attacks import adversarial as adv
    from ..imaging import reduced

    fingerprints = [_fingerprint(m) for m in methods]
    x = adv.to_tensor(reduced(copy.convert("RGB"), ADVERSARIAL_SIDE))
    target = adv.to_tensor(reduced(original.convert("RGB"), ADVERSARIAL_SIDE))
    with torch.no_grad():
        wanted = [f(target) for f in fingerprints]

    def loss(p: torch.Tensor) -> torch.Tensor:
        return -sum(((f(p) - w) ** 2).sum() / (w ** 2).sum() for f, w in zip(fingerprints, wanted))

    pixels = adv.pgd(loss, x, adv.PGDConfig(eps=8 / 255, steps=50, seed=seed))
    return adv.published(pixels, 90)


_FINGERPRINTS: dict[str, Any] = {}


def _fingerprint(method: str):
    from ..attacks import adversarial as adv

    if method not in _FINGERPRINTS:
        _FINGERPRINTS[method] = adv.shipped_fingerprint(90, method)
    return _FINGERPRINTS[method]


# --- the corpus -------------------------------------------------------------------


@dataclass
class Selection:
    originals: list[Path]
    kept_out: list[Path]
    distractors: list[Path]


def select(config: IdentifyReportConfig) -> Selection:
    """The originals, the kept-out photos and the distractor photos (disjoint)."""
    corpus = Corpus(config.corpus)
    listed = {"test": corpus.test, "train": corpus.train, "validation": corpus.validation}
    if config.split not in listed:
        raise ValueError(f"split must be one of {', '.join(listed)}, not {config.split!r}")
    photos = listed[config.split]()
    if not photos:
        raise ValueError(f"{config.corpus}: the {config.split} split lists no photos"
                         + (" (write it: make validation-split)" if config.split == "validation" else ""))
    originals = evenly_spaced(photos, config.originals)
    taken = set(originals)
    rest = [p for p in photos if p not in taken]
    kept = config.kept_out if config.kept_out is not None else math.ceil(config.unregistered / 2)
    kept_out = evenly_spaced(rest, min(kept, len(rest))) if kept else []
    taken |= set(kept_out)
    rest = [p for p in rest if p not in taken]
    if config.distractors <= len(rest):
        distractors = evenly_spaced(rest, config.distractors)
    else:  # the split's own photos first, then (test, validation) train photos
        more = (corpus.train() if config.split != "train" else []) + corpus.extra_train()  # --extra: training only
        listed_already = taken | set(rest)  # the validation share is among the extra photos
        more = [p for p in more if p not in listed_already]
        distractors = rest + evenly_spaced(more, min(config.distractors - len(rest), len(more)))
    return Selection(originals, kept_out, distractors)


# --- running ----------------------------------------------------------------------


def _decisions(verdict, results, truth: tuple[int, ...], methods: tuple[str, ...]) -> dict[str, Any]:
    """What the engine and each method (its own ``results``) named for one query
    (reference ids, best first)."""
    by_method = {r.method: r for r in results}
    record: dict[str, Any] = {ENGINE: {"first": verdict.matches[0].image.id if verdict.matches else None,
                                       "named": [m.image.id for m in verdict.matches]}}
    union: list[int] = []
    for method in methods:
        result = by_method.get(method)
        first = result.matches[0] if result and result.matches else None
        named = [m.image.id for m in result.matched] if result else []
        record[method] = {"first": first.image.id if first is not None and first.matched else None,
                          "named": named}
        union += [i for i in named if i not in union]
    record[UNION] = {"first": None, "named": union}
    return record


def run(config: IdentifyReportConfig, progress: Callable[[str], None] = lambda line: print(line, flush=True),
        workdir: Path | None = None) -> dict:
    """Register the references, ask every query, return the result (see the module doc)."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="identify-report-") as tmp:
            return run(config, progress, Path(tmp))
    started = time.perf_counter()
    code = code_version()  # at the start: the code this run imported, not what is committed by its end
    chosen = select(config)
    strides = dict(config.strides)
    keys = {path.resolve(): key for path, key in Corpus(config.corpus).artworks().items()}

    def key_of(path: Path) -> str:  # the database keeps sources as absolute paths
        return keys.get(Path(path).resolve(), str(path))

    # references: originals, distractor photos, crops of some distractors (files)
    crop = parse(config.distractor_crop)
    crop_files, crop_of = [], {}
    for j, path in enumerate(chosen.distractors):
        if config.crop_every and j % config.crop_every == 0:
            target = workdir / f"crop-{j:05d}-{Path(path).stem}.jpg"
            crop(load_pil(path), seed=j).save(target, quality=92)
            crop_files.append(target)
            crop_of[str(target)] = path
    ref = ReferenceDB(workdir / "refs.sqlite", methods=list(config.methods))
    files = [*chosen.originals, *chosen.distractors, *crop_files]
    registering = time.perf_counter()
    added = ref.add(files)
    register_seconds = time.perf_counter() - registering
    ids = {source: image_id for source, image_id in (*added.added, *added.updated, *added.existing)}
    failed = dict(added.failed)
    stats = ref.store.stats()
    progress(f"{len(ids)} references registered in {register_seconds:.0f} s ({len(chosen.originals)} originals, "
             f"{len(chosen.distractors)} distractor photos, {len(crop_files)} distractor crops); "
             f"{len(failed)} refused: {failed}")
    reference_key = {image_id: key_of(crop_of.get(source, Path(source))) for source, image_id in ids.items()}
    reference_name = {image_id: Path(source).name for source, image_id in ids.items()}
    originals = [(i, p) for i, p in enumerate(chosen.originals) if str(p) in ids]

    queries = list(_queries(config, originals, chosen.kept_out, ids, strides))
    counts = defaultdict(int)
    for q in queries:
        counts[q.kind] += 1
    progress(f"{len(queries)} queries: " + ", ".join(f"{k} {n}" for k, n in counts.items()))

    one_query_at_a_time()  # as db query and the service ask
    engine = Identifier(ref, config.engine)
    records, load = [], [os.getloadavg()[0]]
    asking = time.perf_counter()
    for n, q in enumerate(queries):
        im = q.make()
        wall, cpu = time.perf_counter(), time.process_time()
        error = examined = None
        try:
            examined = engine.examine(im)
            verdict = engine.identify_examined(examined, q.about)
        except Exception as exc:  # the engine failed: it names nothing; the methods answer on their own
            error = f"{type(exc).__name__}: {exc}"
            verdict = Verdict(q.about, "error", [], [], None, ref.query(im, k=config.engine.per_method))
            progress(f"engine error on {q.about} {q.spec}: {error}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # Each method alone searches the query's variants too: where the engine decided
        # the query as given, they are looked for now, outside its time.
        results = verdict.results if verdict.variants or examined is None else engine.method_results(examined, q.about)
        record = {"kind": q.kind, "group": q.group, "family": q.family, "spec": q.spec, "about": q.about,
                  "truth": list(q.truth), "truth_keys": [reference_key[t] for t in q.truth],
                  "verdict": verdict.verdict, "refused": verdict.refused, "candidates": len(verdict.candidates),
                  "seconds": wall, "cpu_seconds": cpu, "size": list(im.size), "error": error,
                  "variants": verdict.variants, "stratum": verdict.stratum,
                  "decisions": _decisions(verdict, results, q.truth, config.methods),
                  "reasons": {m.image.id: m.reason for m in verdict.matches},
                  "evidence": _evidence(verdict, q.truth)}
        records.append(record)
        if (n + 1) % 100 == 0 or n + 1 == len(queries):
            load.append(os.getloadavg()[0])
            elapsed = time.perf_counter() - asking
            progress(f"{n + 1}/{len(queries)} queries, {elapsed / (n + 1):.3f} s each, "
                     f"~{elapsed / (n + 1) * (len(queries) - n - 1):.0f} s left")
    ref.close()
    systems = (ENGINE, *config.methods, UNION)
    result: dict[str, Any] = {
        "config": _config_dict(config),
        "code": code,
        "references": {"total": len(ids), "originals": len(originals), "distractor_photos": len(chosen.distractors),
                       "distractor_crops": len(crop_files), "kept_out_photos": len(chosen.kept_out),
                       "refused": failed, "register_seconds": register_seconds,
                       "register_seconds_per_reference": register_seconds / max(1, len(files)),
                       "features": stats["features"],
                       "feature_bytes_per_reference": _feature_bytes(stats),
                       "hashes": stats["methods"]},
        "queries": dict(counts),
        "systems": list(systems),
        "seconds": time.perf_counter() - started,
        "load_average": {"mean": float(np.mean(load)), "max": float(np.max(load)), "cores": os.cpu_count()},
    }
    result |= summarise(records, systems, reference_key, reference_name, len(ids))
    result["records"] = [_public(r, reference_name) for r in records]
    return result


def code_version() -> dict:
    """The commit of the code measured and the files of the package that differ from it
    (None where this is no git checkout)."""
    import subprocess

    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit, changed = git("rev-parse", "HEAD"), git("status", "--porcelain", "--", ".")
    return {"commit": commit and commit.strip(), "package": str(package),
            "changed": None if changed is None else [line[3:] for line in changed.splitlines() if line.strip()]}


def _config_dict(config: IdentifyReportConfig) -> dict:
    out = asdict(replace(config, engine=None))
    out["corpus"] = str(config.corpus)
    calibration = config.engine.calibration  # its tails are in the package; how it was made is enough here
    out["engine"] = asdict(replace(config.engine, calibration=None)) | {
        "calibration": getattr(calibration, "provenance", calibration)}
    return json.loads(json.dumps(out, default=str))


def _feature_bytes(stats: dict) -> float | None:
    features = stats.get("features") or []
    images = sum(f["images"] for f in features)
    return sum(f["bytes"] for f in features) / images if images else None


def _queries(config: IdentifyReportConfig, originals: list[tuple[int, Path]], kept_out: list[Path],
             ids: dict[str, int], strides: dict[str, int]) -> Iterator[Query]:
    """Every query, lazily made (an original is decoded once per query it gives)."""
    cache: dict[Path, Image.Image] = {}

    def photo(path: Path) -> Image.Image:
        if path not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[path] = load_pil(path)
        return cache[path]

    for i, path in originals:
        truth = (ids[str(path)],)
        asked = ([("custom", case) for case in config.cases] if config.cases is not None else
                 [(name, case) for name in SUITE_CASES for case in cases_for(name, strides.get(name, 0), i)])
        for suite_name, case in asked:
            yield Query("attack", suite_name, case.family, case.spec, truth,
                        lambda p=path, s=case.spec, k=i: apply_attack(s, photo(p), k), Path(path).name)
    draw = np.random.default_rng(config.seed + 1)
    grid = [*TABLE1, *TABLE2]
    for i, path in originals[: config.adversarial]:
        spec = grid[int(draw.integers(len(grid)))].spec
        for family, attacked in ADVERSARIAL.items():
            make = (lambda p=path, s=spec, k=i, a=attacked:
                    adversarial_copy(apply_attack(s, photo(p), k), photo(p), a, k))
            yield Query("adversarial", "adversarial", family, f"{spec} then {family}", (ids[str(path)],), make,
                        Path(path).name)
    count = len(originals) if config.montages is None else config.montages
    if len(originals) >= 2:
        for m in range(count):
            # partners half the list apart: the lists are sorted by source, so a montage mixes sources
            n = len(originals)
            (_, a), (_, b) = originals[m % n], originals[(m + max(1, n // 2) + m // n) % n]
            if a == b:
                continue
            kind = MONTAGE_KINDS[m % len(MONTAGE_KINDS)]
            make = ((lambda a=a, b=b: side_by_side(photo(a), photo(b))) if kind == "side by side"
                    else (lambda a=a, b=b, m=m: inset(photo(a), photo(b), config.seed + m)))
            yield Query("montage", kind, "montage", kind, (ids[str(a)], ids[str(b)]), make,
                        f"{Path(a).name} + {Path(b).name}")
    rng = np.random.default_rng(config.seed)
    pool = [AttackCase("none", "none"),
            *(config.cases if config.cases is not None else (c for s in SUITE_CASES.values() for c in s))]
    if kept_out:
        for u in range(config.unregistered):
            path = kept_out[u % len(kept_out)]
            case = pool[int(rng.integers(len(pool)))]
            make = ((lambda p=path: photo(p)) if case.spec == "none"
                    else (lambda p=path, s=case.spec, u=u: apply_attack(s, photo(p), 10_000 + u)))
            yield Query("unregistered", "photo", case.family, case.spec, (), make, Path(path).name)
    for kind in SYNTHETIC:
        for k in range(config.synthetic):
            seed = [config.seed, SYNTHETIC.index(kind), k]
            yield Query("unregistered", kind, kind, kind, (),
                        lambda kind=kind, seed=seed: synthetic(kind, np.random.default_rng(seed)), kind)


def _evidence(verdict: Verdict, truth: tuple[int, ...], others: int = 2) -> dict[int, dict]:
    """What the engine weighed for the query's originals, and for its strongest other
    candidates: where a miss or a false match came from."""
    truths = [c for c in verdict.candidates if c.image.id in truth]
    rest = sorted((c for c in verdict.candidates if c.image.id not in truth), key=lambda c: -c.score)[:others]
    return {c.image.id: {"truth": c.image.id in truth, "score": c.score, "identified": c.identified,
                         **c.evidence.to_dict()} for c in truths + rest}


def _public(record: dict, names: dict[int, str]) -> dict:
    """A query's record with file names for reference ids (queries.jsonl)."""
    out = {k: v for k, v in record.items() if k not in ("decisions", "reasons", "truth_keys", "evidence")}
    out["evidence"] = {names[i]: e for i, e in record["evidence"].items()}
    out["truth"] = [names[t] for t in record["truth"]]
    out["named"] = {system: [names[i] for i in d["named"]] for system, d in record["decisions"].items()}
    out["first"] = {system: names.get(d["first"]) for system, d in record["decisions"].items()}
    out["reasons"] = {names[i]: why for i, why in record["reasons"].items()}
    return out


# --- metrics ----------------------------------------------------------------------


def _rates(records: list[dict], system: str, keys: dict[int, str]) -> dict:
    """recall@1, TPR, false matches per query (and those of the same artwork), precision,
    share of queries with a false match."""
    n = len(records)
    first = tp = names = false = same_art = with_false = 0
    for r in records:
        d = r["decisions"][system]
        truth = set(r["truth"])
        wrong = [i for i in d["named"] if i not in truth]
        first += d["first"] is not None and d["first"] in truth
        tp += bool(truth & set(d["named"]))
        names += len(d["named"])
        false += len(wrong)
        same_art += sum(keys[i] in r["truth_keys"] for i in wrong)
        with_false += bool(wrong)
    return {"n": n, "recall@1": (first / n if system != UNION else None) if n else None,
            "tpr": tp / n if n else None, "false_per_query": false / n if n else None,
            "same_artwork_per_query": same_art / n if n else None,
            "queries_with_false": with_false / n if n else None,
            "precision": (names - false) / names if names else None, "names": names, "false": false,
            "refused": sum(bool(r["refused"]) for r in records) / n if n else None}


def summarise(records: list[dict], systems: tuple[str, ...], keys: dict[int, str], names: dict[int, str],
              references: int) -> dict:
    attacks = [r for r in records if r["kind"] == "attack"]
    montages = [r for r in records if r["kind"] == "montage"]
    unregistered = [r for r in records if r["kind"] == "unregistered"]
    adversarial = [r for r in records if r["kind"] == "adversarial"]

    def table(rows: list[dict], key: Callable[[dict], str]) -> dict[str, dict[str, dict]]:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            groups[key(r)].append(r)
        return {g: {s: _rates(rs, s, keys) for s in systems} for g, rs in groups.items()}

    out: dict[str, Any] = {
        "by_family": {suite: table([r for r in attacks if r["group"] == suite], lambda r: r["family"])
                      for suite in (*SUITE_CASES, "custom") if any(r["group"] == suite for r in attacks)},
        "by_suite": table(attacks, lambda r: r["group"]),
        "unseen_by_case": table([r for r in attacks if r["group"] == "unseen"], lambda r: r["spec"]),
        "registered": {s: _rates(attacks, s, keys) for s in systems},
        "unregistered": table(unregistered, lambda r: r["group"]),
        "adversarial": table(adversarial, lambda r: r["family"]),
        "unregistered_all": {s: _rates(unregistered, s, keys) for s in systems},
        "overall": {s: _rates(records, s, keys) for s in systems},
        # The engine by the calibration's stratum that judged each query (docs/identify.md).
        "by_stratum": {kind: {stratum: rows[ENGINE] for stratum, rows in
                              sorted(table(of_kind, lambda r: r.get("stratum") or "every query").items())}
                       for kind, of_kind in (("registered", attacks), ("unregistered", unregistered)) if of_kind},
    }
    out["false_per_query_per_reference"] = {
        s: (out["unregistered_all"][s]["false_per_query"] or 0.0) / references for s in systems}
    out["montages"] = {}
    for kind in MONTAGE_KINDS:
        rows = [r for r in montages if r["group"] == kind]
        if not rows:
            continue
        by_system = {}
        for s in systems:
            both = sum(set(r["truth"]) <= set(r["decisions"][s]["named"]) for r in rows)
            one = sum(bool(set(r["truth"]) & set(r["decisions"][s]["named"])) for r in rows)
            false = sum(len(set(r["decisions"][s]["named"]) - set(r["truth"])) for r in rows)
            by_system[s] = {"n": len(rows), "both": both / len(rows), "at_least_one": one / len(rows),
                            "false_per_query": false / len(rows)}
        by_system[ENGINE]["verdict_montage"] = sum(r["verdict"] == MONTAGE for r in rows) / len(rows)
        by_system[ENGINE]["both_and_montage"] = sum(
            r["verdict"] == MONTAGE and set(r["truth"]) <= set(r["decisions"][ENGINE]["named"]) for r in rows
        ) / len(rows)
        by_system[ENGINE]["verdicts"] = {v: sum(r["verdict"] == v for r in rows) for v in ("match", MONTAGE, NO_MATCH)}
        out["montages"][kind] = by_system
    out["engine_errors"] = [{"query": r["about"], "spec": r["spec"], "kind": r["kind"], "error": r["error"]}
                            for r in records if r.get("error")]
    out["refused"] = {kind: sum(bool(r["refused"]) for r in rows) / len(rows)
                      for kind, rows in (("registered", attacks), ("unregistered", unregistered)) if rows}
    out["timing"] = {kind: _timing(rows) for kind, rows in (("all", records), ("registered", attacks),
                                                             ("montage", montages), ("unregistered", unregistered))
                     if rows}
    # The engine's false matches, for inspection (query, what it named, why).
    out["engine_false_matches"] = [
        {"query": r["about"], "spec": r["spec"], "kind": r["kind"], "truth": [names[t] for t in r["truth"]],
         "named": names[i], "same_artwork": keys[i] in r["truth_keys"], "reason": r["reasons"].get(i)}
        for r in records for i in r["decisions"][ENGINE]["named"] if i not in r["truth"]][:100]
    out["engine_misses"] = {fam: n for fam, n in sorted(
        _count(r["family"] for r in attacks if r["truth"][0] not in r["decisions"][ENGINE]["named"]).items(),
        key=lambda kv: -kv[1])}
    return out


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return dict(counts)


def _timing(rows: list[dict]) -> dict:
    wall = np.array([r["seconds"] for r in rows])
    cpu = np.array([r["cpu_seconds"] for r in rows])
    return {"n": len(rows), "mean_s": float(wall.mean()), "median_s": float(np.median(wall)),
            "p95_s": float(np.quantile(wall, 0.95)), "max_s": float(wall.max()),
            "cpu_mean_s": float(cpu.mean()), "candidates_mean": float(np.mean([r["candidates"] for r in rows])),
            "as_given": float(np.mean([not r.get("variants", True) for r in rows]))}


# --- the report -------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell(r: dict) -> str:
    return f"{_f(r['recall@1'])} / {_f(r['tpr'])} / {_f(r['false_per_query'], 2)}"


def write_markdown(result: dict, out: Path, command: str) -> None:
    c, refs, systems = result["config"], result["references"], result["systems"]
    methods = [s for s in systems if s not in (ENGINE, UNION)]
    split = c["split"]
    lines = ["# Identification: the engine against each single method (issue 23)", "",
             f"Command: `{command}`", "",
             f"Code: commit `{(result.get('code') or {}).get('commit')}`"
             + (f", files changed from it: {', '.join(result['code']['changed'])}"
                if (result.get("code") or {}).get("changed") else "") + ".", "",
             f"Split: **{split}**. References: {refs['total']} ({refs['originals']} {split} originals, "
             f"{refs['distractor_photos']} distractor photos, {refs['distractor_crops']} distractor crops "
             f"{c['distractor_crop']}), registered with {', '.join(methods)} and local features. "
             f"{refs['kept_out_photos']} {split} photos kept out for unregistered queries. "
             f"Queries: " + ", ".join(f"{n} {k}" for k, n in result["queries"].items()) +
             f"; whole run {result['seconds'] / 60:.1f} min.", "",
             "Each method decides on its own in the same run (its part of the engine's query, "
             "`Verdict.results`): its first reference is its nearest one when matched, what it names is every "
             "reference it matches. `union`: every reference any method matches (the baseline of "
             "docs/identify.md); it has no recall@1. Cells: **recall@1 / TPR / false matches per query**. "
             "A false match is a named reference other than the query's original.", ""]
    header = "| family | n | " + " | ".join(systems) + " |"
    rule = "|---|---:|" + "---:|" * len(systems)
    lines += ["## Summary by suite", "", header.replace("family", "suite"), rule]
    for suite, rows in result["by_suite"].items():
        lines.append(f"| {SUITE_TITLES.get(suite, suite)} | {rows[ENGINE]['n']} | "
                     + " | ".join(_cell(rows[s]) for s in systems) + " |")
    reg = result["registered"]
    lines.append(f"| **all registered** | {reg[ENGINE]['n']} | " + " | ".join(f"**{_cell(reg[s])}**" for s in systems)
                 + " |")
    lines += ["", "Precision (true names / all names) over the registered attacked queries: "
              + ", ".join(f"{s} {_f(reg[s]['precision'])}" for s in systems)
              + "; over every query (attacks, montages, unregistered): "
              + ", ".join(f"{s} {_f(result['overall'][s]['precision'])}" for s in systems) + ".", "",
              "Goal (docs/identify.md): the engine keeps the union's recall (TPR) and removes its false matches "
              "(operating point 10⁻⁶ false matches per reference per query).", ""]
    if result.get("by_stratum"):
        lines += ["The engine by the calibration's tails each query was judged by (its stratum, measured on the "
                  "query: docs/identify.md): " + "; ".join(
                      f"{kind} {stratum}: {r['n']} queries, " + (f"recall@1 {_f(r['recall@1'])}, " if kind ==
                                                                  "registered" else "")
                      + f"false matches per query {_f(r['false_per_query'], 3)}"
                      for kind, strata in result["by_stratum"].items() for stratum, r in strata.items()) + ".", ""]
    for suite, families in result["by_family"].items():
        lines += [f"## {SUITE_TITLES.get(suite, suite)} by family", "", header, rule]
        for family, rows in families.items():
            lines.append(f"| {family} | {rows[ENGINE]['n']} | " + " | ".join(_cell(rows[s]) for s in systems) + " |")
        lines.append("")
    if result["unseen_by_case"]:
        lines += ["## Unseen attacks, case by case", "", "The unseen suite (`attacks.UNSEEN`, docs/attacks.md): attacks in none of the "
                  "grids, never used in training, tuning or model selection.", "",
                  header.replace("family", "attack"), rule]
        for spec, rows in result["unseen_by_case"].items():
            lines.append(f"| `{spec}` | {rows[ENGINE]['n']} | " + " | ".join(_cell(rows[s]) for s in systems) + " |")
        lines.append("")
    if result.get("adversarial"):
        lines += ["## Adversarial copies", "",
                  "A random Table 1 / 2 copy of an original, reduced to 512 px, then pushed away from the "
                  "original's features by white-box PGD (ℓ∞ 8/255, 50 steps, through a differentiable JPEG 90) "
                  "on the shipped torch weights: of `cmaa` alone, and of `cmaa` and `aria` at once (the engine's "
                  "other signals, ORB verification and the classical hashes, are not differentiable; they are "
                  "not attacked here). Saved as JPEG 90 and asked like any query.", "", header, rule]
        for family, rows in result["adversarial"].items():
            lines.append(f"| `{family}` | {rows[ENGINE]['n']} | " + " | ".join(_cell(rows[s]) for s in systems)
                         + " |")
        lines.append("")
    lines += ["## Unregistered queries: false matches", "",
              "Every reference named is false. Refused: the query has too little information to be identified "
              "(the engine names nothing, nor does any method). Cells: **false matches per query / share of "
              "queries with one**.", "",
              "| queries | n | refused | " + " | ".join(systems) + " |", rule + "---:|"]
    for group, rows in result["unregistered"].items():
        lines.append(f"| {group} | {rows[ENGINE]['n']} | {_f(rows[ENGINE]['refused'])} | " + " | ".join(
            f"{_f(rows[s]['false_per_query'], 3)} / {_f(rows[s]['queries_with_false'])}" for s in systems) + " |")
    ua = result["unregistered_all"]
    lines.append(f"| **all** | {ua[ENGINE]['n']} | {_f(ua[ENGINE]['refused'])} | " + " | ".join(
        f"**{_f(ua[s]['false_per_query'], 3)} / {_f(ua[s]['queries_with_false'])}**" for s in systems) + " |")
    per_ref = result["false_per_query_per_reference"]
    lines += ["", f"False matches per unregistered query per reference ({refs['total']} references; goal ≤ 10⁻⁶): "
              + ", ".join(f"{s} {per_ref[s]:.1e}" for s in systems) + ". "
              "Engine refusals (too little information): "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["refused"].items()) + ".", ""]
    same = {s: result["overall"][s] for s in systems}
    if any(r["same_artwork_per_query"] for r in same.values()):
        lines += ["Of the false matches, another rendition of the query's own artwork (a wallpaper design at "
                  "another size or crop, `manifest.csv`), per query over all queries: "
                  + ", ".join(f"{s} {_f(r['same_artwork_per_query'], 3)}" for s, r in same.items()) + ".", ""]
    lines += ["## Montages", "", "Two registered originals side by side (one height, on white), or one pasted "
              "into the other (longer side 40–60% of the shorter side, ±30°, `synth.montage.random_montage`). "
              "Cells: **both sources named / at least one / false matches per query**.", "",
              "| montage | n | engine: verdict montage | engine: both named and montage | "
              + " | ".join(systems) + " |", "|---|---:|---:|---:|" + "---:|" * len(systems)]
    for kind, rows in result["montages"].items():
        e = rows[ENGINE]
        lines.append(f"| {kind} | {e['n']} | {_f(e['verdict_montage'])} | {_f(e['both_and_montage'])} | " + " | ".join(
            f"{_f(rows[s]['both'])} / {_f(rows[s]['at_least_one'])} / {_f(rows[s]['false_per_query'], 2)}"
            for s in systems) + " |")
    lines += ["", "## Time per query (the engine as a whole)", "",
              "One query at a time, an in-memory image: every hash, local features, the search, the query's "
              "variants where the query as given explains too little (the last column: the share decided as "
              "given), the verification of every candidate. Wall time on this machine "
              f"({result['load_average']['cores']} cores; 1-minute load average during the queries "
              f"{result['load_average']['mean']:.1f} on average, at most {result['load_average']['max']:.1f}), "
              "and the process's CPU time.", "",
              "| queries | n | mean s | median s | p95 s | max s | CPU mean s | candidates per query "
              "| decided as given |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, t in result["timing"].items():
        lines.append(f"| {kind} | {t['n']} | {t['mean_s']:.3f} | {t['median_s']:.3f} | {t['p95_s']:.3f} | "
                     f"{t['max_s']:.3f} | {t['cpu_mean_s']:.3f} | {t['candidates_mean']:.1f} "
                     f"| {t.get('as_given', 0):.2f} |")
    fb = refs["feature_bytes_per_reference"]
    kinds = ", ".join(f"{f['kind']} v{f['version']}: {f['images']} images, {f['bytes']} bytes" for f in refs["features"])
    lines += ["", f"Local features stored: {_f(fb, 0)} bytes per reference ({kinds}). "
              f"Registration: {refs['register_seconds']:.0f} s for {refs['total']} files "
              f"({1000 * refs['register_seconds_per_reference']:.0f} ms each).", ""]
    if result["engine_errors"]:
        lines += [f"**The engine raised on {len(result['engine_errors'])} queries** (counted as naming nothing; "
                  "the methods' decisions there come from `ReferenceDB.query`): "
                  + "; ".join(f"{e['query']} `{e['spec']}`: {e['error']}" for e in result["engine_errors"][:10])
                  + ".", ""]
    if result["engine_misses"]:
        lines += ["Engine misses (original not named) by family: "
                  + ", ".join(f"{k} {v}" for k, v in result["engine_misses"].items()) + ".", ""]
    false = result["engine_false_matches"]
    if false:
        lines += ["## The engine's false matches (first 20; all in results.json)", "",
                  "| query | spec | named | same artwork | reason |", "|---|---|---|---|---|"]
        for f in false[:20]:
            lines.append(f"| {f['query']} | `{f['spec']}` | {f['named']} | {'yes' if f['same_artwork'] else 'no'} | "
                         f"{f['reason']} |")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def write_all(result: dict, out: Path, command: str) -> list[Path]:
    """report.md, results.json (without the per-query records) and queries.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    records = result.get("records", [])
    summary = {k: v for k, v in result.items() if k != "records"} | {"command": command}
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    with open(out / "queries.jsonl", "w") as f:  # compact: it is the report's largest file
        for record in records:
            f.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    write_markdown(result, out, command)
    return [out / "report.md", out / "results.json", out / "queries.jsonl"]


def _strides(text: str) -> tuple[tuple[str, int], ...]:
    strides = dict(DEFAULT_STRIDES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in SUITE_CASES or not value.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: give SUITE=STRIDE, SUITE one of {', '.join(SUITE_CASES)}")
        strides[name] = int(value)
    return tuple(strides.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (train.txt, test.txt)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", choices=("test", "train", "validation"), default="test",
                        help="the originals' split (train for development; validation to choose between models, "
                             "make validation-split; report on test)")
    parser.add_argument("--originals", type=int, default=IdentifyReportConfig.originals)
    parser.add_argument("--distractors", type=int, default=IdentifyReportConfig.distractors)
    parser.add_argument("--unregistered", type=int, default=IdentifyReportConfig.unregistered)
    parser.add_argument("--kept-out", type=int, default=None, help="photos the unregistered copies are made of "
                                                                   "(default: half as many as the copies)")
    parser.add_argument("--methods", default=",".join(IdentifyReportConfig.methods))
    parser.add_argument("--montages", type=int, default=None, help="default: one per original")
    parser.add_argument("--synthetic", type=int, default=IdentifyReportConfig.synthetic,
                        help="unregistered images of each synthetic kind (noise, smooth noise, flat, gradient)")
    parser.add_argument("--crop-every", type=int, default=IdentifyReportConfig.crop_every,
                        help="a crop of every N-th distractor is registered too (0: none)")
    parser.add_argument("--adversarial", type=int, default=IdentifyReportConfig.adversarial,
                        help="originals whose copy is also attacked adversarially (white-box PGD on cmaa, and on "
                             "cmaa and aria at once; needs torch)")
    parser.add_argument("--every", type=_strides, default=DEFAULT_STRIDES,
                        help="SUITE=STRIDE,...: original i asks case j of a suite when j ≡ i mod STRIDE (default "
                             + ",".join(f"{k}={v}" for k, v in DEFAULT_STRIDES) + "; 0 leaves a suite out)")
    parser.add_argument("--attacks", default=None, help="attack specs or suite names, comma-separated, asked of "
                                                         "every original instead of the suites (a quick look)")
    args = parser.parse_args(argv)
    config = IdentifyReportConfig(args.corpus, split=args.split, originals=args.originals,
                                  distractors=args.distractors, unregistered=args.unregistered,
                                  kept_out=args.kept_out, methods=tuple(args.methods.split(",")),
                                  montages=args.montages, synthetic=args.synthetic, strides=args.every,
                                  adversarial=args.adversarial, crop_every=args.crop_every,
                                  cases=named_cases(args.attacks) if args.attacks else None)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "log.txt", "w") as log:
        def progress(line: str) -> None:
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()

        command = "python -m robusthash.evaluation.identify_report " + " ".join(sys.argv[1:] if argv is None else argv)
        print("wrote " + ", ".join(str(p) for p in write_all(run(config, progress), args.out, command)))


if __name__ == "__main__":
    main()
