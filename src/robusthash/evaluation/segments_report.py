"""The per-object hashing report (issue 6; Steinebach, Berwanger, Liu's evaluation).

    python -m robusthash.evaluation.segments_report --corpus corpus --out results/segments

On the corpus **test** split (photos down-scaled to at most 1000 px, as in the paper):

- their Table 1: rotation by ±10° and ±20°, objects with the background removed vs kept;
- their Table 2: TPR, FPR and precision for scaling, rotation, noise, brightness, mirroring;
- crops keeping 25–90% of the area, alone and with ±20° rotation, for ``segments``,
  ``forbild``, ``crop-resistant`` and ``cmaa`` side by side;
- montages: a test cut-out (``synth.corpus.object_split``) pasted into a test photo,
  with the photos and the cut-outs registered; how often the photo, the object, both
  are found, and how often the montage flag is raised;
- segments per image (histogram), time per image, stored bytes per image.

Every method decides with its own default rule (``compare`` without a threshold),
calibrated on the train split; FPR is measured here on test pairs. A copy is a true
positive when its own original matches; every other original it matches is a false
positive (FPR = false positives / (copies × other originals)).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..attacks import parse
from ..hashing.base import BaseHasher, get_hasher, register
from ..hashing.value import Hash, MultiHash
from ..io import to_rgb
from ..segments import Background, SegmentsHasher
from ..segments.segmenter import ColourSegmenter, ObjectNetSegmenter
from ..synth.corpus import Corpus
from ..synth.montage import random_montage

MAX_SIDE = 1000  # the paper down-scales to at most 1000 px before its rotation tests

TABLE1 = ("RT(10)", "RT(-10)", "RT(20)", "RT(-20)")
TABLE2 = ("RS(0.5)", "RS(0.75)", "RT(10)", "RT(20)", "GN(0.02)", "GN(0.05)", "BA(0.8)", "BA(1.2)", "FL(H)")
CROP_AREAS = (0.25, 0.5, 0.75, 0.9)
CROPS = tuple(f"CROP({a})" + rot for a in CROP_AREAS for rot in ("", "+RT(20)", "+RT(-20)")) + (
    "CROP(0.5,0,0)+RT(20)", "CROP(0.5,1,1)+RT(-20)")

# name → (object method, background): the paper's variants, colour segments only
PAPER_VARIANTS = {
    "segments-forbild-removed": ("forbild", Background.removed),
    "segments-forbild-kept": ("forbild", Background.kept),
}
CROP_METHODS = ("segments", "segments-forbild-removed", "forbild", "crop-resistant", "cmaa")
MONTAGE_METHODS = ("segments", "segments-forbild-removed", "forbild", "crop-resistant", "cmaa")


def register_paper_variants() -> None:
    """The paper's own configuration: colour segments only (no ObjectNet), forbild per
    object, background removed or kept."""
    for name, (method, background) in PAPER_VARIANTS.items():
        def init(self, method=method, background=background, **kwargs):
            SegmentsHasher.__init__(self, object_method=method, background=background,
                                    segmenters=(ColourSegmenter(),), **kwargs)
        register(type(name, (SegmentsHasher,), {"name": name, "__init__": init}), name)


@dataclass
class Decisions:
    """Each copy's distance to every original and the default rule's decision."""

    own: list[float] = field(default_factory=list)  # distance to its own original
    others: list[np.ndarray] = field(default_factory=list)  # distances to the other originals
    tp: int = 0
    fp: int = 0

    def add(self, compared: list, own: int) -> None:
        distances = np.array([c.distance for c in compared])
        matched = np.array([c.matched for c in compared])
        self.own.append(float(distances[own]))
        self.others.append(np.delete(distances, own))
        self.tp += bool(matched[own])
        self.fp += int(matched.sum() - matched[own])

    def row(self, protocol_tau: float) -> dict:
        """Default rule: TPR, FPR, precision. Protocol (CMAA's): TPR and FPR at the
        distance τ that 1% of the distinct test originals' pairs reach."""
        copies, pairs = len(self.own), sum(len(o) for o in self.others)
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")
        others = np.concatenate(self.others)
        return {"tpr": self.tp / copies, "fpr": self.fp / pairs, "precision": precision, "copies": copies,
                "tpr_at_tau": float(np.mean(np.array(self.own) <= protocol_tau)),
                "fpr_at_tau": float(np.mean(others <= protocol_tau))}


def protocol_tau(hasher: BaseHasher, originals: list, fpr: float = 0.01) -> float:
    """The distance that ``fpr`` of the distinct pairs of originals reach (CMAA's τ)."""
    distances = np.array([hasher.compare(a, b).distance for i, a in enumerate(originals) for b in originals[i + 1:]])
    return float(np.quantile(distances, fpr, method="lower"))


def compared(hasher: BaseHasher, query: Hash | MultiHash, references: list[Hash | MultiHash]) -> list:
    return [hasher.compare(query, ref) for ref in references]


def reduced(im: Image.Image, side: int = MAX_SIDE) -> Image.Image:
    im = im.convert("RGB")
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


def attack_rows(methods: dict[str, BaseHasher], photos: list[Image.Image], attacks: tuple[str, ...],
                originals: dict[str, list], taus: dict[str, float], progress) -> dict[str, dict[str, dict]]:
    """{attack: {method: decisions row}} for ``attacks`` on every photo."""
    rows: dict[str, dict[str, dict]] = {}
    for spec in attacks:
        attack = parse(spec)
        decided = {name: Decisions() for name in methods}
        for i, photo in enumerate(photos):
            copy = attack(photo, seed=i)
            for name, hasher in methods.items():
                decided[name].add(compared(hasher, hasher.hash_pil(copy), originals[name]), i)
        rows[spec] = {name: d.row(taus[name]) for name, d in decided.items()}
        progress(f"{spec}: " + ", ".join(f"{n} {r['tpr']:.2f}/{r['fpr']:.4f}" for n, r in rows[spec].items()))
    return rows


def montage_rows(methods: dict[str, BaseHasher], photos: list[Image.Image], cutouts: list[Image.Image],
                 count: int, progress) -> dict[str, dict]:
    """Photos and flattened cut-outs registered; montage i pastes cut-out i into photo i+1."""
    references = photos + [to_rgb(c) for c in cutouts]  # a cut-out as the loader registers it: on white
    rng = np.random.default_rng(0)
    made = [random_montage(photos[(i + 1) % len(photos)], cutouts[i % len(cutouts)], rng) for i in range(count)]
    montages = [montage for montage, _ in made]
    rows: dict[str, dict] = {"objectnet_iou": mask_quality([truth.mask for _, truth in made], montages)}
    progress(f"ObjectNet on the montages: {rows['objectnet_iou']}")
    for name, hasher in methods.items():
        stored = [hasher.hash_pil(r) for r in references]
        found = {"photo": 0, "object": 0, "both": 0, "montage_flag": 0, "false_sources": 0}
        for i, montage in enumerate(montages):
            query = hasher.hash_pil(montage)
            results = compared(hasher, query, stored)
            photo, cutout = (i + 1) % len(photos), len(photos) + i % len(cutouts)
            matched = {k for k, c in enumerate(results) if c.matched}
            found["photo"] += photo in matched
            found["object"] += cutout in matched
            found["both"] += photo in matched and cutout in matched
            found["false_sources"] += len(matched - {photo, cutout})
            parts = {results[k].details.get("query_part", 0) for k in matched}
            found["montage_flag"] += len(matched) >= 2 and len(parts) >= 2
        rows[name] = {k: v / count for k, v in found.items()} | {"montages": count}
        progress(f"montages {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[name].items()))
    return rows


def mask_quality(truths: list[np.ndarray], montages: list[Image.Image]) -> dict:
    """How well ObjectNet's best mask covers each pasted object (IoU)."""
    segmenter = ObjectNetSegmenter()
    ious = np.array([max((float((t & m).sum() / (t | m).sum()) for m in segmenter.segment(im)), default=0.0)
                     for t, im in zip(truths, montages)])
    return {"mean": float(ious.mean()), "at_least_0.8": float((ious >= 0.8).mean()),
            "at_least_0.9": float((ious >= 0.9).mean()), "none": float((ious == 0).mean())}


def stored_bytes(hasher: BaseHasher, paths: list[Path]) -> dict:
    """Register ``paths`` in a fresh SQLite database: hash bytes and file bytes per image."""
    from ..db.reference import ReferenceDB

    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "refs.sqlite"
        db = ReferenceDB(db_path, methods=[hasher.name])
        db.add(paths)
        db.close()
        with sqlite3.connect(db_path) as con:
            images = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            hash_bytes, parts = con.execute("SELECT SUM(LENGTH(bits)), COUNT(*) FROM hashes").fetchone()
        file_bytes = db_path.stat().st_size
    return {"images": images, "hash_bytes_per_image": hash_bytes / images, "parts_per_image": parts / images,
            "file_bytes_per_image": file_bytes / images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=150, help="test photos (N spread evenly over test.txt)")
    parser.add_argument("--montages", type=int, default=100)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.txt", "w")

    def progress(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    register_paper_variants()
    corpus = Corpus(args.corpus)
    test = corpus.test()
    # Spread over the list: test.txt is sorted by source, and its first 150 are all
    # astronomy photos (a first run on them found montages' photos half as often).
    spread = np.linspace(0, len(test) - 1, min(args.photos, len(test))).round().astype(int)
    paths = [test[i] for i in spread]
    photos = [reduced(Image.open(p)) for p in paths]
    cutout_paths = corpus.objects("test")
    cutouts = [Image.open(p).convert("RGBA") for p in cutout_paths]
    names = ("segments", "segments-forbild-removed", "segments-forbild-kept", "forbild", "crop-resistant", "cmaa")
    methods: dict[str, BaseHasher] = {n: get_hasher(n) for n in names}  # type: ignore[misc]
    originals = {n: [h.hash_pil(p) for p in photos] for n, h in methods.items()}
    progress(f"{len(photos)} test photos ≤ {MAX_SIDE} px, {len(cutouts)} test cut-outs; originals hashed")
    result: dict = {"photos": len(photos), "max_side": MAX_SIDE, "cutouts": len(cutouts),
                    "thresholds": {n: h.threshold for n, h in methods.items()}}
    taus = {n: protocol_tau(methods[n], originals[n]) for n in names}
    result["protocol_tau"] = taus
    progress(f"τ at 1% FPR of distinct test originals: {taus}")

    result["table1"] = attack_rows({n: methods[n] for n in ("segments", "segments-forbild-removed",
                                                               "segments-forbild-kept", "forbild", "cmaa")},
                                   photos, TABLE1, originals, taus, progress)
    result["table2"] = attack_rows({n: methods[n] for n in ("segments", "segments-forbild-removed", "forbild", "cmaa")},
                                   photos, TABLE2, originals, taus, progress)
    result["crops"] = attack_rows({n: methods[n] for n in CROP_METHODS}, photos, CROPS, originals, taus, progress)
    result["montages"] = montage_rows({n: methods[n] for n in MONTAGE_METHODS}, photos, cutouts, args.montages,
                                      progress)
    # Objects only, not the image and its normalised pictures (moments, frame, beneath).
    segments = [sum(h.extra["part"] == "object" for h in v.hashes) for v in originals["segments"]]
    result["segments_per_image"] = {"mean": float(np.mean(segments)), "histogram": np.bincount(segments).tolist()}
    # Time per image, decode included, one photo at a time from its ≤ 1000 px file.
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, photo in enumerate(photos):
            files.append(Path(tmp) / f"{k}.jpg")
            photo.save(files[-1], quality=95)
        result["ms_per_image"] = {}
        for name in names:
            started = time.perf_counter()
            for f in files:
                methods[name].hash(f)
            result["ms_per_image"][name] = 1000 * (time.perf_counter() - started) / len(files)
        result["database"] = {name: stored_bytes(methods[name], files) for name in ("segments", "segments-forbild-removed")}
    progress(f"time per image (ms): {result['ms_per_image']}")
    progress(f"database: {result['database']}")
    (args.out / "segments.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.out, " ".join(["python -m robusthash.evaluation.segments_report"] +
                                              [f"--corpus {args.corpus}", f"--out {args.out}",
                                               f"--photos {args.photos}", f"--montages {args.montages}"]))
    plot_histogram(segments, args.out / "segments_per_image.png")


def write_markdown(result: dict, out: Path, command: str) -> None:
    lines = ["# Per-object hashing on the corpus test split (issue 6)", "",
             f"Command: `{command}`", "",
             f"{result['photos']} test photos down-scaled to ≤ {result['max_side']} px; "
             f"{result['cutouts']} test cut-outs for montages. Each method decides with its default rule "
             "(calibrated on the train split); TPR = copies whose own original matches, FPR = other originals "
             "matched / (copies × other originals), precision = TP / (TP + FP). The protocol τ is CMAA's: the distance "
             "1% of the distinct pairs of test originals reach, per method: "
             + ", ".join(f"{n} {t:.4f}" for n, t in result["protocol_tau"].items()) + ".", ""]

    def table(title: str, section: str) -> None:
        rows = result[section]
        methods = list(next(iter(rows.values())))
        lines.extend([f"## {title}", "", "| attack | " + " | ".join(methods) + " |",
                      "|---|" + "---:|" * len(methods)])
        for spec, by_method in rows.items():
            lines.append(f"| {spec} | " + " | ".join(
                f"{r['tpr']:.3f} / {r['fpr']:.4f} / {r['precision']:.3f} · {r['tpr_at_tau']:.3f}"
                for r in by_method.values()) + " |")
        lines.extend(["", "Cells: default rule TPR / FPR / precision · TPR at the protocol τ (1% FPR of the "
                      "distinct test originals' pairs).", ""])

    table("Their Table 1: rotation after down-scaling (background removed vs kept)", "table1")
    table("Their Table 2: scaling, rotation, noise, brightness, mirroring", "table2")
    table("Crops (share of the area kept), with and without rotation", "crops")
    lines.extend(["## Montages", "", "| method | photo found | object found | both | montage flag | false sources per montage |",
                  "|---|---:|---:|---:|---:|---:|"])
    quality = result["montages"]["objectnet_iou"]
    for name, r in result["montages"].items():
        if name == "objectnet_iou":
            continue
        lines.append(f"| {name} | {r['photo']:.3f} | {r['object']:.3f} | {r['both']:.3f} | {r['montage_flag']:.3f} | "
                     f"{r['false_sources']:.3f} |")
    lines.extend(["", f"ObjectNet's best mask against the pasted object's alpha (IoU): mean {quality['mean']:.3f}, "
                      f"≥ 0.8 in {quality['at_least_0.8']:.1%}, ≥ 0.9 in {quality['at_least_0.9']:.1%}, "
                      f"no mask in {quality['none']:.1%} of the montages."])
    hist = result["segments_per_image"]
    lines.extend(["", "## Segments per image (`segments`, objects beside the whole image)", "",
                  f"Mean {hist['mean']:.2f}; histogram (count of images with 0, 1, 2, … objects): {hist['histogram']}. "
                  "Plot: segments_per_image.png.", "",
                  "## Time and storage", "", "| method | ms per image (≤ 1000 px, decode included, 2 cores) |",
                  "|---|---:|"])
    for name, ms in result["ms_per_image"].items():
        lines.append(f"| {name} | {ms:.0f} |")
    lines.extend(["", "| method | parts per image | hash bytes per image | SQLite file bytes per image |",
                  "|---|---:|---:|---:|"])
    for name, d in result["database"].items():
        lines.append(f"| {name} | {d['parts_per_image']:.2f} | {d['hash_bytes_per_image']:.0f} | "
                     f"{d['file_bytes_per_image']:.0f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def plot_histogram(segments: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(segments, bins=np.arange(max(segments) + 2) - 0.5, color="#4c72b0", edgecolor="white")
    ax.set_xlabel("objects per image (besides the whole image)")
    ax.set_ylabel("test photos")
    ax.set_title("segments per image")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
