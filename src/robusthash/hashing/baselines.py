"""Baseline hashers wrapped from well-kept libraries, not rewritten.

* ``pdq``: Meta's PDQ through the ``pdqhash`` bindings of the reference C++ code.
  Hex strings are in PDQ's own format (the same as Meta's tools and ThreatExchange).
  It converts the file's own mode as ThreatExchange's reference pipeline
  (``threatexchange.signal_type.pdq.pdq_hasher``) does: alpha dropped, not composited,
  16-bit grey through Pillow's conversion, grey replicated to three channels. Where
  that pipeline hands pdqhash raw values of another mode (palette indices of P images,
  CMYK's four channels, 32-bit integers), Pillow's conversion to RGB is used instead: a
  deliberate difference, since those hashes are not of the picture.
* ``phash``, ``dhash``, ``ahash``, ``whash``, ``crop-resistant``: ``imagehash``.

Each gets the RGB image from our loader, exactly as the library would have got it
from ``PIL.Image.open`` (plus EXIF orientation and our mode rule), so the hashes equal
the library's own for ordinary RGB files.
"""

from __future__ import annotations

from dataclasses import replace

from typing import Any, Callable, ClassVar

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from ..imaging import box_reduced
from ..io import ImageSource
from .base import TRAIN_SPLIT_TAU, BaseHasher, Comparison, load_for
from .value import Hash, MultiHash

IMAGEHASH_VERSION = f"imagehash-{imagehash.__version__}"
# Defaults without a published value come from `benchmarks/default_thresholds.py`:
# the threshold at 1% false positives between distinct images of the corpus train split.
# The reference database recalibrates them per collection.


# The 8 dihedral variants, in pdqhash.compute_dihedral's order (ThreatExchange's
# bridge-1 ... bridge-8 test files).
DIHEDRAL = ("original", "rotate-90", "rotate-180", "rotate-270", "flip-x", "flip-y", "flip-plus-1", "flip-minus-1")


# pdqhash holds about 30 bytes per pixel (float copies of the image); above this many
# pixels the image is first box-reduced by an integer factor to at most REDUCED_SIDE a
# side, as ThreatExchange's C++ tool (pdqio.cpp) downsamples every image above 512.
# PDQ itself box-filters down to 64×64, so the bits barely move (benchmarks/README.md).
# At 2,048 a side a 50 MP upload costs pdq about 0.1 GB, not 0.4 (docs/service.md).
FULL_SIZE_PIXELS = 4_000_000
REDUCED_SIDE = 2048


