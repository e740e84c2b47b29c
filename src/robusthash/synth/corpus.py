"""The corpus (``../shared/corpus/build_corpus.py``) and its fixed train/test split.

Photos are split by the corpus itself: ``train.txt`` and ``test.txt`` list them (paths
relative to the corpus folder), ``extra_train.txt`` (built with ``--extra``) lists more
photos for training only. The RGBA cut-outs in ``objects/`` are not split by the corpus;
:func:`object_split` fixes their split by file name. Training never reads the test
split (:func:`refuse_test_split`); reported results come from it.

A candidate model is chosen on photos it did not train on and that no report uses: the
**validation share**, a fifth of the extra photos fixed by file name
(:func:`validation_share`), listed in ``validation.txt`` by
``python -m robusthash.synth.corpus validation CORPUS``. Once that list exists, training
never reads its photos, whatever list names them (``models.train.read_training_list``).

    >>> corpus = Corpus("corpus")
    >>> corpus.train()[:2], len(corpus.objects("test"))
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..files import read_image_list

TRAIN_LIST = "train.txt"
TEST_LIST = "test.txt"
EXTRA_TRAIN_LIST = "extra_train.txt"
VALIDATION_LIST = "validation.txt"
OBJECTS = "objects"
SPLITS = ("train", "test")


def object_split(path: Path | str) -> str:
    """"train" or "test" for a corpus cut-out, fixed by its file name (the corpus splits
    only its photos): about 70% train. ObjectNet trains on train cut-outs only; the
    reported montage evaluation pastes test cut-outs into test photos."""
    digest = hashlib.sha256(Path(path).name.encode()).digest()
    return "train" if digest[0] % 10 < 7 else "test"


def split_objects(folder: Path, split: str) -> list[Path]:
    """The cut-outs (``*.png``) in ``folder`` of ``split`` ("train" or "test"), in path order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return [p for p in sorted(Path(folder).glob("*.png")) if object_split(p) == split]


def refuse_test_split(path: Path) -> Path:
    """``path`` unless it is the corpus's test list or its validation list: reported
    results, and the choice between candidates, must never have been trained on. Every
    training entry point reads its photo list through this."""
    if Path(path).name == TEST_LIST:
        raise ValueError(f"{path} is the test split; train on {TRAIN_LIST}")
    if Path(path).name == VALIDATION_LIST:
        raise ValueError(f"{path} is the validation share, held out of training to choose between models")
    return Path(path)


def validation_share(path: Path | str) -> bool:
    """Whether an extra photo (``extra_train.txt``) is held out of training to choose
    between candidate models: one in five, fixed by its file name. The shipped models
    before 2026-12-07 trained on the train split alone, so they never saw these either."""
    return hashlib.sha256(Path(path).name.encode()).digest()[0] % 5 == 0


@dataclass(frozen=True)
class Corpus:
    """A corpus folder: its photo lists and its cut-outs, by split."""

    root: Path
    train_list: Path = field(init=False, repr=False, compare=False)
    test_list: Path = field(init=False, repr=False, compare=False)
    extra_train_list: Path = field(init=False, repr=False, compare=False)  # training only, may be absent
    validation_list: Path = field(init=False, repr=False, compare=False)  # written by write_validation_list
    objects_folder: Path = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        root = Path(self.root)
        paths = {"root": root, "train_list": root / TRAIN_LIST, "test_list": root / TEST_LIST,
                 "extra_train_list": root / EXTRA_TRAIN_LIST, "validation_list": root / VALIDATION_LIST,
                 "objects_folder": root / OBJECTS}
        for name, path in paths.items():
            object.__setattr__(self, name, path)

    def train(self) -> list[Path]:
        """The train photos, in list order (sorted by source)."""
        return read_image_list(self.train_list)

    def test(self) -> list[Path]:
        """The test photos, in list order (sorted by source); for reports, never training."""
        return read_image_list(self.test_list)

    def extra_train(self) -> list[Path]:
        """The extra training-only photos (``--extra``); none when the corpus was built without."""
        return read_image_list(self.extra_train_list) if self.extra_train_list.is_file() else []

    def validation(self) -> list[Path]:
        """The validation share (:func:`validation_share`) as listed; none before the list is written."""
        return read_image_list(self.validation_list) if self.validation_list.is_file() else []

    def write_validation_list(self) -> Path:
        """Write ``validation.txt``: the extra photos of the validation share, in list
        order. Raises ValueError when the corpus has no extra photos (built without
        ``--extra``)."""
        extra = self.extra_train()
        if not extra:
            raise ValueError(f"{self.extra_train_list}: no extra photos; build the corpus with --extra")
        chosen = [p.relative_to(self.root).as_posix() for p in extra if validation_share(p)]
        self.validation_list.write_text("".join(f"{line}\n" for line in chosen), encoding="utf-8")
        return self.validation_list

    def objects(self, split: str) -> list[Path]:
        """The cut-outs of ``split`` (:func:`object_split`), in path order."""
        return split_objects(self.objects_folder, split)

    def artworks(self) -> dict[Path, str]:
        """Each photo → what makes two corpus files the same picture (``manifest.csv``'s
        source file; a Plasma wallpaper ships each design at several sizes and crops, and
        a dark variant, in one folder: those are one picture; and :data:`SHARED_CONTENT`).
        Pairs of one artwork are not distinct images."""
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            return {}
        with open(manifest, newline="", encoding="utf-8") as f:
            keys = {Path(self.root) / row["file"]: artwork_key(row["original_path"]) for row in csv.DictReader(f)}
        shared = {name: f"shared:{group[0]}" for group in SHARED_CONTENT for name in group}
        return {path: shared.get(path.name, key) for path, key in keys.items()}


