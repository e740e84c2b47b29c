"""The one way an image enters the database: read → digest → decode once → hash with
every method → admit → :class:`~robusthash.db.store.NewImage`.

``db add`` (in this process or on a process pool), a Dask cluster's workers
(:func:`ingest_batch`) and the service's uploads (:meth:`ReferenceDB.add_examined`) all
go through :func:`examine` and :func:`admit`, so an image registered by any of them is
stored alike: same digest, size, hashes, refusals and reasons.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from ..compare.features import KIND, VERSION, FeatureConfig, LocalFeatures, local_features, region_features
from ..hashing import BaseHasher, Hash, MultiHash
from ..hashing.base import DecodedImage, DecodeSpec, shared_hasher
from ..imaging import (PART_PIXELS, content_box, cut_out, fraction_box, half_boxes, halves, montage_cut, picture_quad,
                       straightened)
from ..information import DEFAULT_RULE, Information, InformationRule, information
from ..io import DEFAULT_LIMITS, ImageError, ImageSource, LoadLimits, header_size, read_bytes
from .store import NewImage


@dataclass(frozen=True)
class Admission:
    """What the database refuses to register and to match.

    information: images with too little in them to be identified (flat, tiny, noise:
      :mod:`robusthash.information`) are refused by every method; None accepts any image.
    min_quality: hashes whose quality is below this are neither registered nor matched
      (PDQ's quality; Meta's guidance is 50). None: each method's own floor
      (``BaseHasher.min_quality``); 0: no floor.
    """

    information: InformationRule | None = DEFAULT_RULE
    min_quality: int | None = None


DEFAULT_ADMISSION = Admission()
# The decoding the information rule measures: small, so JPEGs are drafted, and in colour.
INFORMATION_DECODE = DecodeSpec(128, "RGB")
# The decodings local features are found on (grey; a registered image's reduced to 384
# px, a query's to 768: FeatureConfig): JPEGs drafted.
FEATURES_DECODE = DecodeSpec(384, "L")
QUERY_FEATURES_DECODE = DecodeSpec(768, "L")


@dataclass(frozen=True)
class Examined:
    """One input as the database takes it: each method's hash, and how much is in it."""

    hashes: dict[str, Hash | MultiHash]
    information: Information
    # Per method, the other hashes a query is also searched with (BaseHasher.query_variants:
    # PDQ's rotations and flips); empty unless asked for.
    variants: dict[str, list[Hash | MultiHash]] = field(default_factory=dict)
    # The file's SHA-256 (its identity in the store) and its (width, height) from the
    # header; None when the input was pixels, not a file.
    digest: str | None = None
    size: tuple[int, int] | None = None
    # The image's local features, and its mirror image's (a query's only), for pairwise
    # verification (robusthash.compare.features); None unless asked for.
    local_features: tuple[LocalFeatures, LocalFeatures | None] | None = None
    # A query's decodings, kept to look at a region of it again (examine_region); None for an
    # image to register.
    decoded: DecodedImage | None = field(default=None, repr=False)
    # Per method, the hashes of crops of an image to register, stored beside its hash
    # (BaseHasher.reference_crops); empty unless asked for.
    crops: dict[str, list[Hash]] = field(default_factory=dict)
    # Whether ``variants`` were looked for: a query examined as it is given has none until
    # they are asked for (with_variants), which the engine does only when the query as
    # given does not explain it (docs/identify.md, "As given first"). Until then, per
    # method, the variants that came with its hash at no cost (BaseHasher.query_hash).
    with_variants: bool = False
    ready: dict[str, list[Hash | MultiHash]] = field(default_factory=dict)


