"""How well pairwise geometric verification (ORB + RANSAC homography) tells a true copy
from a different image, on the corpus train split only.

    .venv/bin/python benchmarks/verification_probe.py --corpus corpus --photos 60 --others 3   # ~5 min, 2 cores
    .venv/bin/python benchmarks/verification_probe.py --corpus corpus --photos 8 --others 2   # ~40 s, a quick look

The verifier is :func:`robusthash.compare.align.estimate` with its default
``AlignConfig`` (ORB on grey copies reduced to 384 px, ratio test, RANSAC, the mirrored
query tried when too few inliers agree, implausible homographies rejected). Its score
for a pair is the number of RANSAC inliers.

* Positives: each of ``--photos`` train photos (evenly spaced through the list, so every
  source is in) under every attack of :data:`ATTACKS` (Table 1/2 cases, crops to 50% and
  30% of the area, borders, greyscale, the strong attack, combinations), compared with
  its own original.
* Negatives: each attacked copy against the originals of ``--others`` other photos of
  the sample, drawn per photo with a seeded RNG, never one of the same artwork (the same
  Plasma wallpaper at another resolution counts as the same artwork).
* Hard negatives: pairs of originals from the whole train split whose source files
  (``manifest.csv``) share a folder and a name prefix (``m31``/``m42``,
  ``landscape-hills-01``/``-02``, panorama tiles ``hurricane1``/``hurricane2``), up to
  ``--hard-per-group`` pairs per group; and, reported apart because they are arguably
  copies, the pairs that are one wallpaper's renditions (other size or crop, dark variant).

For positives per family: the fraction with inliers >= t for each t of ``THRESHOLDS``
and the fraction with a homography accepted; for negatives: the maximum, the 99.9th
percentile and the count >= each t; then the lowest threshold at which no negative
passes, and the positive TPR there, for two scores: the raw inlier count estimate()
reports (which counts the inliers of a homography it rejected as implausible) and the
inliers of an accepted homography only. Also the time per ``estimate`` call and per ORB
extraction. ``corpus/test.txt`` is never read.

Timing: two worker processes (``--workers``), OpenCV on one thread in each, so the
milliseconds are single-core ones. Everything is seeded (``--seed``): attacks get the
photo's index as their seed, the negative draw ``default_rng([seed, index])``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import re
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from robusthash.attacks import parse
from robusthash.compare.align import DETECTORS, AlignConfig, estimate
from robusthash.compare.features import grey_copy
from robusthash.files import evenly_spaced, read_image_list
from robusthash.io import load_pil
from robusthash.synth.corpus import artwork_key

THRESHOLDS = (8, 12, 16, 20, 30, 50)
CONFIG = AlignConfig()

# family -> attack specs. Families group what should behave alike for features:
# photometric changes keep the keypoints where they were, geometric ones move them,
# crops take most of them away, and combinations do several at once.
ATTACKS: dict[str, tuple[str, ...]] = {
    "jpeg": ("JC(10)", "JC(30)", "JC(70)"),
    "blur": ("GF(9)", "AF(9)", "MF(7)"),
    "noise": ("GN(0.05)", "SN(0.1)", "SPN(0.1)"),
    "colour": ("BA(0.7)", "BA(1.3)", "CA(0.7)", "PT(4)"),
    "greyscale": ("ST(0)",),  # saturation 0: there is no separate greyscale code
    "rotate small": ("RT(30)", "RT(-60)"),
    "rotate 90/180": ("RT(90)", "RT(180)"),
    "flip": ("FL(H)", "FL(V)"),
    "resize": ("RS(0.5)", "RS(2)"),
    "shear/translate": ("SHR(X,0.3)", "TR(Y,-0.3)"),
    "crop 50%": ("CROP(0.5)", "CROP(0.5,0,0)"),
    "crop 30%": ("CROP(0.3)", "CROP(0.3,1,1)"),
    "padding": ("PAD(0.1)", "PAD(0.2,white)"),
    "strong (SA)": ("SA(1)", "SA(2)", "SA(3)"),
    "table 2": ("RT(50)+JC(50)", "RS(0.5)+BA(1.2)", "FL(V)+SH(1.2)", "ST(0.7)+RT(50)+SHR(X,0.2)",
                "RS(0.5)+SPN(0.05)+AF(9)"),
    "combination": ("CROP(0.5)+RT(30)+JC(50)", "FL(H)+CROP(0.5)+PAD(0.1)", "RS(0.5)+GN(0.02)+JC(30)",
                    "ST(0)+CROP(0.3)+JC(50)"),
}
FAMILY_OF = {spec: family for family, specs in ATTACKS.items() for spec in specs}
PARSED = {spec: parse(spec) for spec in FAMILY_OF}


def name_prefix_key(original_path: str) -> str:
    """Folder and the leading letters of the file name: the groups of hard negatives
    (``m31``/``m42``, ``landscape-hills-01``/``landscape-plain``, gcompris' ``lang/3``/``lang/47``)."""
    folder, _, name = original_path.rpartition("/")
    return f"{folder}/{re.match(r'[A-Za-z]*', name).group(0).lower()}"


def read_manifest(corpus: Path, train: list[Path]) -> dict[Path, str]:
    """train path -> its source file's original path (from manifest.csv)."""
    wanted = {p.relative_to(corpus).as_posix(): p for p in train}
    with open(corpus / "manifest.csv", newline="", encoding="utf-8") as f:
        return {wanted[row["file"]]: row["original_path"] for row in csv.DictReader(f) if row["file"] in wanted}


def hard_negative_pairs(origins: dict[Path, str], per_group: int, rng: np.random.Generator) -> list[tuple[str, Path, Path]]:
    """(kind, a, b) for a few pairs of each name-prefix group, and every pair of renditions
    of one wallpaper. A group's pairs are drawn, not all taken: the NGC objects alone
    would give ~18,000, and each small group is as informative as a large one."""
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path, origin in sorted(origins.items()):
        art = artwork_key(origin)
        kind, key = ("same wallpaper, other rendition", art) if art.startswith("wallpaper:") else \
            ("same folder + name prefix", name_prefix_key(origin))
        groups[(kind, key)].append(path)
    pairs = []
    for (kind, _), members in sorted(groups.items()):
        candidates = list(itertools.combinations(members, 2))
        if kind == "same folder + name prefix" and len(candidates) > per_group:
            candidates = [candidates[i] for i in sorted(rng.choice(len(candidates), per_group, replace=False))]
        pairs.extend((kind, a, b) for a, b in candidates)
    return pairs


def worker_init() -> None:
    import cv2

    # One OpenCV thread per worker: the pool already fills the cores, and the times
    # reported are then per core.
    cv2.setNumThreads(1)


def timed_estimate(query, original) -> dict:
    start = time.perf_counter()
    alignment = estimate(query, original, CONFIG)
    ms = (time.perf_counter() - start) * 1e3
    return {"inliers": alignment.inliers, "matches": alignment.matches, "found": alignment.found,
            "flipped": alignment.flipped, "ms": ms}


def orb_ms(im) -> float:
    """Grey reduction + ORB detection and description of one image, as estimate does it."""
    kind = DETECTORS["orb"]
    start = time.perf_counter()
    kind.features(kind.create(CONFIG.max_features), *grey_copy(im, CONFIG.feature_side))
    return (time.perf_counter() - start) * 1e3


def probe_photo(task: tuple[int, str, list[str]]) -> dict:
    """Every attack of one photo against its original (positives) and against the
    originals of the other photos drawn for it (negatives)."""
    index, path, others = task
    original = load_pil(path)
    other_images = [load_pil(p) for p in others]
    positives, negatives = [], []
    for spec, attack in PARSED.items():
        copy = attack(original, index)
        positives.append({"photo": path, "side": max(original.size), "spec": spec, "family": FAMILY_OF[spec],
                          **timed_estimate(copy, original)})
        for other_path, other in zip(others, other_images):
            negatives.append({"photo": path, "other": other_path, "spec": spec, **timed_estimate(copy, other)})
    return {"positives": positives, "negatives": negatives, "orb_ms": orb_ms(original)}


def probe_hard_pair(task: tuple[str, str, str]) -> dict:
    kind, a, b = task
    return {"kind": kind, "photo": a, "other": b, **timed_estimate(load_pil(a), load_pil(b))}


def zero_negative_threshold(negative_scores: np.ndarray) -> int:
    """The lowest inlier threshold that no negative reaches."""
    return int(negative_scores.max()) + 1 if len(negative_scores) else 0


def accepted_inliers(record: dict) -> int:
    """The score when only an accepted homography counts: estimate() reports the inliers
    of a rejected (implausible) homography too, and those are most of a negative's."""
    return record["inliers"] if record["found"] else 0


def positive_rates(records: list[dict], thresholds: tuple[int, ...]) -> dict:
    inliers = np.array([r["inliers"] for r in records])
    found = np.array([r["found"] for r in records])
    return {"pairs": len(records), "found": float(found.mean()),
            **{f">={t}": float((inliers >= t).mean()) for t in thresholds},
            "median_inliers": float(np.median(inliers))}


def negative_summary(records: list[dict], thresholds: tuple[int, ...]) -> dict:
    inliers = np.array([r["inliers"] for r in records]) if records else np.zeros(0, int)
    found = np.array([r["found"] for r in records], dtype=bool)
    accepted = np.array([accepted_inliers(r) for r in records]) if records else np.zeros(0, int)
    return {"pairs": len(records), "found": int(found.sum()), "max": int(inliers.max()) if len(inliers) else 0,
            "max_accepted": int(accepted.max()) if len(accepted) else 0,
            "p99.9": float(np.percentile(inliers, 99.9)) if len(inliers) else 0.0,
            "p99": float(np.percentile(inliers, 99)) if len(inliers) else 0.0,
            **{f">={t}": int((inliers >= t).sum()) for t in thresholds}}


def markdown_tables(result: dict) -> str:
    t_cols = [f">={t}" for t in THRESHOLDS]
    lines = ["Positives: share of copies with inliers >= t, and with a homography accepted (found).", "",
             "| family | pairs | found | " + " | ".join(t_cols) + " | median inliers | TPR at t0 | TPR at t0 accepted |",
             "|---|---:|---:|" + "---:|" * len(t_cols) + "---:|---:|---:|"]
    rows = list(result["positives_by_family"].items()) + [("**all**", result["positives_all"])]
    for name, row in rows:
        lines.append(f"| {name} | {row['pairs']} | {row['found']:.3f} | "
                     + " | ".join(f"{row[c]:.3f}" for c in t_cols)
                     + f" | {row['median_inliers']:.0f} | {row['tpr_at_t0']:.3f} | {row['tpr_at_t0_accepted']:.3f} |")
    lines += ["", "Negatives: inlier counts of pairs of different pictures.", "",
              "| negatives | pairs | found | max | max if found | p99.9 | p99 | " + " | ".join(f"n {c}" for c in t_cols) + " |",
              "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(t_cols)]
    for name, row in result["negatives"].items():
        lines.append(f"| {name} | {row['pairs']} | {row['found']} | {row['max']} | {row['max_accepted']} | "
                     f"{row['p99.9']:.1f} | {row['p99']:.1f} | "
                     + " | ".join(str(row[c]) for c in t_cols) + " |")
    lines += ["", "Zero-negative thresholds (the lowest t no negative reaches) and the positive TPR there:", "",
              "| score | negatives | t | TPR |", "|---|---|---:|---:|"]
    for z in result["zero_negative"]:
        lines.append(f"| {z['score']} | {z['negatives']} | {z['threshold']} | {z['tpr']:.3f} |")
    lines += ["", "t0 = the zero-negative threshold on random negatives with raw inliers; t0 accepted = the same "
                  "when only an accepted homography counts (score = inliers if found else 0)."]
    lines += ["", "Per attack (positives): found share, share >= 12 / >= t0 / >= t0 accepted, median inliers.", "",
              "| attack | family | found | >=12 | TPR at t0 | TPR at t0 accepted | median inliers |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for spec, row in result["positives_by_attack"].items():
        lines.append(f"| {spec} | {FAMILY_OF[spec]} | {row['found']:.3f} | {row['>=12']:.3f} | "
                     f"{row['tpr_at_t0']:.3f} | {row['tpr_at_t0_accepted']:.3f} | {row['median_inliers']:.0f} |")
    tm = result["timing_ms"]
    lines += ["", f"Time per estimate(): mean {tm['mean']:.1f} ms, median {tm['median']:.1f}, p95 {tm['p95']:.1f} "
                  f"(accepted on the first try {tm['found_unflipped_median']:.1f}, mirrored {tm['found_flipped_median']:.1f}, "
                  f"nothing found {tm['not_found_median']:.1f}; medians). ORB on one image (grey reduction + "
                  f"detect + describe): median {tm['orb_per_image_median']:.1f} ms, so an accepted pair is "
                  f"~{2 * tm['orb_per_image_median']:.0f} ms of features and the rest matching + RANSAC."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"))
    parser.add_argument("--photos", type=int, default=60, help="train photos to attack (120 takes ~10 min)")
    parser.add_argument("--others", type=int, default=3, help="negatives per attacked copy")
    parser.add_argument("--hard-per-group", type=int, default=8, help="name-prefix pairs drawn per group")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/verification_probe.json"))
    args = parser.parse_args()

    train = read_image_list(args.corpus / "train.txt")
    origins = read_manifest(args.corpus, train)
    photos = evenly_spaced(train, args.photos)
    art = {p: artwork_key(origins.get(p, str(p))) for p in train}

    tasks = []
    for index, path in enumerate(photos):
        # Negatives come from the sample itself (its originals are loaded anyway), never
        # the same artwork, so a "negative" is always a different picture.
        pool = [p for p in photos if art[p] != art[path]]
        rng = np.random.default_rng([args.seed, index])
        others = [pool[i] for i in rng.choice(len(pool), min(args.others, len(pool)), replace=False)]
        tasks.append((index, str(path), [str(p) for p in others]))
    hard = [(kind, str(a), str(b)) for kind, a, b in
            hard_negative_pairs(origins, args.hard_per_group, np.random.default_rng([args.seed, 1 << 20]))]

    print(f"{len(photos)} photos x {len(PARSED)} attacks, {args.others} negatives each, {len(hard)} hard pairs; "
          f"{args.workers} workers", flush=True)
    start = time.perf_counter()
    positives, negatives, orb_times = [], [], []
    with Pool(args.workers, initializer=worker_init) as pool:
        for done, part in enumerate(pool.imap_unordered(probe_photo, tasks), 1):
            positives += part["positives"]
            negatives += part["negatives"]
            orb_times.append(part["orb_ms"])
            if done % 20 == 0:
                print(f"  {done}/{len(tasks)} photos, {time.perf_counter() - start:.0f} s", flush=True)
        hard_records = pool.map(probe_hard_pair, hard, chunksize=8)
    wall = time.perf_counter() - start

    name_prefix = [r for r in hard_records if r["kind"] == "same folder + name prefix"]
    renditions = [r for r in hard_records if r["kind"] == "same wallpaper, other rendition"]
    negative_sets = {"random other photo": negatives, "same folder + name prefix (hard)": name_prefix,
                     "same wallpaper, other rendition (not distinct)": renditions}
    summaries = {name: negative_summary(records, THRESHOLDS) for name, records in negative_sets.items()}

    # Thresholds against the random negatives, and against those plus the name-prefix
    # pairs (which hold a few real relatives: see the strongest negatives printed below).
    scores = {"raw inliers": lambda r: r["inliers"], "accepted inliers": accepted_inliers}
    zero_negative = []
    for score_name, score in scores.items():
        for negatives_name, records in (("random", negatives), ("random + name prefix", negatives + name_prefix)):
            t = zero_negative_threshold(np.array([score(r) for r in records]))
            if score_name == "accepted inliers":
                t = max(t, CONFIG.min_inliers)  # nothing below min_inliers is ever accepted
            zero_negative.append({"score": score_name, "negatives": negatives_name, "threshold": t,
                                  "tpr": float(np.mean([score(r) >= t for r in positives]))})
    t0 = zero_negative[0]["threshold"]
    t0_accepted = zero_negative[2]["threshold"]

    def tpr_columns(records: list[dict]) -> dict:
        return {**positive_rates(records, THRESHOLDS),
                "tpr_at_t0": float(np.mean([r["inliers"] >= t0 for r in records])),
                "tpr_at_t0_accepted": float(np.mean([accepted_inliers(r) >= t0_accepted for r in records]))}

    def grouped(key: str) -> dict:
        groups = defaultdict(list)
        for r in positives:
            groups[r[key]].append(r)
        order = list(ATTACKS) if key == "family" else list(PARSED)
        return {name: tpr_columns(groups[name]) for name in order}

    times = np.array([r["ms"] for r in positives + negatives])
    every = positives + negatives

    def median_ms(records: list[dict]) -> float:
        return float(np.median([r["ms"] for r in records])) if records else float("nan")

    worst_negatives = sorted(negatives + name_prefix, key=lambda r: -r["inliers"])[:10]
    worst_accepted = sorted((r for r in negatives if r["found"]), key=lambda r: -r["inliers"])[:5]
    # A copy mirrored once (one FL step) is only truly aligned through the mirrored
    # query; a homography accepted unmirrored is a spurious one that stopped the search.
    mirrored_once = [r for r in positives if r["spec"].count("FL(") == 1]
    wrong_mirror = {"pairs": len(mirrored_once), "found_unmirrored": sum(r["found"] and not r["flipped"] for r in mirrored_once),
                    "their_inliers": sorted(r["inliers"] for r in mirrored_once if r["found"] and not r["flipped"])}
    # The failures concentrate on small originals (256 px and less keep few ORB features).
    by_side = {}
    for label, low, high in (("<=320 px", 0, 320), ("321-600 px", 321, 600), (">600 px", 601, 1 << 30)):
        part = [r for r in positives if low <= r["side"] <= high]
        if part:
            by_side[label] = {"pairs": len(part), "found": float(np.mean([r["found"] for r in part])),
                              "failed": int(sum(not r["found"] for r in part))}
    result = {
        "photos": len(photos), "attacks": list(PARSED), "others": args.others, "seed": args.seed,
        "thresholds": THRESHOLDS, "config": CONFIG.__dict__ | {"detectors": list(CONFIG.detectors)},
        "positives_by_family": grouped("family"),
        "positives_all": tpr_columns(positives),
        "positives_by_attack": grouped("spec"),
        "negatives": summaries,
        "zero_negative": zero_negative,
        "worst_negatives": worst_negatives,
        "wrong_mirror": wrong_mirror,
        "positives_by_side": by_side,
        "timing_ms": {"mean": float(times.mean()), "median": float(np.median(times)), "p95": float(np.percentile(times, 95)),
                      "found_unflipped_median": median_ms([r for r in every if r["found"] and not r["flipped"]]),
                      "found_flipped_median": median_ms([r for r in every if r["found"] and r["flipped"]]),
                      "not_found_median": median_ms([r for r in every if not r["found"]]),
                      "orb_per_image_median": float(np.median(orb_times))},
        "wall_seconds": wall, "workers": args.workers,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print()
    print(f"{len(photos)} train photos, {len(positives)} positive and {len(negatives)} random-negative pairs, "
          f"{len(hard_records)} hard pairs; {wall:.0f} s on {args.workers} workers ({result['machine']}).")
    print()
    print(markdown_tables(result))
    print("\nPositives by the original's longer side: " + "; ".join(
        f"{k}: {v['pairs']} pairs, found {v['found']:.3f} ({v['failed']} failed)" for k, v in by_side.items()))
    print(f"Copies mirrored once: {wrong_mirror['found_unmirrored']} of {wrong_mirror['pairs']} accepted an unmirrored "
          f"(so spurious) homography first, inliers {wrong_mirror['their_inliers']}.")
    print("\nStrongest random negatives with an accepted homography (inliers, copy spec, photo -> other):")
    for r in worst_accepted:
        print(f"  {r['inliers']:3d} {r['spec']}: {Path(r['photo']).name} -> {Path(r['other']).name}")
    print("\nStrongest negatives (inliers, found, copy spec, photo -> other):")
    for r in worst_negatives:
        print(f"  {r['inliers']:3d} {'found' if r['found'] else '-----'} {r.get('spec', r.get('kind'))}: "
              f"{Path(r['photo']).name} -> {Path(r['other']).name}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Every pair goes to the JSON too, for looking at the failures without a rerun.
    result["pairs"] = {"positives": positives, "negatives": negatives, "hard": hard_records}
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
