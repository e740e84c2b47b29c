"""Bring a query into its original's frame, so that only edits are left to compare.

Features of both images (reduced to ``feature_side`` pixels, grey), Lowe's ratio test,
then a RANSAC homography with OpenCV. ORB by default (faster than SIFT and, on our
pairs, as good; SIFT can be added as a fallback). Neither descriptor is mirror-invariant, so when
too few matches agree the mirrored query is tried as well: a flip is one of the
non-editorial changes (Table 1's FL) that must be undone.

The query is then resampled onto a ``size`` × ``size`` grid laid over the original
(:func:`sampling_grid`), after an antialiasing reduction when the query is finer than
that grid. Grid cells the query does not cover (it was cropped) take the original's
pixels, so cropping never reads as an edit. When no homography is found (a different
picture, or one too degraded for features) the query is simply stretched onto the
original's frame, which is right for the pairs that kept their geometry.

The grid is computed once in numpy; :func:`aligned_pair` samples it with OpenCV and
``robusthash.models.comparator`` samples the same grid with ``torch.grid_sample``, so
an attack through the alignment sees exactly what the comparator sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ..io import to_rgb
from .features import full_size_points, grey_copy, plausible


@dataclass(frozen=True)
class AlignConfig:
    feature_side: int = 384  # longer side of the grey copies the detectors see
    max_features: int = 1000
    # Tried in turn until one finds a homography ("orb", "sift"). ORB alone: on 40 train
    # pairs under strong attacks it aligned 39 (SIFT 34) and 40 of 40 mirrored copies
    # (SIFT 37), in 16 ms against 54 ms per pair; SIFT after it found nothing more.
    detectors: tuple[str, ...] = ("orb",)
    ransac_pixels: float = 4.0  # reprojection error allowed, in feature_side pixels
    min_inliers: int = 12
    max_scale_change: float = 8.0  # a homography that scales more than this is rejected


@dataclass(frozen=True)
class Alignment:
    """How the query maps onto its original.

    ``homography`` maps pixel coordinates (x, y, 1) of the query, mirrored first when
    ``flipped``, to the original's pixel coordinates; None when no geometry was found
    and the query is stretched onto the original's frame instead."""

    homography: np.ndarray | None
    flipped: bool
    inliers: int
    matches: int

    @property
    def found(self) -> bool:
        return self.homography is not None


@dataclass(frozen=True)
class SamplingGrid:
    """Where each cell of the ``size`` × ``size`` grid over the original lies in the
    query, after the query is mirrored (``flipped``) and reduced to ``reduced`` (w, h)."""

    flipped: bool
    reduced: tuple[int, int]
    map_x: np.ndarray  # size × size float32, query pixel coordinates
    map_y: np.ndarray

    @property
    def coverage(self) -> np.ndarray:
        w, h = self.reduced
        return (self.map_x >= -0.5) & (self.map_x <= w - 0.5) & (self.map_y >= -0.5) & (self.map_y <= h - 0.5)


@dataclass(frozen=True)
class AlignedPair:
    original: np.ndarray  # size × size × 3 uint8
    query: np.ndarray  # size × size × 3 uint8: the query in the original's frame
    grid: SamplingGrid  # where the query was sampled (attacks sample it again, in torch)

    @property
    def coverage(self) -> np.ndarray:
        """size × size bool: where the query has pixels."""
        return self.grid.coverage


@dataclass
class _Features:
    grey: np.ndarray  # the reduced grey copy the detector saw
    keypoints: tuple
    descriptors: np.ndarray | None
    scale: float  # reduced / full size

    @property
    def points(self) -> np.ndarray:
        """Keypoints in full-size pixel coordinates."""
        return full_size_points(self.keypoints, self.scale)


@dataclass(frozen=True)
class _Detector:
    name: str
    ratio: float  # Lowe's ratio test
    binary: bool  # Hamming descriptors (else L2)

    def create(self, max_features: int):
        import cv2

        return cv2.ORB_create(max_features) if self.name == "orb" else cv2.SIFT_create(nfeatures=max_features)

    def features(self, detector, grey: np.ndarray, scale: float) -> _Features:
        keypoints, descriptors = detector.detectAndCompute(grey, None)
        return _Features(grey, keypoints, descriptors, scale)

    def mirrored(self, detector, features: _Features) -> _Features:
        """The features of the mirrored copy. SIFT's detection is mirror-equivariant and
        most of its cost, so its keypoints are mirrored (orientation θ → 180° − θ) and only
        described again; ORB is cheap enough to run again."""
        import cv2

        grey = np.ascontiguousarray(features.grey[:, ::-1])
        if self.binary:
            return self.features(detector, grey, features.scale)
        width = grey.shape[1]
        keypoints = tuple(cv2.KeyPoint(width - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response,
                                       k.octave, k.class_id) for k in features.keypoints)
        keypoints, descriptors = detector.compute(grey, keypoints) if keypoints else ((), None)
        return _Features(grey, keypoints, descriptors, features.scale)


DETECTORS = {"orb": _Detector("orb", 0.8, True), "sift": _Detector("sift", 0.75, False)}


