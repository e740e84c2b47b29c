"""Local features of an image, kept compactly, and the pairwise check of a query against
a registered original: is the query this picture, seen through some geometry?

ORB keypoints and descriptors of a grey copy reduced to ``feature_side`` pixels, the
descriptors matched with Lowe's ratio test, then a RANSAC homography (OpenCV). A
homography counts only when it is plausible (orientation-preserving, not degenerate):
the inliers of a rejected one are no evidence (on 7,560 distinct train pairs they reach
53, against 24 for accepted ones; ``benchmarks/verification_probe.py``). ORB is not
mirror-invariant, so the query's mirror image is checked too, and the better of the two
is kept (the first plausible one can be a wrong fit to a few points).

What is stored per registered image is :class:`LocalFeatures` as bytes
(:meth:`LocalFeatures.to_bytes`): a small header, then per keypoint its position at a
quarter pixel of the reduced copy (2 × uint16) and its 32-byte descriptor: 36 bytes a
keypoint, at most ``max_features`` of them (about 18 KB at 500).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from PIL import Image

from ..imaging import reduced
from ..runtime import searching

KIND = "orb"
# Of the stored features. 2: a smooth picture's keypoints are found again at a lower FAST
# threshold (FeatureConfig.sparse_share). Features of an older version are read where a
# reference holds no others (OLDER_VERSIONS): the same format and the same check, with
# fewer keypoints for a smooth picture.
VERSION = "2"
OLDER_VERSIONS = ("1",)
# Of the check (matching and geometry) as well: what the verification's calibrated
# inlier count means. 2: PROSAC, the matches tried best first; 3: one match per original
# point, and the inliers' boxes of a plausible size ratio. 4: a first check of a sample of
# the original's descriptors decides which of the query and its mirror image are matched.
# 5: the first check asks for 6 matches, not 3. (Features of version 2 make it "2/5".)
CHECK_VERSION = f"{VERSION}/5"
_MAGIC = b"RHLF"
_HEADER = struct.Struct("<4sBxHIIf")  # magic, format, keypoints, width, height, scale


@dataclass(frozen=True)
class FeatureConfig:
    feature_side: int = 384  # longer side of the grey copy ORB sees (a registered image)
    max_features: int = 500
    # A query is seen larger and with more keypoints: in a montage or a crop the
    # original is only part of it, and a budget spread over the whole query would leave
    # a softer part with too few keypoints to verify.
    query_side: int = 768
    query_features: int = 1500
    ratio: float = 0.8  # Lowe's ratio test (ORB's Hamming distances)
    ransac_pixels: float = 4.0  # reprojection error allowed, in feature-side pixels
    min_matches: int = 8  # fewer ratio-test matches than this: no homography is fitted
    max_scale_change: float = 8.0  # a homography that scales more than this is rejected
    # The first check: every ``first_check_every``-th of the original's descriptors is
    # looked up among the query's; under ``first_check_matches`` ratio-test matches, that
    # orientation is not matched in full, at a quarter of a full match's distances. On
    # 1,300 train copies (the calibration's attacks), each against its original and 20
    # distinct ones, all matched in full (``benchmarks/first_check.py``): 6 matches let
    # 9.3% of distinct orientations through among the nearest by cmaa (3: 36.8%) and
    # 5.3% of random ones (26.1%), and stop no copy that verifies with 15 inliers or
    # more (2 of 5 with 8-14; 3 stopped 1); 10 would stop 4 of 33 with 15-39.
    first_check_every: int = 4
    first_check_matches: int = 6
    # A picture where FAST's default threshold (20 grey levels) finds fewer than this share
    # of the budget is looked at again at ``sparse_fast_threshold``: a sky, fog or a plain
    # wallpaper holds few corners that strong, too few for a homography after an attack
    # (18 keypoints in a 384 px wallpaper, 67 in a sky-filled landscape). On the
    # validation share, 38 of the engine's 66 misses were copies of three such photos;
    # at 5, 30 of those 38 copies (re-made) verified with 20-130 inliers.
    sparse_share: float = 0.5
    sparse_fast_threshold: int = 5


DEFAULT_FEATURES = FeatureConfig()


@dataclass(frozen=True, eq=False)
class LocalFeatures:
    """Keypoints of one image: ``points`` (n × 2 float32, full-size pixel coordinates),
    ``descriptors`` (n × 32 uint8), and the image's full ``size`` (w, h)."""

    size: tuple[int, int]
    scale: float  # reduced / full size
    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    def to_bytes(self) -> bytes:
        reduced_points = (self.points + 0.5) * self.scale - 0.5
        quarter = np.clip(np.rint(reduced_points * 4), 0, 65535).astype("<u2")
        header = _HEADER.pack(_MAGIC, 1, len(self), self.size[0], self.size[1], self.scale)
        return header + quarter.tobytes() + np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LocalFeatures":
        """Read :meth:`to_bytes`' form back; ValueError on anything else."""
        if len(data) < _HEADER.size:
            raise ValueError("local features: too short")
        magic, fmt, count, width, height, scale = _HEADER.unpack_from(data)
        if magic != _MAGIC or fmt != 1 or len(data) != _HEADER.size + 36 * count or not 0 < scale <= 1:
            raise ValueError("local features: not robusthash's format 1, or damaged")
        body = memoryview(data)[_HEADER.size:]
        quarter = np.frombuffer(body[: 4 * count], dtype="<u2").reshape(count, 2).astype(np.float32)
        descriptors = np.frombuffer(body[4 * count:], dtype=np.uint8).reshape(count, 32)
        return cls((width, height), float(scale), (quarter / 4 + 0.5) / scale - 0.5, descriptors)


