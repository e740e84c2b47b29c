"""Time per query of the identification engine, by stage, and its descriptor matching
against OpenCV's brute-force matcher on the same descriptor pairs.

    .venv/bin/python benchmarks/identify_speed.py --corpus corpus --references 10000 --queries 60

**References** (train split and the ``--extra`` photos only: this times, it measures no
accuracy): every train photo and extra photo registered with ``--methods`` (local
features stored), then copies of them until ``--references`` are registered: crops, mirror
images, a down-scaled JPEG, a rotation, a brighter JPEG (``VARIANTS``), each saved as a file.

**Queries**, one at a time on one thread (as ``db query`` and the service ask): half
are attacked copies of registered photos (``ATTACKS`` in turn), half are attacked copies
of train photos kept out of the database. Each query's time is split into *examine*
(decode, each method's hash of the query as given, local features) and *judge* (index
searches, the query variants and the halves where needed, reading the candidates'
features, verification, the verdict), with the candidates verified per query; the means
are also given for each half.

**Variants always**: the same queries through the engine with the query's variants
looked for before anything is judged (``as_given_first=False``): the time of both, and
how many queries name the same references.

``--workdir DIR`` keeps the database (and its files) in DIR, and a later run with the
same DIR times the queries only: run two versions of the code on one database one after
another (a git worktree on ``PYTHONPATH``), alternately, since runs on separate databases
and at separate times differ by 20% on this machine.

**First check**: the same queries again through the engine with every candidate matched
in full (``first_check_every=0``): the judge's time of both, and how many queries
name the same references.

**Matching**: every (query, candidate) pair's descriptors of one query are matched
again, with :func:`robusthash.compare.features.nearest_two` (FAISS) and with
``cv2.BFMatcher.knnMatch``; both times and whether their ratio-test matches agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from robusthash.attacks import parse
from robusthash.compare.features import LocalFeatures, nearest_two
from robusthash.db import ReferenceDB
from robusthash.runtime import one_query_at_a_time
from robusthash.identify import Identifier, IdentifyConfig
from robusthash.io import load_pil
from robusthash.synth.corpus import Corpus

VARIANTS = ("CROP(0.6)", "FL(H)", "RS(0.5)+JC(70)", "RT(10)", "CROP(0.8,0,0)", "FL(V)", "BA(1.3)+JC(60)")
ATTACKS = ("JC(50)", "RT(30)", "CROP(0.6)", "FL(H)+BA(0.7)", "RS(0.5)", "GF(5)", "PAD(0.15,black)", "ST(0)")


def references(corpus: Corpus, count: int, keep_out: int, folder: Path) -> tuple[list[Path], list[Path]]:
    """Files to register (photos first, then copies of them as files) and photos kept out."""
    photos = corpus.train() + corpus.extra_train()
    kept, photos = photos[:keep_out], photos[keep_out:]
    files = list(photos[:count])
    for variant in VARIANTS:
        for i, photo in enumerate(photos):
            if len(files) >= count:
                return files, kept
            path = folder / f"{photo.stem}-{len(files)}.jpg"
            parse(variant)(load_pil(photo), seed=i).convert("RGB").save(path, quality=90)
            files.append(path)
    return files, kept


def match_times(identifier: Identifier, examined, image_ids: list[int], ratio: float) -> tuple[float, float, bool]:
    """The query's descriptors matched against every candidate's, with FAISS and with
    OpenCV's brute force: total seconds of each, and whether the ratio-test matches agree."""
    import cv2

    stored = identifier.ref.stored_features(image_ids)
    query = [f for f in examined.local_features if f is not None]
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    faiss_s = opencv_s = 0.0
    agree = True
    for data in stored.values():
        original = LocalFeatures.from_bytes(data)
        if len(original) < 2:
            continue
        for features in query:
            if len(features) < 2:
                continue
            start = time.perf_counter()
            distances, nearest = nearest_two(features.descriptors, original.descriptors)
            faiss_s += time.perf_counter() - start
            start = time.perf_counter()
            pairs = matcher.knnMatch(features.descriptors, original.descriptors, k=2)
            opencv_s += time.perf_counter() - start
            ours = {(int(q), int(nearest[q, 0])) for q in np.flatnonzero(distances[:, 0] < ratio * distances[:, 1])}
            theirs = {(m.queryIdx, m.trainIdx) for m, n in (p for p in pairs if len(p) == 2)
                      if m.distance < ratio * n.distance}
            agree &= ours == theirs
    return faiss_s, opencv_s, agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--methods", default="forbild,pdq,cmaa")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/identify_speed.json"))
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the database and its files here, and reuse them if an earlier run left "
                             "them: two versions of the code timed on one database, alternately (A/B)")
    args = parser.parse_args()
    corpus = Corpus(args.corpus)
    one_query_at_a_time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        kept_list = folder / "registered.json"
        ref = ReferenceDB(folder / "refs.sqlite", methods=args.methods.split(","))
        if kept_list.is_file():  # a database an earlier run left: only the queries are timed
            listed = json.loads(kept_list.read_text())
            registered, kept = [Path(p) for p in listed["registered"]], [Path(p) for p in listed["kept"]]
            files, register_s = registered, float("nan")
        else:
            files, kept = references(corpus, args.references, args.queries // 2, folder)
            start = time.perf_counter()
            added = ref.add(files)
            register_s = time.perf_counter() - start
            failed = {str(source) for source, _ in added.failed}
            registered = [f for f in files if str(f) not in failed]
            if args.workdir:
                kept_list.write_text(json.dumps({"registered": list(map(str, registered)), "kept": list(map(str, kept))}))
        step = max(1, len(registered) // (args.queries - len(kept)))
        asked = [(registered[i], "registered") for i in range(0, len(registered), step)][: args.queries - len(kept)]
        asked += [(path, "unregistered") for path in kept]
        identifier = Identifier(ref)
        config = identifier.config
        # The same engine with every candidate matched in full (no first check), and with
        # the query's variants always looked for, on the same queries in the same run: what
        # the first check and judging the query as given first save.
        in_full = Identifier(ref, replace(config, features=replace(config.features, first_check_every=0)))
        always = Identifier(ref, replace(config, as_given_first=False))
        rows: dict[str, list[dict]] = {"first check": [], "full match only": [], "variants always": []}
        for label, engine in (("first check", identifier), ("full match only", in_full), ("variants always", always)):
            engine.identify(parse(ATTACKS[0])(load_pil(asked[0][0]), seed=0))  # models loaded, caches warm
            for i, (path, kind) in enumerate(asked):
                query = parse(ATTACKS[i % len(ATTACKS)])(load_pil(path), seed=i)
                start = time.perf_counter()
                examined = engine.examine(query)
                examined_at = time.perf_counter()
                verdict = engine.identify_examined(examined)
                done = time.perf_counter()
                ids = [c.image.id for c in verdict.candidates]
                row = {"kind": kind, "examine": examined_at - start, "judge": done - examined_at,
                       "total": done - start, "candidates": len(ids), "verdict": verdict.verdict,
                       "named": sorted(m.image.id for m in verdict.matches)}
                if engine is identifier:
                    faiss_s, opencv_s, agree = match_times(identifier, examined, ids, config.features.ratio)
                    row |= {"faiss": faiss_s, "opencv": opencv_s, "agree": agree}
                rows[label].append(row)
    first, full, always = rows["first check"], rows["full match only"], rows["variants always"]
    summary = {
        "references": len(registered), "queries": len(first), "register_s_per_file": register_s / len(files),
        **{f"{stage}_ms_mean": 1000 * statistics.mean(r[stage] for r in first) for stage in ("examine", "judge", "total")},
        **{f"total_ms_mean_{kind}": 1000 * statistics.mean(r["total"] for r in first if r["kind"] == kind)
           for kind in ("registered", "unregistered")},
        "total_ms_median": 1000 * statistics.median(r["total"] for r in first),
        "total_ms_p95": 1000 * float(np.percentile([r["total"] for r in first], 95)),
        "candidates_mean": statistics.mean(r["candidates"] for r in first),
        "matching_faiss_ms_per_query": 1000 * statistics.mean(r["faiss"] for r in first),
        "matching_opencv_ms_per_query": 1000 * statistics.mean(r["opencv"] for r in first),
        "matching_opencv_over_faiss": sum(r["opencv"] for r in first) / max(1e-9, sum(r["faiss"] for r in first)),
        "matches_agree": all(r["agree"] for r in first),
        "full_match_judge_ms_mean": 1000 * statistics.mean(r["judge"] for r in full),
        "full_match_total_ms_mean": 1000 * statistics.mean(r["total"] for r in full),
        "judge_full_over_first_check": sum(r["judge"] for r in full) / max(1e-9, sum(r["judge"] for r in first)),
        "same_names_as_full_match": sum(a["named"] == b["named"] for a, b in zip(first, full)),
        "variants_always_total_ms_mean": 1000 * statistics.mean(r["total"] for r in always),
        **{f"variants_always_total_ms_mean_{kind}": 1000 * statistics.mean(r["total"] for r in always
                                                                             if r["kind"] == kind)
           for kind in ("registered", "unregistered")},
        "same_verdict_as_variants_always": sum(a["verdict"] == b["verdict"] for a, b in zip(first, always)),
        "same_names_as_variants_always": sum(a["named"] == b["named"] for a, b in zip(first, always)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "queries": rows}, indent=1))
    for key, value in summary.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