def _match(query_features: _Features, original_features: _Features, detector: _Detector,
           config: AlignConfig) -> tuple[np.ndarray | None, int, int]:
    import cv2

    q_points, q_desc = query_features.points, query_features.descriptors
    o_points, o_desc, o_scale = original_features.points, original_features.descriptors, original_features.scale
    if q_desc is None or o_desc is None or len(q_desc) < 2 or len(o_desc) < 2:
        return None, 0, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING if detector.binary else cv2.NORM_L2).knnMatch(q_desc, o_desc, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < detector.ratio * n.distance]
    if len(good) < config.min_inliers:
        return None, 0, len(good)
    src = q_points[[m.queryIdx for m in good]]
    dst = o_points[[m.trainIdx for m in good]]
    # The reprojection tolerance is in feature pixels; the points are in full pixels.
    homography, inlier_mask = cv2.findHomography(src, dst, cv2.RANSAC, config.ransac_pixels / o_scale)
    if homography is None:
        return None, 0, len(good)
    inliers = int(inlier_mask.sum())
    if inliers < config.min_inliers or not plausible(homography, config.max_scale_change):
        return None, inliers, len(good)
    return homography, inliers, len(good)


def estimate(query: Image.Image, original: Image.Image, config: AlignConfig = AlignConfig()) -> Alignment:
    """Find the homography that takes ``query`` onto ``original`` (see the module doc):
    each detector in turn, on the query and then on its mirror image."""
    query_grey, original_grey = grey_copy(query, config.feature_side), grey_copy(original, config.feature_side)
    best_inliers = best_matches = 0
    for name in config.detectors:
        if name not in DETECTORS:
            raise ValueError(f"unknown feature detector {name!r}; known: {', '.join(DETECTORS)}")
        kind = DETECTORS[name]
        detector = kind.create(config.max_features)
        original_features = kind.features(detector, *original_grey)
        query_features = kind.features(detector, *query_grey)
        for flipped in (False, True):
            if flipped:
                query_features = kind.mirrored(detector, query_features)
            homography, inliers, matches = _match(query_features, original_features, kind, config)
            if homography is not None:
                return Alignment(homography, flipped, inliers, matches)
            best_inliers, best_matches = max(best_inliers, inliers), max(best_matches, matches)
    return Alignment(None, False, best_inliers, best_matches)


def stretch_homography(query_size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray:
    """The homography that stretches the query's frame onto the original's, pixel
    centres onto pixel centres (what a resize does)."""
    sx, sy = original_size[0] / query_size[0], original_size[1] / query_size[1]
    return np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])


def sampling_grid(alignment: Alignment, query_size: tuple[int, int], original_size: tuple[int, int],
                  size: int) -> SamplingGrid:
    """The query coordinates of each cell of a ``size`` × ``size`` grid over the original."""
    (qw, qh), (ow, oh) = query_size, original_size
    homography = alignment.homography if alignment.found else stretch_homography(query_size, original_size)
    # Grid cell centres in the original's pixel coordinates.
    u = (np.arange(size) + 0.5) * (ow / size) - 0.5
    v = (np.arange(size) + 0.5) * (oh / size) - 0.5
    gx, gy = np.meshgrid(u, v)
    points = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    back = np.linalg.inv(homography) @ points
    qx, qy = back[0] / back[2], back[1] / back[2]
    # How many query pixels one grid cell spans: reduce the query by that much first, so
    # bilinear sampling does not alias (a 1000 px query onto a 112 px grid).
    cell_area = abs(float(np.linalg.det(np.linalg.inv(homography)[:2, :2]))) * (ow / size) * (oh / size)
    reduction = max(1.0, np.sqrt(cell_area))
    reduced = (max(1, round(qw / reduction)), max(1, round(qh / reduction)))
    sx, sy = reduced[0] / qw, reduced[1] / qh
    map_x = ((qx + 0.5) * sx - 0.5).reshape(size, size).astype(np.float32)
    map_y = ((qy + 0.5) * sy - 0.5).reshape(size, size).astype(np.float32)
    return SamplingGrid(alignment.flipped, reduced, map_x, map_y)


def prepared_query(query: Image.Image, grid: SamplingGrid) -> Image.Image:
    """The query mirrored and reduced as ``grid`` expects it."""
    query = to_rgb(query)
    if grid.flipped:
        query = ImageOps.mirror(query)
    if query.size != grid.reduced:
        query = query.resize(grid.reduced, Image.Resampling.BILINEAR)
    return query


def aligned_pair(query: Image.Image, original: Image.Image, alignment: Alignment, size: int) -> AlignedPair:
    """Original and query on the same ``size`` × ``size`` grid (see the module doc)."""
    import cv2

    original = to_rgb(original)
    grid = sampling_grid(alignment, query.size, original.size, size)
    resized_original = np.asarray(original.resize((size, size), Image.Resampling.BILINEAR))
    warped = cv2.remap(np.asarray(prepared_query(query, grid)), grid.map_x, grid.map_y, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    warped = np.where(grid.coverage[..., None], warped, resized_original)
    return AlignedPair(resized_original, np.ascontiguousarray(warped), grid)


def align(query: Image.Image, original: Image.Image, size: int,
          config: AlignConfig = AlignConfig()) -> tuple[Alignment, AlignedPair]:
    """:func:`estimate`, then :func:`aligned_pair`."""
    alignment = estimate(query, original, config)
    return alignment, aligned_pair(query, original, alignment, size)