def grey_copy(im: Image.Image, side: int) -> tuple[np.ndarray, float]:
    """``im`` in grey, reduced to at most ``side`` pixels (what ORB sees), and the scale
    (reduced / full size)."""
    return np.asarray(reduced(im.convert("L"), side, Image.Resampling.BILINEAR)), min(1.0, side / max(im.size))


def full_size_points(keypoints, scale: float) -> np.ndarray:
    """OpenCV keypoints of a reduced copy in full-size pixel coordinates (pixel centres
    stay centres)."""
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return (points + 0.5) / scale - 0.5


def local_features(im: Image.Image, config: FeatureConfig = DEFAULT_FEATURES, mirrored: bool = False,
                   query: bool = False) -> LocalFeatures:
    """ORB features of ``im`` (of its mirror image when ``mirrored``), as a registered
    image's or, with ``query``, as a query's (larger, more keypoints)."""
    import cv2

    side, budget = (config.query_side, config.query_features) if query else (config.feature_side, config.max_features)
    grey, scale = grey_copy(im, side)
    if mirrored:
        grey = np.ascontiguousarray(grey[:, ::-1])
    keypoints, descriptors = cv2.ORB_create(budget).detectAndCompute(grey, None)
    if len(keypoints) < config.sparse_share * budget:
        keypoints, descriptors = cv2.ORB_create(budget, fastThreshold=config.sparse_fast_threshold).detectAndCompute(
            grey, None)
    if descriptors is None:
        descriptors = np.zeros((0, 32), dtype=np.uint8)
    return LocalFeatures(im.size, scale, full_size_points(keypoints, scale), descriptors)


def region_features(grey: Image.Image, region: tuple[int, int, int, int],
                    config: FeatureConfig = DEFAULT_FEATURES) -> tuple[LocalFeatures, LocalFeatures]:
    """A query's features within ``region`` of it (x0, y0, x1, y1), and its mirror
    image's, in the region's own pixels: the region is seen as a query of its own,
    enlarged to ``feature_side`` when smaller, so that a small part of a montage has as
    many keypoints to be verified with as a whole picture."""
    crop = grey.crop(region)
    enlarge = config.feature_side / max(crop.size)
    seen = crop.resize((round(crop.width * enlarge), round(crop.height * enlarge)), Image.Resampling.BILINEAR) \
        if enlarge > 1 else crop

    def found(mirrored: bool) -> LocalFeatures:
        features = local_features(seen, config, mirrored, query=True)
        if seen is crop:
            return features
        points = (features.points + 0.5) / enlarge - 0.5
        return LocalFeatures(crop.size, features.scale * enlarge, points, features.descriptors)

    return found(False), found(True)


@dataclass(frozen=True)
class Verification:
    """What the pairwise check found. ``homography`` maps query pixels (mirrored first
    when ``flipped``) to the original's; ``inliers`` are those of an accepted homography
    (0 when none was); ``query_box`` is the box of the query the inliers span, in the
    query's own pixels; ``original_share`` the share of the original's area the inliers'
    box covers; ``query_points`` the inliers in the query's own pixels (n × 2)."""

    inliers: int
    matches: int
    flipped: bool
    homography: np.ndarray | None
    query_box: tuple[int, int, int, int] | None
    original_share: float
    query_points: np.ndarray | None = None

    @property
    def accepted(self) -> bool:
        return self.homography is not None

    def in_query(self, region: tuple[int, int, int, int], query_width: int) -> "Verification":
        """This check of a ``region`` of a query (its features from :func:`region_features`)
        told in the whole query's frame, ``query_width`` pixels wide."""
        if not self.accepted:
            return self
        x0, y0 = region[:2]
        # Region pixels from query pixels; mirrored, the region's left edge lies at
        # query_width - region's right edge.
        dx = query_width - region[2] if self.flipped else x0
        shift = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        box = self.query_box
        points = None if self.query_points is None else self.query_points + np.array([x0, y0], dtype=np.float32)
        return replace(self, homography=self.homography @ shift,
                       query_box=(box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0), query_points=points)