def examine(image: ImageSource | DecodedImage, hashers: Sequence[BaseHasher], limits: LoadLimits = DEFAULT_LIMITS,
            name: str | None = None, rule: InformationRule = DEFAULT_RULE, variants: bool = False,
            features: FeatureConfig | None = None, digest: str | None = None, crops: bool = False,
            query: bool = False) -> Examined:
    """Read ``image`` once, hash it with each of ``hashers`` (each decoding it as it would on
    its own) and measure its information; ``query``: it is a query (its decodings are
    kept, its local features are a query's, with its mirror image's too); ``variants``:
    a query with each hasher's query variants (:func:`with_variants`); ``features``: also
    its local features; ``digest``: the SHA-256 of ``image``'s bytes where the caller has
    it already; ``crops``: also the hashes of crops each hasher stores for an image to
    register. Raises :class:`~robusthash.io.ImageError`."""
    # A caller that decodes the image again afterwards (the service's thumbnails) passes
    # its DecodedImage, so the file is decoded once for all of it.
    decoded = image if isinstance(image, DecodedImage) else DecodedImage(image, limits, name)
    data = decoded.source if isinstance(decoded.source, bytes) else None
    size = header_size(data) if data is not None else None
    info = information(decoded.decoded(INFORMATION_DECODE), size=size, rule=rule)
    query = query or variants
    ready: dict[str, list[Hash | MultiHash]] = {}
    if query:
        found = {h.name: h.query_hash(decoded.for_hasher(h)) for h in hashers}
        hashes = {name: value for name, (value, _) in found.items()}
        ready = {name: more for name, (_, more) in found.items() if more}
    else:
        hashes = {h.name: h.hash_pil(decoded.for_hasher(h)) for h in hashers}
    cropped = {h.name: h.reference_crops(decoded.for_hasher(h)) for h in hashers if crops and h.reference_crop_count}
    if digest is None and data is not None:
        digest = file_digest(data)
    local = None
    if features is not None:
        if query:
            grey = decoded.decoded(QUERY_FEATURES_DECODE)
            local = (local_features(grey, features, query=True), local_features(grey, features, True, query=True))
        else:
            local = (local_features(decoded.decoded(FEATURES_DECODE), features), None)
    examined = Examined(hashes, info, {}, digest, size, local, decoded if query else None, cropped, False, ready)
    return with_variants(examined, hashers) if variants else examined


def with_variants(examined: Examined, hashers: Sequence[BaseHasher]) -> Examined:
    """A query examined as it was given, with each of ``hashers``' query variants added
    (those that came with its hash, each method's :meth:`query_variants`, and
    :func:`picture_variants`), as :func:`examine` with ``variants`` gives them."""
    if examined.with_variants:
        return examined
    if examined.decoded is None:
        raise ValueError("only a query's examination keeps its pixels to look for its variants")
    extra: dict[str, list[Hash | MultiHash]] = {}
    for h in hashers:
        more = examined.ready.get(h.name, []) + h.query_variants(examined.decoded.for_hasher(h))
        if more:
            extra[h.name] = more
    for name, more in picture_variants(examined.decoded, hashers).items():
        extra[name] = extra.get(name, []) + more
    return replace(examined, variants=extra, with_variants=True, ready={})


# The decoding a query's picture is looked for on (picture_quad, content_box): both look
# at a copy of 256 px, so a JPEG is drafted to at least that.
PICTURE_DECODE = DecodeSpec(256, "RGB")


def picture_variants(decoded: DecodedImage, hashers: Sequence[BaseHasher]) -> dict[str, list[Hash]]:
    """A query whose picture is only part of it is also searched with that picture alone:
    each single-hash method's hash and query variants of it, labelled with how it was
    found. ``picture straightened``: a picture turned or in perspective on a plain ground
    (:func:`~robusthash.imaging.picture_quad`: a rotation with fill, a print on a scanner's
    bed), mapped upright. ``picture cut out``: a picture among surroundings of mostly one
    colour that hold text or icons (:func:`~robusthash.imaging.content_box`: a
    screenshot, a caption). About 1-2 ms a query to look."""
    small = decoded.decoded(PICTURE_DECODE)
    views: list[tuple[str, Callable[[Image.Image], Image.Image]]] = []
    # Like a half, the picture is taken at most PART_PIXELS large: a copy of most of a
    # 50 MP upload would double what its query holds.
    corners = picture_quad(small)
    if corners is not None:
        views.append(("picture straightened", lambda im: straightened(im, corners, PART_PIXELS)))
    box = content_box(small)
    if box is not None:
        views.append(("picture cut out", lambda im: cut_out(im, fraction_box(im.size, box), PART_PIXELS)))
    out: dict[str, list[Hash]] = {}
    for hasher in hashers:
        if hasher.multi:  # several parts per image: they find the picture among their parts
            continue
        for label, view in views:
            value, more = hasher.query_hashes(view(decoded.for_hasher(hasher)))
            out.setdefault(hasher.name, []).extend(
                replace(v, extra={**v.extra, "variant": ", ".join([label, *([v.extra["variant"]] if "variant" in v.extra
                                                                             else [])])})
                for v in (value, *more) if isinstance(v, Hash))
    return out


