"""Recall under realisable adversarial attack, every hasher side by side (issue 7; ARIA
section 5.1).

    python -m robusthash.evaluation.adversarial_report --corpus corpus --out results/adversarial

The database holds N test originals (spread evenly over test.txt) and distractors:
every other corpus photo (train and test) and one synthetic crop of each (half the
area, at a seeded position). All files are first reduced to at most 512 px, which
then *are* the files in this benchmark (white-box PGD runs in the file's own pixels,
through the differentiable JPEG, and 512 px keeps 50 steps near 3 s per image here).

Queries, one per original:

- clean: one Table 1 or Table 2 attack drawn at random (seeded) per original;
- adversarial: the clean query, then an untargeted attack pushing its hash away from
  its original's, ℓ∞ ε = 8/255, saved as a real JPEG (quality 90) and hashed from that
  file. ``cmaa`` and ``aria``: white-box PGD (50 steps, step 4/255 halved at 25/50/75%)
  on the shipped weights. Classical hashers: black-box, PGD on a differentiable surrogate with
  the real hash queried once per step, 100 queries (``attacks.surrogates``). Neither
  stops early: the attacker does not know the database, so it gets as far from the
  original as its budget allows (success against queries = the first query past τ).

Reported: recall@1 and @10 (the original's rank among all references by Hamming
distance; ties count against it), the attack's success on the saved files (distance >
the method's τ), queries, PSNR; for the learned hashers also budgets not trained
against (ℓ∞ 16/255 and 32/255, ℓ2 0.5), on the first 25 queries; and targeted attacks
(collisions: query i pulled onto original i + 1's hash) on the first 25 queries.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..attacks import TABLE1, TABLE2, parse
from ..files import evenly_spaced, read_image_list
from ..hashing import get_hasher
from ..hashing.value import Hash
from ..synth.corpus import Corpus
from .metrics import hamming_matrix
from .segments_report import reduced

MAX_SIDE = 512


@dataclass(frozen=True)
class AdversarialBenchConfig:
    originals_list: Path  # e.g. corpus/test.txt: paths relative to the list's folder
    originals: int = 100  # spread evenly over the list; the rest of it are distractors
    methods: tuple[str, ...] = ("cmaa", "pdq", "phash", "blockhash", "forbild")
    eps: float = 8 / 255
    steps: int = 50  # white-box PGD steps
    queries: int = 100  # black-box query budget
    unseen: tuple[tuple[str, float], ...] = (("linf", 16 / 255), ("linf", 32 / 255), ("l2", 0.5))
    unseen_queries: int = 25  # how many of the queries the unseen budgets attack
    targeted_queries: int = 25  # how many queries a targeted attack pulls onto another original
    seed: int = 0
    distractor_lists: tuple[Path, ...] = ()  # more distractors, e.g. corpus/train.txt


def recall(queries: list[Hash], references: list[Hash], truth: list[int], ks: tuple[int, ...] = (1, 10)) -> dict:
    """Recall@k: the share of queries whose original ranks within k (ties count against it)."""
    packed_q = np.stack([np.frombuffer(h.data, np.uint8) for h in queries])
    packed_r = np.stack([np.frombuffer(h.data, np.uint8) for h in references])
    distances = hamming_matrix(packed_q, packed_r)
    own = distances[np.arange(len(queries)), truth]
    ranks = (distances <= own[:, None]).sum(axis=1)  # the original itself counts once
    return {f"recall@{k}": float((ranks <= k).mean()) for k in ks}


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / max((diff**2).mean(), 1e-12)))


def run(config: AdversarialBenchConfig, progress=lambda line: print(line, flush=True)) -> dict:
    import torch

    from ..attacks import adversarial as adv
    from ..attacks.surrogates import SurrogateConfig, surrogate_attack

    torch.manual_seed(config.seed)
    test = read_image_list(config.originals_list)
    chosen = evenly_spaced(test, config.originals)
    picked = set(chosen)
    others = [p for p in test if p not in picked]
    for extra in config.distractor_lists:
        others += read_image_list(extra)
    rng = np.random.default_rng(config.seed)
    originals = [reduced(Image.open(p), MAX_SIDE) for p in chosen]
    distractors = []
    for path in others:
        im = reduced(Image.open(path), MAX_SIDE)
        distractors += [im, parse(f"CROP(0.5,{rng.random():.2f},{rng.random():.2f})")(im)]
    cases = [*TABLE1, *TABLE2]
    specs = [cases[rng.integers(len(cases))].spec for _ in originals]
    clean = [parse(spec)(im, seed=i) for i, (spec, im) in enumerate(zip(specs, originals))]
    progress(f"{len(originals)} test originals, {len(distractors)} distractors ({len(others)} photos and a crop "
             f"of each), ≤ {MAX_SIDE} px")
    result: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                    "originals": [str(p) for p in chosen], "specs": specs, "methods": {}}
    truth = list(range(len(originals)))
    for method in config.methods:
        hasher = get_hasher(method)
        tau = int(round(hasher.threshold * hasher.bits))
        references = hasher.hash_pils(originals + distractors)
        clean_hashes = hasher.hash_pils(clean)
        row: dict = {"tau_bits": tau, "clean": recall(clean_hashes, references, truth)}
        started = time.perf_counter()
        attacked, queries, successes = [], [], []
        white_box = method in adv.WHITE_BOX
        fingerprint = adv.shipped_fingerprint(90, method) if white_box else None
        for i, query in enumerate(clean):
            if white_box:
                config_pgd = adv.PGDConfig(eps=config.eps, steps=config.steps, seed=config.seed)
                pixels = adv.untargeted(fingerprint, adv.to_tensor(query), config_pgd,
                                        original=adv.to_tensor(originals[i]))
                out = adv.published(pixels, 90)
                queries.append(0)
            else:
                found = surrogate_attack(method, hasher.hash_pil, query, references[i], tau, original=originals[i],
                                         config=SurrogateConfig(eps=config.eps, queries=config.queries,
                                                                seed=config.seed, stop_at_success=False))
                out = found.image
                queries.append(found.queries)
            attacked.append(out)
            successes.append(hasher.hash_pil(out) - references[i] > tau)
            if (i + 1) % 10 == 0:
                progress(f"{method}: attacked {i + 1}/{len(clean)}")
        adversarial_hashes = hasher.hash_pils(attacked)
        row["adversarial"] = recall(adversarial_hashes, references, truth)
        row["attack"] = {"kind": "white-box PGD" if white_box else "black-box surrogate PGD",
                         "success": float(np.mean(successes)),
                         "mean_queries": None if white_box else float(np.mean(queries)),
                         "queries_at_success": None if white_box else sorted(q for q, s in zip(queries, successes) if s),
                         "psnr_db": float(np.mean([psnr(a, c) for a, c in zip(attacked, clean)])),
                         "seconds_per_query": (time.perf_counter() - started) / len(clean)}
        if white_box:
            row["unseen"] = {}
            for norm, eps in config.unseen:
                budget = config.unseen_queries
                pixels = [adv.untargeted(fingerprint, adv.to_tensor(q),
                                         adv.PGDConfig(norm=norm, eps=eps, steps=config.steps, seed=config.seed),
                                         original=adv.to_tensor(o))
                          for q, o in zip(clean[:budget], originals[:budget])]
                files = [adv.published(p, 90) for p in pixels]
                label = f"{norm} {eps * 255:.0f}/255" if norm == "linf" else f"{norm} {eps}"
                row["unseen"][label] = recall(hasher.hash_pils(files), references, truth[:budget]) | {
                    "queries": budget, "clean": recall(clean_hashes[:budget], references, truth[:budget])}
                progress(f"{method} unseen {label}: {row['unseen'][label]}")
        row["targeted"] = targeted_row(method, hasher, fingerprint, clean, originals, references, tau, config)
        progress(f"{method} targeted: {row['targeted']}")
        result["methods"][method] = row
        progress(f"{method}: {json.dumps(row, default=str)[:300]}")
    return result


def targeted_row(method: str, hasher, fingerprint, clean: list[Image.Image], originals: list[Image.Image],
                 references: list[Hash], tau: int, config: AdversarialBenchConfig) -> dict:
    """Collisions (Eq. 2): query i pulled onto original i + 1's hash, ℓ∞ ε, saved as JPEG.
    Success: within τ of the target; hijacked: the target ranks first."""
    from ..attacks import adversarial as adv
    from ..attacks.surrogates import SurrogateConfig, surrogate_attack

    count = min(config.targeted_queries, len(clean))
    files = []
    for i in range(count):
        target = (i + 1) % len(originals)
        if fingerprint is not None:
            pixels = adv.targeted(fingerprint, adv.to_tensor(clean[i]), adv.to_tensor(originals[target]),
                                  adv.PGDConfig(eps=config.eps, steps=config.steps, seed=config.seed))
            files.append(adv.published(pixels, 90))
        else:
            files.append(surrogate_attack(method, hasher.hash_pil, clean[i], references[target], tau,
                                          target=originals[target],
                                          config=SurrogateConfig(eps=config.eps, queries=config.queries,
                                                                 seed=config.seed)).image)
    hashes = hasher.hash_pils(files)
    targets = [(i + 1) % len(originals) for i in range(count)]
    within = [h - references[t] <= tau for h, t in zip(hashes, targets)]
    hijacked = recall(hashes, references, targets, ks=(1,))["recall@1"] if count else 0.0
    return {"queries": count, "success": float(np.mean(within)) if count else 0.0, "hijacked": hijacked,
            "still_own_recall@1": recall(hashes, references, list(range(count)), ks=(1,))["recall@1"] if count else 0.0}


def write_markdown(result: dict, out: Path, command: str) -> None:
    c = result["config"]
    lines = ["# Recall under realisable adversarial attack (issue 7, ARIA)", "", f"Command: `{command}`", "",
             f"{c['originals']} test originals and their distractors (every other corpus photo and one crop of "
             f"each), files ≤ {MAX_SIDE} px. Query: one random Table 1 / Table 2 attack per original (clean), then "
             f"an untargeted attack away from the original's hash, ℓ∞ ε = {c['eps'] * 255:.0f}/255, saved as JPEG "
             "quality 90 and hashed from the file (adversarial). Recall@k: the original ranks within k by "
             "Hamming distance among all references (ties count against it).", "",
             "| method | attack | clean R@1 | clean R@10 | adversarial R@1 | adversarial R@10 | attack success "
             "(> τ) | queries to pass τ (mean) | PSNR dB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, row in result["methods"].items():
        a = row["attack"]
        queries = "—" if a["mean_queries"] is None else f"{a['mean_queries']:.0f}"
        lines.append(f"| {method} | {a['kind']} | {row['clean']['recall@1']:.3f} | {row['clean']['recall@10']:.3f} | "
                     f"{row['adversarial']['recall@1']:.3f} | {row['adversarial']['recall@10']:.3f} | "
                     f"{a['success']:.3f} | {queries} | {a['psnr_db']:.1f} |")
    lines += ["", "Attack success: the saved file's hash lies farther than the method's τ from its original's. "
              "Queries: hashes of the real hasher until the first success (the whole budget when none); the "
              "attack then goes on to its budget. PSNR: the adversarial file against the clean query (JPEG's own "
              "loss included).", ""]
    black = {m: r["attack"]["queries_at_success"] for m, r in result["methods"].items()
             if r["attack"]["queries_at_success"] is not None}
    if black:
        budgets = (1, 5, 10, 25, 50, 100)
        lines += ["## Black-box success against queries", "", "| method | " + " | ".join(f"≤ {b}" for b in budgets)
                  + " |", "|---|" + "---:|" * len(budgets)]
        n = c["originals"]
        for method, at in black.items():
            lines.append(f"| {method} | " + " | ".join(f"{sum(q <= b for q in at) / n:.2f}" for b in budgets) + " |")
        lines.append("")
    targeted = {m: r["targeted"] for m, r in result["methods"].items() if r.get("targeted")}
    if targeted:
        lines += ["## Targeted attacks (collisions)", "",
                  "Query i pulled onto original i + 1's hash (ℓ∞ ε as above, saved as JPEG), on the first queries.", "",
                  "| method | queries | within τ of the target | target ranks first | own original still first |",
                  "|---|---:|---:|---:|---:|"]
        for method, r in targeted.items():
            lines.append(f"| {method} | {r['queries']} | {r['success']:.3f} | {r['hijacked']:.3f} | "
                         f"{r['still_own_recall@1']:.3f} |")
        lines.append("")
    unseen = {m: r["unseen"] for m, r in result["methods"].items() if r.get("unseen")}
    if unseen:
        lines += ["## Learned hashers under other budgets (white-box, the first queries only)", "",
                  "| method | budget | queries | clean R@1 | adversarial R@1 | adversarial R@10 |",
                  "|---|---|---:|---:|---:|---:|"]
        for method, budgets in unseen.items():
            for label, r in budgets.items():
                lines.append(f"| {method} | {label} | {r['queries']} | {r['clean']['recall@1']:.3f} | "
                             f"{r['recall@1']:.3f} | {r['recall@10']:.3f} |")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="its test.txt gives the originals, train.txt "
                                                                   "more distractors")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--originals", type=int, default=100)
    parser.add_argument("--methods", default="cmaa,aria,pdq,phash,blockhash,forbild")
    args = parser.parse_args(argv)
    corpus = Corpus(args.corpus)
    config = AdversarialBenchConfig(originals_list=corpus.test_list, originals=args.originals,
                                    methods=tuple(args.methods.split(",")),
                                    distractor_lists=(corpus.train_list,))
    command = "python -m robusthash.evaluation.adversarial_report " + " ".join(argv or sys.argv[1:])
    print("wrote " + ", ".join(str(p) for p in write_all(run(config), args.out, command)))


def write_all(result: dict, out: Path, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    write_markdown(result, out, command)
    return [out / "report.md", out / "results.json"]


if __name__ == "__main__":
    main()