# Corpus files that show one picture under different source files: a drawing recoloured,
# annotated, or pasted into a larger scene, one planet photo with and without a frame.
# Found by verifying every pair of the train split's GCompris drawings against each
# other (20 or more inliers), and each pair checked by eye (a pair of star fields with
# 41 inliers stays distinct: it cannot be told by eye); the identification
# engine's calibration (evaluation/identify_calibration.py) counts them as copies, not
# distinct images.
SHARED_CONTENT: tuple[tuple[str, ...], ...] = (
    ("gcompris__f542449fd1.jpg", "gcompris__ff146d9b14.jpg", "gcompris__190ad16958.jpg",
     "gcompris__03f5a57c6c.jpg"),  # a paint pot in four colours
    ("gcompris__9f2b57b54f.jpg", "gcompris__f7ee8fb050.jpg", "gcompris__26adc75f60.jpg"),  # animals, a camel, a giraffe
    ("gcompris__e389595443.jpg", "gcompris__ff9ced09a4.jpg"),  # a face, with and without marks drawn on it
    ("gcompris__a4df69792c.jpg", "gcompris__93b8092bd2.jpg"),  # Mars, with and without a frame
    ("gcompris__2c5af23566.jpg", "gcompris__4c758995de.jpg"),  # two children, recoloured
    ("gcompris__8d786efc37.jpg", "gcompris__b8a9af0deb.jpg"),  # father and son, recoloured
    # Found among the calibration's strongest distinct pairs: one manuscript painting,
    # photographed on its page and cut out on black.
    ("skyart__f6559c9701.jpg", "skyart__1a8822cf01.jpg"),  # Ophiuchus on the scorpion
    # Cassiopeia enthroned, on its page and cut out, recoloured and turned: 37 and 20
    # inliers in the calibration of 2026-12-07, two of the three distinct pairs that set
    # its sparse floor at 20-37 inliers (the third: two star fields, which stay distinct).
    ("skyart__fcc6f66af3.jpg", "skyart__b4772f3f62.jpg"),
    # One drawing mirrored, 20+ inliers in a calibration on 250 train queries (2026-12-07):
    ("skyart__61ef8e993f.jpg", "skyart__eaf2d38008.jpg"),  # al-Sufi's fish of Pisces, A and B
    ("skyart__1acb77f8a4.jpg", "skyart__e2b29ab10d.jpg"),  # a dolphin, in two sky cultures
)


# The Leiden Aratea's paintings come twice in Stellarium's sky culture: cut out and
# recoloured as constellation art (``per_Aratea_bg.jpg``) and photographed on the page
# (``descr_pics/aratea_small_per.jpg``); each pair was one painting wherever looked at
# (Perseus, 57 inliers between distinct files in a calibration; Leo, Aquarius, the
# Pleiades, Lyra by eye). One name differs between the two forms.
_ARATEA = re.compile(r"/greek_leidenAratea/(?:descr_pics/aratea_small_([A-Za-z]+)|([A-Za-z]+)_Aratea(?:_b)?_bg)\.jpg$")
_ARATEA_ALIASES = {"plejaden": "plei"}


def artwork_key(original_path: str) -> str:
    """The artwork of a corpus file's source path (see :meth:`Corpus.artworks`)."""
    match = re.search(r"/wallpapers/([^/]+)/contents/", original_path)
    if match:
        return f"wallpaper:{match.group(1)}"
    match = _ARATEA.search(original_path)
    if match:
        code = (match.group(1) or match.group(2)).lower()
        return f"aratea:{_ARATEA_ALIASES.get(code, code)}"
    return original_path


__all__ = ["Corpus", "SHARED_CONTENT", "artwork_key", "object_split", "split_objects", "refuse_test_split",
           "validation_share", "TRAIN_LIST", "TEST_LIST", "EXTRA_TRAIN_LIST", "VALIDATION_LIST"]


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write a corpus's validation list (validation.txt): the extra "
                                                 "photos held out of training to choose between models.")
    parser.add_argument("command", choices=("validation",))
    parser.add_argument("corpus", type=Path, help="corpus folder, built with --extra")
    args = parser.parse_args(argv)
    corpus = Corpus(args.corpus)
    path = corpus.write_validation_list()
    print(f"wrote {path}: {len(corpus.validation())} of {len(corpus.extra_train())} extra photos")


if __name__ == "__main__":
    main()
