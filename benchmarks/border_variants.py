"""What searching a query also with its uniform borders trimmed buys (issue 23, query
normalisation), through ReferenceDB.query as `db query` runs it, on train photos.

    .venv/bin/python benchmarks/border_variants.py --corpus corpus [--photos 200] [--methods forbild,pdq,cmaa]

``--photos`` train photos are registered; as many other train photos are kept out.
Queries: each registered photo padded (the PAD suite: 5, 10, 20% black, 10% white,
10% grey), letterboxed (black bars to 16:9 or 9:16 around it), framed unevenly (a
border on two sides only), framed twice (letterboxed on a white page; a cream mat in a
dark frame; off-centre on a black slide in a grey page: each frame's borders trimmed in
turn, ``imaging.nested_borders``), and three attacks with no border, so the variant's effect
where there is nothing to trim shows as well; the kept-out photos padded and plain,
for false matches. Each query is run twice, with the trimmed variant and without it
(with ``--one-frame``: with every frame trimmed in turn, and with the outermost only),
and the table gives, per method and query kind, recall@1 (the registered original is
the first answer and matched), and false matches per query.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PIL import Image

from robusthash.attacks import parse
from robusthash.attacks.transforms import pad
from robusthash.db import ReferenceDB
from robusthash.hashing import base
from robusthash.hashing.base import BaseHasher
from robusthash.io import load_pil
from variant_report import arguments, both_ways, print_table, tally

PADDED = ("PAD(0.05)", "PAD(0.1)", "PAD(0.2)", "PAD(0.1,white)", "PAD(0.1,grey)")
NO_BORDER = ("JC(50)", "RS(0.5)", "CROP(0.7)")


def letterboxed(im: Image.Image) -> Image.Image:
    """Black bars around ``im`` to 16:9 (a portrait picture: 9:16), as a video frame or a
    phone screenshot shows it."""
    w, h = im.size
    width, height = (max(w, round(h * 16 / 9)), h) if w >= h else (w, max(h, round(w * 16 / 9)))
    if (width, height) == (w, h):
        width, height = (w, round(w * 9 / 16) + h) if w >= h else (w + round(h * 9 / 16), h)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(im, ((width - w) // 2, (height - h) // 2))
    return canvas


def framed_two_sides(im: Image.Image) -> Image.Image:
    """A white border on the left and the bottom only (a scan, a caption strip)."""
    w, h = im.size
    canvas = Image.new("RGB", (w + w // 8, h + h // 6), (255, 255, 255))
    canvas.paste(im, (w // 8, 0))
    return canvas


def off_centre(im: Image.Image) -> Image.Image:
    """``im`` at the left of a black slide a third wider than it (a picture moved within
    its frame, one side filled)."""
    canvas = Image.new("RGB", (round(im.width * 4 / 3), im.height), (0, 0, 0))
    canvas.paste(im.convert("RGB"), (0, 0))
    return canvas


def framed_twice(im: Image.Image) -> list[Image.Image]:
    """Two frames of borders, one inside the other."""
    return [pad(letterboxed(im), 0.08, (255, 255, 255)),
            pad(pad(im, 0.1, (250, 240, 200)), 0.05, (40, 30, 20)),
            pad(off_centre(im), 0.06, (128, 128, 128))]


def queries_of(photo: Path, seed: int) -> dict[str, Image.Image]:
    im = load_pil(photo)
    made = {"pad": [parse(spec)(im, seed=seed) for spec in PADDED],
            "letterbox": [letterboxed(im)], "two sides": [framed_two_sides(im)],
            "framed twice": framed_twice(im),
            "no border": [parse(spec)(im, seed=seed) for spec in NO_BORDER]}
    return made


def main() -> None:
    def one_frame_option(parser) -> None:
        parser.add_argument("--one-frame", action="store_true",
                            help="compare every frame trimmed in turn with the outermost frame only")

    args, methods, registered, kept_out = arguments(__doc__, 200, "forbild,pdq,cmaa", one_frame_option)
    counts: dict = {}
    trim_variant = BaseHasher.border_trimmed
    every_frame = base.nested_borders
    with tempfile.TemporaryDirectory() as tmp:
        ref = ReferenceDB(Path(tmp) / "refs.sqlite", methods=methods)
        ref.add(registered)
        sources = {str(p) for p in registered}
        started = time.perf_counter()

        def queries(photo: Path, seed: int, registered: bool) -> dict[str, list]:
            return {kind: images for kind, images in queries_of(photo, seed).items()
                    if registered or kind in ("pad", "no border")}

        def switch(on: bool) -> None:
            if args.one_frame:
                base.nested_borders = every_frame if on else (lambda im: every_frame(im, most=1))
            else:
                BaseHasher.border_trimmed = trim_variant if on else (lambda self, im: [])

        for label, photo, kind, query, on in both_ways(registered, kept_out, queries, switch):
            for result in ref.query(query, methods):
                tally(counts, result, f"{label}: {kind}", on, photo, label == "registered")
                assert all(m.image.source in sources for m in result.matches)
        print(f"{len(registered)} registered train photos, {len(kept_out)} kept out; "
              f"{time.perf_counter() - started:.0f} s\n")
    print_table(counts, "every frame trimmed" if args.one_frame else "the trimmed variant", args.out)


if __name__ == "__main__":
    main()