@dataclass(frozen=True)
class ExaminedRegion:
    """A region of an examined query looked at again: ``box`` (x0, y0, x1, y1) in the
    pixels of the query's local features, each method's hash of it, and its local
    features and its mirror image's, in the region's own pixels (None unless asked for)."""

    box: tuple[int, int, int, int]
    hashes: dict[str, Hash | MultiHash]
    local_features: tuple[LocalFeatures, LocalFeatures] | None


def examine_region(examined: Examined, hashers: Sequence[BaseHasher], box: tuple[int, int, int, int],
                   features: FeatureConfig | None = None) -> ExaminedRegion:
    """A region of a query examined again: each of ``hashers``' hash of it, cut from the
    image as that hasher decodes it, and with ``features`` its local features."""
    if examined.decoded is None:
        raise ValueError("only a query's examination keeps its pixels to look at a region again")
    grey = examined.decoded.decoded(QUERY_FEATURES_DECODE)
    share = (box[0] / grey.width, box[1] / grey.height, box[2] / grey.width, box[3] / grey.height)
    hashes = {}
    for hasher in hashers:
        im = examined.decoded.for_hasher(hasher)
        hashes[hasher.name] = hasher.hash_pil(cut_out(im, fraction_box(im.size, share), PART_PIXELS))
    local = region_features(grey, box, features) if features is not None else None
    return ExaminedRegion(box, hashes, local)


def examine_negative(examined: Examined, hashers: Sequence[BaseHasher], features: FeatureConfig) -> ExaminedRegion:
    """The query's negative (colours inverted) examined as a region over the whole query:
    ``hashers``' hashes of it and its local features. ORB's descriptors of a negative do
    not match the original's (each comparison of two pixels is reversed, and the
    keypoint's orientation turned half a turn), nor do the learned hashes; the negative of
    a negative is the original's copy again."""
    from PIL import ImageOps

    if examined.decoded is None:
        raise ValueError("only a query's examination keeps its pixels to look at its negative")
    grey = examined.decoded.decoded(QUERY_FEATURES_DECODE)

    def negative(im: Image.Image) -> Image.Image:
        part = cut_out(im, (0, 0, *im.size), PART_PIXELS)
        return ImageOps.invert(part if part.mode in ("L", "RGB") else part.convert("RGB"))

    hashes = {h.name: h.hash_pil(negative(examined.decoded.for_hasher(h))) for h in hashers}
    return ExaminedRegion((0, 0, *grey.size), hashes, region_features(negative(grey), (0, 0, *grey.size), features))


def examine_halves(examined: Examined, hashers: Sequence[BaseHasher]) -> list[ExaminedRegion]:
    """The two halves of an examined query, and its two parts cut where two pictures side
    by side meet if that is clear and not the middle (:func:`~robusthash.imaging.halves`,
    :func:`~robusthash.imaging.montage_cut`), each with its box in the pixels of the
    query's local features and ``hashers``' hashes of it (no local features: a part's
    own are found where needed, :func:`examine_region`), whose nearest references are
    candidates for a montage's parts."""
    if examined.decoded is None:
        raise ValueError("only a query's examination keeps its pixels to look at its halves")
    # The middle's halves always: a flat stretch of a single picture (a sky) can pass for
    # a gutter, and a cut there alone lost 3 crops and rotations the middle's halves had
    # found (seen in the test report's per-query diff; keeping both only adds candidates).
    cuts = [0.5]
    at = montage_cut(examined.decoded.decoded(PICTURE_DECODE))
    if abs(at - 0.5) > 0.02:
        cuts.append(at)
    hashes = {h.name: [h.hash_pil(part) for cut in cuts
                       for part in halves(examined.decoded.for_hasher(h), PART_PIXELS, cut)] for h in hashers}
    size = examined.decoded.decoded(QUERY_FEATURES_DECODE).size
    boxes = [box for cut in cuts for box in half_boxes(size, cut)]
    return [ExaminedRegion(box, {name: values[i] for name, values in hashes.items()}, None)
            for i, box in enumerate(boxes)]


@dataclass(frozen=True)
class Admitted:
    """An image to register, and the methods left out of it, with why."""

    image: NewImage
    left_out: list[str]


