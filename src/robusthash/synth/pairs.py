"""Synthetic (original, query) pairs with their truth, for training and evaluating the
comparator: same picture, edited picture, different picture.

* ``same``: the original under a non-editorial change, a CMAA strong attack (0 to 5
  Table 1 attacks: compression, noise, filters, colour, resizing, rotation, flips, shear,
  translation, cropping).
* ``edited``: one editorial change (:mod:`robusthash.synth.edits`), then a strong attack.
* ``different``: another photo of the pool under a strong attack.

Pairs come from one split's photos and cut-outs (train for training, test for the
report), reduced once to ``PairConfig.side``. The edit mask is in the original's frame;
whatever part of it the query no longer shows (cropped away) is dropped when the pair is
aligned (:func:`truth_heatmap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..attacks.spec import parse
from ..attacks.suites import strong_attack_plan
from ..compare import Kind
from ..compare.align import AlignedPair, Alignment, align
from ..io import to_rgb
from ..imaging import reduced
from . import edits

EDITED_CELL = 0.25  # a cell is "edited" in the binary truth when this share of it is
BILINEAR = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class PairConfig:
    side: int = 320  # longer side of the pool's photos
    kinds: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # P(same), P(edited), P(different)
    edits: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)  # P(paste), P(remove), P(smear), P(replace)
    region_area: tuple[float, float] = (0.03, 0.2)  # share of the image a region edit covers
    object_scale: tuple[float, float] = (0.25, 0.55)  # cut-out's longer side over the photo's shorter side
    object_angle: tuple[float, float] = (-30.0, 30.0)
    smear_sigma: tuple[float, float] = (4.0, 10.0)
    non_editorial: bool = True  # a strong attack on every query


@dataclass
class Pair:
    original: Image.Image
    query: Image.Image
    kind: Kind
    mask: np.ndarray  # H×W bool over the original: the edited pixels (empty unless edited)
    edit: str = ""  # which edit (edits.EDITS), "" for same and different
    attacks: list[str] = field(default_factory=list)  # the non-editorial changes, in order


class PairPool:
    """Photos and RGBA cut-outs of one split, reduced once, that pairs are drawn from."""

    def __init__(self, photos: list[Image.Image], cutouts: list[Image.Image], config: PairConfig = PairConfig()):
        if len(photos) < 2:
            raise ValueError("pairs need at least two photos (a different picture is another photo)")
        if not cutouts:
            raise ValueError("pairs need RGBA cut-outs for pasted objects")
        self.photos = [reduced(to_rgb(p), config.side, BILINEAR) for p in photos]
        self.cutouts = [reduced(c.convert("RGBA"), config.side, BILINEAR) for c in cutouts]
        self.config = config

    @classmethod
    def from_files(cls, photo_paths, cutout_paths, config: PairConfig = PairConfig()) -> "PairPool":
        photos = []
        for path in photo_paths:
            with Image.open(path) as im:
                im.draft("RGB", (config.side, config.side))  # JPEGs decode at a reduced scale
                im.load()
                photos.append(reduced(to_rgb(im), config.side, BILINEAR))
        cutouts = [reduced(Image.open(path).convert("RGBA"), config.side, BILINEAR) for path in cutout_paths]
        return cls(photos, cutouts, config)

    def draw(self, rng: np.random.Generator, kind: Kind | None = None, index: int | None = None) -> Pair:
        """A random pair (of ``kind`` and from photo ``index`` when given)."""
        config = self.config
        if kind is None:
            kind = Kind(int(rng.choice(3, p=config.kinds)))
        if index is None:
            index = int(rng.integers(len(self.photos)))
        original = self.photos[index]
        mask = np.zeros((original.height, original.width), dtype=bool)
        edit = ""
        if kind == Kind.same:
            query = original
        elif kind == Kind.edited:
            edit = edits.EDITS[int(rng.choice(len(edits.EDITS), p=config.edits))]
            query, mask = self._edit(original, edit, rng)
        else:
            other = (index + 1 + int(rng.integers(len(self.photos) - 1))) % len(self.photos)
            query = self.photos[other]
        plan = strong_attack_plan(rng) if config.non_editorial else []
        for spec in plan:
            (step,) = parse(spec).steps
            query = step.apply(query, rng)
        return Pair(original, query.copy() if query is original else query, kind, mask, edit, plan)

    def _edit(self, original: Image.Image, edit: str, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
        config = self.config
        if edit == "paste":
            cutout = self.cutouts[int(rng.integers(len(self.cutouts)))]
            return edits.paste_object(original, cutout, float(rng.uniform(*config.object_scale)),
                                      float(rng.uniform(*config.object_angle)),
                                      (float(rng.uniform()), float(rng.uniform())))
        region = edits.random_region(original.size, float(rng.uniform(*config.region_area)), rng)
        if edit == "remove":
            return edits.remove_region(original, region)
        if edit == "smear":
            return edits.smear_region(original, region, float(rng.uniform(*config.smear_sigma)))
        donor = self.photos[int(rng.integers(len(self.photos)))]
        return edits.replace_region(original, donor, region)


# An edit that the query shows less than this share of (the rest cropped away) no
# longer makes the pair "edited": there is nothing left to point at.
MIN_VISIBLE_EDIT = 0.25


def truth_heatmap(pair: Pair, coverage: np.ndarray, cells: int = 7) -> tuple[Kind, np.ndarray]:
    """The pair's class and heatmap target (cells × cells share of each cell edited) once
    the query is aligned; ``coverage`` (any size) is where the aligned query has pixels."""
    if pair.kind != Kind.edited:
        return pair.kind, np.zeros((cells, cells), dtype=np.float32)
    seen = np.asarray(Image.fromarray(coverage.astype(np.uint8) * 255).resize(
        (pair.mask.shape[1], pair.mask.shape[0]), Image.Resampling.NEAREST)) > 127
    visible = pair.mask & seen
    if visible.sum() < MIN_VISIBLE_EDIT * max(1, pair.mask.sum()):
        return Kind.same, np.zeros((cells, cells), dtype=np.float32)
    return Kind.edited, edits.cell_fractions(visible, cells)


@dataclass
class AlignedPairs:
    """Pairs after alignment, as the comparator sees them: originals and queries
    N×S×S×3 uint8, labels N (``Kind``), heatmap targets N×cells×cells (share edited),
    and what made each pair (edit, non-editorial attacks, whether alignment found it)."""

    originals: np.ndarray
    queries: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    edits: list[str]
    attacks: list[list[str]]
    aligned: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path) -> None:
        np.savez(path, originals=self.originals, queries=self.queries, labels=self.labels, targets=self.targets,
                 edits=np.array(self.edits), attacks=np.array(["+".join(a) for a in self.attacks]),
                 aligned=self.aligned)

    @classmethod
    def load(cls, path) -> "AlignedPairs":
        with np.load(path) as data:
            return cls(data["originals"], data["queries"], data["labels"], data["targets"], list(data["edits"]),
                       [a.split("+") if a else [] for a in data["attacks"]], data["aligned"])


def pair_rng(seed: int, i: int) -> np.random.Generator:
    """Pair ``i``'s own generator: the same pairs however the work is split."""
    return np.random.default_rng([seed, i])


