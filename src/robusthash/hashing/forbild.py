"""The improved block hash "ForBild" (rHash) of Steinebach et al.

As described in "Image Hashing Robust Against Cropping and Rotation" (Steinebach,
Berwanger, Liu), section on the robust hash:

1. The image is reduced to a 16×16 grey image by block means (area averaging of the
   ITU-R 601 luma).
2. Automatic mirroring: the image is flipped horizontally and/or vertically so that
   the brightest of its four 8×8 quadrants is at the top left. This makes the hash
   invariant to mirroring.
3. Each bit compares a block with the median of *its own* 8×8 quadrant (not of the
   whole image), which makes the hash less dependent on the image's coarse layout.
4. A bit whose block lies far from its median is more trustworthy than one close to
   it. The hash therefore keeps, for the image it was computed from, each bit's
   distance from its median (``extra["reliability"]``, grey levels). It is not part
   of the 32 stored bytes: only the freshly computed query hash needs it.

Weighted distance (the paper's words: "the second moment of the distances of
different bits is divided by that of identical bits and multiplied by the Hamming
distance and the factor 1000"):

    weighted = mean(r_i² for differing bits) / mean(r_i² for identical bits) × H × 1000

with r the query's reliabilities (both hashes' where both carry them: the mean of their
squares, so the distance is symmetric). Decision rule of the paper: a reference is a
candidate only if H ≤ 32; it matches if H ≤ 8 or weighted ≤ 16.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .base import BaseHasher, Comparison
from .value import Hash

GRID = 16
HALF = GRID // 2
CANDIDATE_HAMMING = 32
MATCH_HAMMING = 8
MATCH_WEIGHTED = 16.0


def grey_blocks(im: Image.Image) -> np.ndarray:
    """16×16 block means of the luma, as float64 grey levels 0..255."""
    return np.asarray(im.convert("F").resize((GRID, GRID), Image.Resampling.BOX), dtype=np.float64)


def mirror_brightest_top_left(grid: np.ndarray) -> np.ndarray:
    """Flip so that the brightest 8×8 quadrant is at the top left (ties keep the image as is)."""
    quadrants = grid.reshape(2, HALF, 2, HALF).sum(axis=(1, 3))  # [[TL, TR], [BL, BR]]
    row, col = np.unravel_index(int(np.argmax(quadrants)), (2, 2))
    if row:
        grid = grid[::-1, :]
    if col:
        grid = grid[:, ::-1]
    return grid


def forbild_bits(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bits and reliabilities (distance from the quadrant median) of a mirrored 16×16 grid.

    Both are returned in row-major order of the 16×16 grid.
    """
    quads = grid.reshape(2, HALF, 2, HALF).transpose(0, 2, 1, 3).reshape(4, HALF * HALF)
    ordered = np.sort(quads, axis=1)  # the median of 64 values; np.median costs 5× more here
    medians = (ordered[:, 31:32] + ordered[:, 32:33]) / 2
    # A block exactly at its median (flat areas) takes the bit of the median's half of
    # the grey range, so flat white and flat black areas differ.
    bits = (quads > medians) | ((quads == medians) & (medians > 127.5))
    reliability = np.abs(quads - medians)

    def to_grid(values: np.ndarray) -> np.ndarray:
        return values.reshape(2, 2, HALF, HALF).transpose(0, 2, 1, 3).reshape(-1)

    return to_grid(bits), to_grid(reliability).astype(np.float32)


def weighted_distance(query: Hash, reference: Hash) -> float | None:
    """The paper's weighted distance, from the per-bit reliabilities the hashes carry.

    Symmetric: where both hashes carry reliabilities (both freshly computed, as in
    ``robusthash compare``), each bit's squared reliability is the mean of the two, so
    the order of the pair does not matter. Where only one does (a query against a
    registered hash, whose reliabilities are not stored), that one's are used, as in the
    paper. None when neither carries them (both read back from hex, for example).
    """
    given = [np.asarray(h.extra["reliability"], dtype=np.float64) for h in (query, reference)
             if h.extra.get("reliability") is not None]
    if not given:
        return None
    differ = query.bits != reference.bits
    hamming = int(differ.sum())
    if hamming == 0:
        return 0.0
    same = ~differ
    r2 = np.mean([r ** 2 for r in given], axis=0)
    moment_same = r2[same].mean() if same.any() else 0.0
    if moment_same == 0.0:
        return math.inf
    return float(r2[differ].mean() / moment_same * hamming * 1000.0)


class ForbildHasher(BaseHasher):
    name = "forbild"
    own_rule = True  # the paper's two steps, with the weighted distance
    bits = GRID * GRID
    # 2: the luma of a draft JPEG decode always (1 took a full RGB decode when another
    # method in the same run needed one, up to 14 bits apart).
    version = "2"
    description = "ForBild block hash (Steinebach et al.): mirroring, quadrant medians, weighted distance"
    threshold = CANDIDATE_HAMMING / (GRID * GRID)
    threshold_source = "the paper's two-step rule: Hamming ≤ 32 and (Hamming ≤ 8 or weighted ≤ 16)"
    draft_size = 128
    input_mode = "L"
    decision = f"Hamming ≤ {CANDIDATE_HAMMING} and (Hamming ≤ {MATCH_HAMMING} or weighted ≤ {MATCH_WEIGHTED:g})"

    def hash_pil(self, im: Image.Image) -> Hash:
        bits, reliability = forbild_bits(mirror_brightest_top_left(grey_blocks(im)))
        return self.make_hash(bits, reliability=reliability)

    def compare(self, a: Hash, b: Hash, threshold: float | None = None) -> Comparison:
        """The paper's two-step decision. ``threshold`` (NHD) replaces only the Hamming
        candidate bound of 32/256, for protocols that sweep a single threshold."""
        hamming = a - b
        candidate_bound = CANDIDATE_HAMMING if threshold is None else threshold * self.bits
        weighted = weighted_distance(a, b)
        if hamming > candidate_bound:
            matched, rule = False, f"Hamming {hamming} > {candidate_bound:g}: not a candidate"
        elif hamming <= MATCH_HAMMING:
            matched, rule = True, f"Hamming {hamming} ≤ {MATCH_HAMMING}"
        elif weighted is not None and weighted <= MATCH_WEIGHTED:
            matched, rule = True, f"weighted distance {weighted:.1f} ≤ {MATCH_WEIGHTED:g}"
        else:
            shown = "unavailable (no reliability)" if weighted is None else f"{weighted:.1f} > {MATCH_WEIGHTED:g}"
            matched, rule = False, (f"Hamming {hamming} > {MATCH_HAMMING} and weighted distance {shown} "
                                    f"(a match needs Hamming ≤ {MATCH_HAMMING} or weighted ≤ {MATCH_WEIGHTED:g})")
        details = {"weighted_distance": weighted, "rule": rule, "candidate_bound": candidate_bound}
        return Comparison(hamming / self.bits, hamming, matched, details)