def pdq_input(im: Image.Image) -> np.ndarray:
    """The (H, W, 3) uint8 array pdqhash is given, by the rule of the module docstring."""
    if im.width * im.height > FULL_SIZE_PIXELS:
        im = box_reduced(im, -(-max(im.size) // REDUCED_SIDE))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


class PdqHasher(BaseHasher):
    name = "pdq"
    bits = 256
    # "+te": the file's own mode converted as ThreatExchange's pipeline does (before, our
    # loader's rule: alpha composited on white, 16-bit scaled; 60 and 118 bits off on
    # ThreatExchange's LA.png and I16.png). "+r2048": reduced above 4 MP to 2,048 a side
    # (before, above 16 MP to 4,096).
    version = f"pdqhash-{pdqhash.__version__}+te+r2048"
    input_mode = "native"
    description = "Meta's PDQ (pdqhash bindings of the reference implementation)"
    # Meta's recommended match threshold for PDQ: Hamming distance ≤ 31 of 256.
    threshold = 31 / 256
    threshold_source = "Meta's recommended PDQ threshold, Hamming ≤ 31"
    # Meta's guidance: hashes of quality below 50 are too unreliable to act on.
    min_quality = 50

    def hash_pil(self, im: Image.Image) -> Hash:
        vector, quality = pdqhash.compute(pdq_input(im))
        # pdqhash returns bit 255 first, so packing in order gives PDQ's own hex format.
        return self.make_hash(vector.astype(bool), quality=int(quality))

    def hash_pil_dihedral(self, im: Image.Image) -> list[Hash]:
        """The hashes of the image's 8 rotations and flips (``DIHEDRAL`` order, the first
        being :meth:`hash_pil`'s), from one DCT, each with ``extra["variant"]``."""
        vectors, quality = pdqhash.compute_dihedral(pdq_input(im))
        return [self.make_hash(np.asarray(v).astype(bool), quality=int(quality), variant=name)
                for v, name in zip(vectors, DIHEDRAL)]

    def hash_dihedral(self, image: ImageSource) -> list[Hash]:
        """:meth:`hash_pil_dihedral` of any loader input."""
        return self.hash_pil_dihedral(load_for(self, image, self.limits))

    def query_hash(self, im: Image.Image) -> tuple[Hash, list[Hash]]:
        """The hash, and as variants the query turned and flipped (PDQ is not invariant
        to either), all from one DCT (as long as the hash alone): the dihedral hashes'
        first is the hash."""
        dihedral = self.hash_pil_dihedral(im)
        first = dihedral[0]
        return replace(first, extra={"quality": first.extra["quality"]}), dihedral[1:]


    def negative_hash(self, value: Hash | MultiHash) -> Hash | None:
        """The complement: a negative's luminance is 255 minus the image's, which negates
        every DCT coefficient PDQ keeps and so flips every bit against the median (the
        same as PDQ of the inverted image on 30 of 30 train photos)."""
        if not isinstance(value, Hash):
            return None
        flipped = bytes(b ^ 0xFF for b in value.data)
        return replace(value, data=flipped, extra={**value.extra, "variant": "negative"})


class ImagehashHasher(BaseHasher):
    """A 64-bit imagehash function as a hasher."""

    function: ClassVar[Callable[[Image.Image], Any]]
    bits = 64
    version = IMAGEHASH_VERSION

    def hash_pil(self, im: Image.Image) -> Hash:
        return self.make_hash(type(self).function(im).hash)


def _imagehash_method(name: str, function: Callable[[Image.Image], Any], description: str, tau_bits: int) -> type:
    """One 64-bit imagehash function as a hasher class; ``tau_bits`` is its default Hamming threshold."""
    attributes = {
        "name": name,
        "function": staticmethod(function),
        "description": description,
        "threshold": tau_bits / 64,
        "threshold_source": TRAIN_SPLIT_TAU,
    }
    return type(f"{name.capitalize()}Hasher", (ImagehashHasher,), attributes)


PhashHasher = _imagehash_method(
    "phash", imagehash.phash, "imagehash.phash: DCT of a 32×32 grey image, 8×8 low frequencies vs their median", 10
)
DhashHasher = _imagehash_method(
    "dhash", imagehash.dhash, "imagehash.dhash: horizontal gradient signs of a 9×8 grey image", 9
)
AhashHasher = _imagehash_method("ahash", imagehash.average_hash, "imagehash.average_hash: 8×8 grey image vs its mean", 2)


def whash(im: Image.Image) -> imagehash.ImageHash:
    """``imagehash.whash(im)`` with its defaults (Haar, 8×8, lowest LL removed), exactly, faster.

    With Haar wavelets on a power-of-two square, removing the lowest LL band subtracts
    the mean, and the level-k LL band is 2^-k times the sums of 2^k × 2^k blocks; so the
    hash is "block sum > median of the 64 block sums", which integer sums decide
    exactly. pywt's floating-point path agrees wherever the two middle sums differ (the
    gap is ≥ 1 grey level, rounding is ~1e-10 of it); when they tie, its rounding
    decides, so that case goes to imagehash itself. Equal to imagehash on 2,600 attacked
    corpus photos (tests check a sample); about 25× faster on a 512×512 photo.
    """
    natural = 2 ** int(np.log2(min(im.size)))
    scale = max(natural, 8)
    grey = np.asarray(im.convert("L").resize((scale, scale), imagehash.ANTIALIAS), dtype=np.int64)
    block = scale // 8
    sums = grey.reshape(8, block, 8, block).sum(axis=(1, 3))
    low, high = np.partition(sums.ravel(), (31, 32))[31:33]
    if low == high:
        return imagehash.whash(im)
    return imagehash.ImageHash(2 * sums > low + high)


WhashHasher = _imagehash_method(
    "whash", whash, "imagehash.whash: Haar wavelet low band of the grey image vs its median", 0
)


class CropResistantHasher(BaseHasher):
    """imagehash's crop-resistant hash: one dhash per bright/dark segment of the image.

    Distance: imagehash's own multi-hash difference (unmatched segments, with the mean
    Hamming distance of the matched ones as tie-breaker) divided by the query's number
    of segments, so 0 means every segment matched exactly and 1 means none matched.
    Decision: imagehash's ``matches`` (at least one segment within 25% of its bits).
    """

    name = "crop-resistant"
    bits = 64
    multi = True
    version = IMAGEHASH_VERSION
    description = "imagehash.crop_resistant_hash: a dhash per segment, matched segment by segment"
    threshold = 1.0
    decision = "≥ 1 segment within 25% of its bits"
    threshold_source = "imagehash's rule: at least one segment within 25% of its bits"
    own_rule = True

    def search_radius(self, threshold: float) -> int:
        return int(self.bits * 0.25)  # imagehash's segment rule, whatever the threshold

    def hash_pil(self, im: Image.Image) -> MultiHash:
        multi = imagehash.crop_resistant_hash(im)
        segments = tuple(self.make_hash(h.hash) for h in multi.segment_hashes)
        return MultiHash(segments, self.name, self.version)

    @staticmethod
    def _to_imagehash(h: MultiHash) -> imagehash.ImageMultiHash:
        return imagehash.ImageMultiHash([imagehash.ImageHash(s.bits.reshape(8, 8)) for s in h.hashes])

    def distance(self, a: MultiHash, b: MultiHash) -> float:
        return (self._to_imagehash(a) - self._to_imagehash(b)) / len(a.hashes)

    def compare(self, a: MultiHash, b: MultiHash, threshold: float | None = None) -> Comparison:
        distance = self.distance(a, b)
        if threshold is None:
            matched = self._to_imagehash(a).matches(self._to_imagehash(b))
            rule = "imagehash: at least one segment within 25% of its bits"
        else:
            matched = distance <= threshold
            rule = f"distance ≤ {threshold:g}"
        matching, _ = self._to_imagehash(a).hash_diff(self._to_imagehash(b))
        return Comparison(distance, None, matched, {"matching_segments": matching, "segments": len(a), "rule": rule})