def draw_pair(pool: PairPool, seed: int, i: int) -> Pair:
    """Pair ``i`` of a sequence: kinds in turn (same, edited, different), photos in turn,
    so ``3 × len(pool.photos)`` pairs give every photo each kind once."""
    return pool.draw(pair_rng(seed, i), Kind(i % 3), (i // 3) % len(pool.photos))


_WORKER_POOL: PairPool | None = None


@dataclass(frozen=True)
class DrawnPair:
    """Pair ``i`` of :func:`draw_pair`, aligned, with its truth: what training (in bulk,
    :func:`aligned_pairs`) and the report (kept whole for its attacks) both start from."""

    pair: Pair
    label: Kind
    target: np.ndarray  # cells × cells, the share of each cell edited
    alignment: Alignment  # of the clean query
    aligned: AlignedPair  # the clean query on the grid over the original


def drawn_pair(pool: PairPool, seed: int, i: int, size: int, cells: int = 7) -> DrawnPair:
    pair = draw_pair(pool, seed, i)
    alignment, aligned = align(pair.query, pair.original, size)
    label, target = truth_heatmap(pair, aligned.coverage, cells)
    return DrawnPair(pair, label, target, alignment, aligned)


def _aligned_one(args) -> tuple:
    seed, i, size, cells = args
    d = drawn_pair(_WORKER_POOL, seed, i, size, cells)
    return (d.aligned.original, d.aligned.query, int(d.label), d.target, d.pair.edit, d.pair.attacks,
            d.alignment.found)


def aligned_pairs(pool: PairPool, count: int, seed: int, size: int, cells: int = 7, workers: int = 1,
                  progress=None) -> AlignedPairs:
    """Pairs 0 .. count−1 of :func:`draw_pair`, aligned (``compare.align``), with their truth."""
    global _WORKER_POOL
    _WORKER_POOL = pool
    jobs = [(seed, i, size, cells) for i in range(count)]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as processes:
            results = []
            for result in processes.imap(_aligned_one, jobs, chunksize=16):
                results.append(result)
                if progress:
                    progress(len(results), count)
    else:
        results = []
        for job in jobs:
            results.append(_aligned_one(job))
            if progress:
                progress(len(results), count)
    _WORKER_POOL = None
    return AlignedPairs(np.stack([r[0] for r in results]), np.stack([r[1] for r in results]),
                        np.array([r[2] for r in results], dtype=np.int64), np.stack([r[3] for r in results]),
                        [r[4] for r in results], [r[5] for r in results], np.array([r[6] for r in results]))