NOT_VERIFIED = Verification(0, 0, False, None, None, 0.0)


def plausible(homography: np.ndarray, max_scale_change: float) -> bool:
    """Orientation-preserving (a mirror is handled by the flip) and not degenerate."""
    linear = homography[:2, :2] / homography[2, 2]
    det = float(np.linalg.det(linear))
    return det > 0 and 1 / max_scale_change**2 < det < max_scale_change**2 and \
        float(np.abs(homography[2, :2]).max()) < 1e-2


def nearest_two(query_descriptors: np.ndarray, original_descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's two nearest original descriptors (Hamming): their
    distances and indices (n × 2 each). FAISS's flat binary scan: the same distances as
    OpenCV's brute-force matcher at half its time (1.1 against 2.0-2.2 ms for 1,500 × 500
    descriptors, one thread; ``benchmarks/identify_speed.py``)."""
    import faiss

    searching()
    index = faiss.IndexBinaryFlat(8 * original_descriptors.shape[1])
    index.add(np.ascontiguousarray(original_descriptors, dtype=np.uint8))
    return index.search(np.ascontiguousarray(query_descriptors, dtype=np.uint8), 2)


def worth_matching(query_descriptors: np.ndarray, original_descriptors: np.ndarray,
                   config: FeatureConfig = DEFAULT_FEATURES) -> bool:
    """The first check: whether a sample of the original's descriptors finds enough
    ratio-test matches among the query's to be worth a full match. The sample looks into
    the query (not the other way round) because the query holds three times as many
    keypoints: the original's quarter against all of them costs a quarter of a full match."""
    return worth_matching_each(query_descriptors, [original_descriptors], config)[0]


def worth_matching_each(query_descriptors: np.ndarray, originals: Sequence[np.ndarray],
                        config: FeatureConfig = DEFAULT_FEATURES) -> list[bool]:
    """:func:`worth_matching` of one query's descriptors against each of ``originals``'
    (descriptor arrays), their samples looked up in one search: the engine checks about
    70 candidates a query, and a search each cost as much again in calls as in work."""
    if config.first_check_every <= 1:
        return [True] * len(originals)
    worth: list[bool] = []
    sampled: list[tuple[int, np.ndarray]] = []
    for i, original in enumerate(originals):
        sample = original[:: config.first_check_every]
        if len(query_descriptors) < 2 or len(sample) < config.first_check_matches:
            worth.append(len(query_descriptors) >= 2 and len(original) >= 2)  # too few to sample: match in full
        else:
            worth.append(False)
            sampled.append((i, sample))
    if sampled:
        counts = _ratio_test_counts(query_descriptors, [sample for _, sample in sampled], config.ratio)
        for (i, _), count in zip(sampled, counts):
            worth[i] = int(count) >= config.first_check_matches
    return worth


def first_check_count(query_descriptors: np.ndarray, original_descriptors: np.ndarray,
                      config: FeatureConfig = DEFAULT_FEATURES) -> int:
    """The first check's count: the ratio-test matches of every ``first_check_every``-th
    of the original's descriptors among the query's (at least 2 of those)."""
    return int(_ratio_test_counts(query_descriptors, [original_descriptors[:: config.first_check_every]],
                                  config.ratio)[0])


def _ratio_test_counts(query_descriptors: np.ndarray, samples: Sequence[np.ndarray], ratio: float) -> np.ndarray:
    """For each of ``samples`` (descriptor arrays, none empty), how many of its
    descriptors pass the ratio test among the query's two nearest (one search for all)."""
    distances, _ = nearest_two(np.concatenate(samples), query_descriptors)
    good = distances[:, 0] < ratio * distances[:, 1]
    starts = np.cumsum([0, *map(len, samples[:-1])])
    return np.add.reduceat(good.astype(np.int64), starts)


