"""Hash inversions (ARIA Eq. 9) of test photos for the report: for each photo and each
learned hasher, the image found from flat grey whose hash equals the photo's exactly.
ARIA's observation: a standard model's inversions are high-frequency noise, a robust
model's recall shapes of the original.

    python -m robusthash.evaluation.inversions --corpus corpus --out results/adversarial/inversions.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from ..files import evenly_spaced
from ..synth.corpus import Corpus
from .adversarial_report import MAX_SIDE
from .segments_report import reduced

CELL = 192


def main(argv: list[str] | None = None) -> None:
    import torch

    from ..attacks import adversarial as adv

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--methods", default="cmaa,aria")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    listed = Corpus(args.corpus).test()
    photos = [reduced(Image.open(p), MAX_SIDE) for p in evenly_spaced(listed, args.photos)]
    methods = args.methods.split(",")
    sheet = Image.new("RGB", (CELL * (1 + len(methods)), (CELL + 16) * len(photos) + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(["test photo", *methods]):
        draw.text((column * CELL + 4, 2), title, fill="black")
    record = []
    for row, photo in enumerate(photos):
        top = 16 + row * (CELL + 16)
        sheet.paste(photo.resize((CELL, CELL)), (0, top))
        for column, method in enumerate(methods, start=1):
            fingerprint = adv.shipped_fingerprint(None, method)
            guess, steps = adv.invert(fingerprint, adv.to_tensor(photo), steps=args.steps)
            with torch.no_grad():
                off = int((adv.median_signs(fingerprint(guess)) != adv.median_signs(
                    fingerprint(adv.to_tensor(photo)))).sum())
            sheet.paste(adv.to_image(guess).resize((CELL, CELL), Image.Resampling.NEAREST), (column * CELL, top))
            draw.text((column * CELL + 4, top + CELL + 1), f"{steps} steps, {off} bits off", fill="black")
            record.append({"photo": row, "method": method, "steps": steps, "bits_off": off})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}; " + ", ".join(f"{r['method']} {r['steps']} steps/{r['bits_off']} off" for r in record))


if __name__ == "__main__":
    main()