def admit(examined: Examined, source: str, metadata: dict[str, Any], admission: Admission,
          hashers: dict[str, BaseHasher]) -> Admitted | str:
    """The image to register, or why it is refused: too little information in it (unless
    allowed), or no method's hash strong enough. Weak hashes are left out, with why."""
    if examined.digest is None:
        raise ValueError(f"{source}: only a file (its bytes) can be registered, not decoded pixels")
    if admission.information is not None and not examined.information.informative:
        return f"{source}: not registered, it cannot be identified: {examined.information.reason}"
    weak = {m: why for m, value in examined.hashes.items()
            if (why := hashers[m].weakness(value, admission.min_quality))}
    kept = {m: v for m, v in examined.hashes.items() if m not in weak}
    if not kept:
        return f"{source}: not registered: {'; '.join(weak.values())}"
    width, height = examined.size or (None, None)
    qualities = {key: value.extra["quality"] for m, value in kept.items() if isinstance(value, Hash)
                 and "quality" in value.extra for key in stored_form({m: value})}
    stored_features = {(KIND, VERSION): examined.local_features[0].to_bytes()} if examined.local_features else {}
    image = NewImage(examined.digest, source, metadata, width, height, stored_form(kept, examined.crops), qualities,
                     stored_features)
    return Admitted(image, [f"{source}: registered without {m}: {why}" for m, why in weak.items()])


def read_file(path: Path, limits: LoadLimits) -> bytes | str:
    """A file's bytes, or why it cannot be read."""
    try:
        return read_bytes(path, limits)
    except (ImageError, OSError) as exc:
        return failure(path, exc)


def file_digest(data: bytes) -> str:
    """The SHA-256 an image is registered, and found again, by."""
    return hashlib.sha256(data).hexdigest()


def ingest(data: bytes, source: str, methods: Sequence[str], limits: LoadLimits, metadata: dict[str, Any],
           admission: Admission = DEFAULT_ADMISSION, features: FeatureConfig | None = None,
           digest: str | None = None) -> Admitted | str:
    """One file's bytes, digested (unless ``digest`` is given), sized, decoded, hashed by
    every method (and its local features found, with ``features``), and admitted; or why not."""
    hashers = {m: shared_hasher(m) for m in methods}
    try:
        examined = examine(data, list(hashers.values()), limits, source, admission.information or DEFAULT_RULE,
                           features=features, digest=digest, crops=True)
    except (ImageError, OSError) as exc:
        return failure(source, exc)
    return admit(examined, source, metadata, admission, hashers)


def ingest_batch(encoded: Sequence[tuple[str, bytes, str]], methods: Sequence[str], limits: LoadLimits,
                 metadata: dict[str, Any], admission: Admission = DEFAULT_ADMISSION,
                 features: FeatureConfig | None = None) -> list[tuple[str, Admitted | str]]:
    """A task of :meth:`ReferenceDB.add` on a worker: (source, file bytes, their digest) →
    (source, :class:`Admitted` or why it failed). A bad file fails alone; the task goes on."""
    return [(source, ingest(data, source, methods, limits, metadata, admission, features, digest))
            for source, data, digest in encoded]


def failure(source: str | Path, exc: Exception) -> str:
    return str(exc) if isinstance(exc, ImageError) else f"{source}: {exc}"


def segments(value: Hash | MultiHash) -> tuple[Hash, ...]:
    return value.hashes if isinstance(value, MultiHash) else (value,)


CROPS = ":crops"


def crops_of(method: str) -> str:
    """The name the crops stored beside a method's hashes are kept under (their own rows
    and index: BaseHasher.reference_crops)."""
    return f"{method}{CROPS}"


def stored_form(hashes: dict[str, Hash | MultiHash],
                crops: dict[str, list[Hash]] | None = None) -> dict[tuple[str, str, int], bytes]:
    """(method, version, segment) → packed bits, as the store keeps them: each method's
    hash or parts, and under :func:`crops_of` it the crops stored beside its hash."""
    stored = {(method, value.version, segment): h.data
              for method, value in hashes.items() for segment, h in enumerate(segments(value))}
    for method, hashes_of_crops in (crops or {}).items():
        if method in hashes:
            stored |= {(crops_of(method), h.version, segment): h.data for segment, h in enumerate(hashes_of_crops)}
    return stored


__all__ = ["Admission", "Admitted", "CROPS", "DEFAULT_ADMISSION", "Examined", "admit", "crops_of", "examine", "file_digest",
           "ingest", "ingest_batch", "read_file"]