def fit_homography(query_points: np.ndarray, query_descriptors: np.ndarray, original_points: np.ndarray,
                   original_descriptors: np.ndarray, tolerance: float, ratio: float, min_matches: int,
                   max_scale_change: float) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, int, int]:
    """Ratio-test matches, then a RANSAC homography from query to original points:
    (the homography, None when none is plausible; the inliers' query points and original
    points; the inlier count, of a rejected fit too; the match count). ``tolerance`` is
    in the points' pixels."""
    import cv2

    none = np.zeros((0, 2), dtype=np.float32)
    if len(query_descriptors) < 2 or len(original_descriptors) < 2:
        return None, none, none, 0, 0
    distances, nearest = nearest_two(query_descriptors, original_descriptors)
    good = np.flatnonzero(distances[:, 0] < ratio * distances[:, 1])
    if len(good) < min_matches:
        return None, none, none, 0, len(good)
    good = good[np.argsort(distances[good, 0], kind="stable")]  # PROSAC samples the closest matches first
    # One query point per original point, the closest: many query points matched to one
    # original corner (a soft picture with few corners) fit a homography that squeezes
    # them onto it, a false "match" of dozens of inliers.
    good = good[np.sort(np.unique(nearest[good, 0], return_index=True)[1])]
    if len(good) < min_matches:
        return None, none, none, 0, len(good)
    src = query_points[good]
    dst = original_points[nearest[good, 0]]
    # PROSAC rather than RANSAC: on 1,728 distinct train pairs the 99th percentile of
    # inliers falls from 14 to 11 with the same counts for copies, and a fit between
    # distinct images stops early instead of running every iteration (0.1 against 1.6 ms).
    homography, mask = cv2.findHomography(src, dst, cv2.USAC_PROSAC, tolerance)
    if homography is None:
        return None, none, none, 0, len(good)
    keep = mask.ravel().astype(bool)
    if keep.sum() < 4 or not plausible(homography, max_scale_change):  # 4 points fix a homography
        return None, none, none, int(keep.sum()), len(good)
    return homography, src[keep], dst[keep], int(keep.sum()), len(good)


def verify(query: LocalFeatures, original: LocalFeatures, query_mirrored: LocalFeatures | None = None,
           config: FeatureConfig = DEFAULT_FEATURES, worth: tuple[bool, bool] | None = None) -> Verification:
    """Check ``query`` (and its mirror image, when given) against ``original``; of the
    accepted homographies, the one with more inliers wins. Each orientation is matched in
    full only when it passes the first check (:func:`worth_matching`; ``worth``: its
    answers for the query and its mirror image, made already by :func:`worth_matching_each`)."""
    best, most_matches = NOT_VERIFIED, 0
    for flipped, features in ((False, query), (True, query_mirrored)):
        if features is None:
            continue
        if not (worth[flipped] if worth is not None else
                worth_matching(features.descriptors, original.descriptors, config)):
            continue
        homography, src, dst, inliers, matches = fit_homography(
            features.points, features.descriptors, original.points, original.descriptors,
            config.ransac_pixels / original.scale, config.ratio, config.min_matches, config.max_scale_change)
        most_matches = max(most_matches, matches)
        if homography is None or (best.accepted and best.inliers >= inliers):
            continue
        width, height = features.size
        if flipped:  # the box is given in the query's own frame
            src = np.column_stack([width - 1 - src[:, 0], src[:, 1]])
        (x0, y0), (x1, y1) = np.floor(src.min(axis=0)), np.ceil(src.max(axis=0)) + 1
        box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1)))
        ow, oh = original.size
        (ox0, oy0), (ox1, oy1) = np.clip(dst.min(axis=0), 0, (ow, oh)), np.clip(dst.max(axis=0), 0, (ow, oh))
        share = float((ox1 - ox0) * (oy1 - oy0) / (ow * oh))
        # The inliers' boxes must agree in size as the homography's scale limit allows: a
        # projective fit can squeeze a large part of the query onto a spot of the
        # original (118 inliers onto 0.2% of it, a false match) while its linear part
        # looks plausible. Rejecting more fits only lowers inlier counts, so a tail
        # measured without this rule stays a cautious bound.
        query_area = max(1.0, float((box[2] - box[0]) * (box[3] - box[1])))
        original_area = max(1.0, float((ox1 - ox0) * (oy1 - oy0)))
        if not 1 / config.max_scale_change**2 <= query_area / original_area <= config.max_scale_change**2:
            continue
        best = Verification(inliers, matches, flipped, homography, box, share, src)
    return best if best.accepted else Verification(0, most_matches, False, None, None, 0.0)
