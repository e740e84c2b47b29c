"""Every format this Pillow can write, and the hostile cases, through ``robusthash hash``.

Good files give a hash per method; bad ones one clear line naming the file (no
traceback) while the rest of the batch is hashed, and the exit code is 1. Folder scans
take every format Pillow reads here and report the files they leave out.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from robusthash.cli import app
from robusthash.files import classify, iter_image_paths, scan_images

from .conftest import jpeg_bytes, png_header_claiming, sof_patched

METHODS = ("forbild", "pdq", "blockhash")
WRITE_MODES = ("RGB", "L", "1", "RGBA", "P")


def writable_formats() -> list[tuple[str, str]]:
    """(suffix, format) for every suffix Pillow registers for a format it can save."""
    Image.init()
    return sorted((ext, fmt) for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def write_any_mode(im: Image.Image, path: Path, fmt: str) -> str | None:
    """Save ``im`` as ``fmt`` in the first mode the format accepts; None if none."""
    for mode in WRITE_MODES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.convert(mode).save(path, format=fmt)
            return mode
        except Exception:  # noqa: BLE001 - the format cannot be written in this mode (or at all here)
            path.unlink(missing_ok=True)
    return None


def hash_cli(*paths: Path):
    result = CliRunner().invoke(app, ["hash", "-m", ",".join(METHODS), "--format", "jsonl", "--no-progress",
                                      *map(str, paths)])
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, records


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    """A small picture with some structure (a gradient with noise), so every hash has detail."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:72, 0:96]
    base = np.stack([x * 2.5, y * 3.0, (x + y) * 1.5], axis=2) + rng.normal(0, 12, (72, 96, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def every_format(tmp_path_factory, picture) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A folder with one file per writable suffix: (folder, {name: format} readable
    here, {name: why not} for files Pillow wrote but cannot read here)."""
    root = tmp_path_factory.mktemp("formats")
    readable, unreadable = {}, {}
    for ext, fmt in writable_formats():
        path = root / f"picture{ext}"
        if write_any_mode(picture, path, fmt) is None:
            continue  # no save handler here (BUFR, GRIB, HDF5, WMF)
        reason = classify(path)
        (unreadable.__setitem__(path.name, reason) if reason else readable.__setitem__(path.name, fmt))
    return root, readable, unreadable


def test_the_issue_formats_are_taken(every_format):
    _, readable, _ = every_format
    for ext in (".avif", ".ico", ".jfif", ".apng", ".jp2", ".tga", ".pcx", ".qoi", ".webp", ".tif", ".bmp"):
        assert f"picture{ext}" in readable, ext
    assert len(readable) >= 40


def test_every_readable_format_is_hashed_by_every_method(every_format):
    root, readable, _ = every_format
    result, records = hash_cli(root)
    hashed = {(Path(r["path"]).name, r["method"]) for r in records}
    missing = {(name, m) for name in readable for m in METHODS} - hashed
    assert not missing, (sorted(missing), result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert not any(Path(r["path"]).name not in readable for r in records)


def test_formats_written_but_not_readable_here_are_skipped_with_a_reason(every_format):
    root, readable, unreadable = every_format
    scan = scan_images([root])
    assert {p.name for p in scan.files} == set(readable)
    skipped = {s.path.name: s.reason for s in scan.skipped}
    assert skipped == unreadable
    # here: PDF and PALM are written only; EPS needs Ghostscript
    for name in ("picture.pdf", "picture.palm"):
        assert "can write this format but not read it" in skipped[name]
    assert {s.path.name for s in scan.unreadable_images} == set(unreadable)


# --- hostile and unusual files ------------------------------------------------------------

BAD = {
    "empty.jpg": "empty input",
    "text.jpg": "not a recognised image format",
    "truncated.jpg": "corrupt or truncated",
    "huge_claim.jpg": "corrupt JPEG: its header claims 9000x11000 pixels",
    "huge_claim_truncated.jpg": "corrupt",
    "bomb.png": "exceeds the limit",
}
UNUSUAL = ("grey16.png", "transparent.png", "animated.gif", "cmyk.jpg", "exif_rotated.jpg", "good.jpg",
           "animated.png", "grey16.tif", "rgba.webp", "palette_transparent.gif")


@pytest.fixture(scope="module")
def batch(tmp_path_factory, hostile, astronaut) -> Path:
    root = tmp_path_factory.mktemp("batch")
    for name in ("empty.jpg", "truncated.jpg", "bomb.png", "grey16.png", "transparent.png", "animated.gif",
                 "cmyk.jpg", "exif_rotated.jpg", "good.jpg"):
        shutil.copy(hostile / name, root / name)
    (root / "text.jpg").write_text("this is a text file named .jpg\n")
    small = jpeg_bytes(astronaut.resize((128, 128)))
    (root / "huge_claim.jpg").write_bytes(sof_patched(small, 9000, 11000))
    (root / "huge_claim_truncated.jpg").write_bytes(sof_patched(small, 9000, 11000)[:3000])
    frames = [astronaut.resize((64, 64)).rotate(angle) for angle in (0, 90, 180)]
    frames[0].save(root / "animated.png", save_all=True, append_images=frames[1:], duration=50)
    grey16 = (np.linspace(0, 65535, 80 * 60).reshape(60, 80)).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.tif")
    rgba = astronaut.resize((64, 64)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 64)))
    rgba.save(root / "rgba.webp", lossless=True)
    palette = astronaut.resize((64, 64)).convert("P")
    palette.save(root / "palette_transparent.gif", transparency=0)
    return root


def test_hostile_batch_reports_each_bad_file_and_hashes_the_rest(batch):
    result, records = hash_cli(batch)
    assert result.exit_code == 1
    hashed = {(Path(r["path"]).name, r["method"]) for r in records}
    for name in UNUSUAL:
        assert {(name, m) for m in METHODS} <= hashed, (name, result.stderr)
    lines = result.stderr.splitlines()
    for name, reason in BAD.items():
        assert not any(n == name for n, _ in hashed)
        mine = [line for line in lines if f"{batch / name}:" in line]
        assert mine, (name, result.stderr)
        assert reason in mine[0], mine
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{len(BAD)} of {len(BAD) + len(UNUSUAL)} file(s) could not be hashed" in result.stderr


def test_each_bad_file_alone_exits_1_with_one_line(batch):
    for name, reason in BAD.items():
        result, records = hash_cli(batch / name)
        assert result.exit_code == 1 and not records
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(batch / name) in errors[0] and reason in errors[0], result.stderr


def test_unusual_files_hash_as_their_converted_pixels(batch):
    """The CLI's hashes equal the library's on the loader's output (one decoding rule)."""
    from robusthash.hashing import get_hasher

    result, records = hash_cli(batch / "exif_rotated.jpg", batch / "grey16.tif")
    assert result.exit_code == 0
    for record in records:
        assert record["hash"] == str(get_hasher(record["method"]).hash(record["path"]))


# --- folder scans ---------------------------------------------------------------------

def test_scan_sniffs_unknown_suffixes_and_reports_what_it_leaves(tmp_path, astronaut):
    small = astronaut.resize((32, 32))
    small.save(tmp_path / "photo.jpg")
    small.save(tmp_path / "no_suffix", format="PNG")
    small.save(tmp_path / "download.bin", format="JPEG")
    (tmp_path / "notes.md").write_text("# BM not a bitmap\n")
    (tmp_path / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (tmp_path / "renamed.dat").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "sub").mkdir()
    small.save(tmp_path / "sub" / "deep.qoi")
    scan = scan_images([tmp_path])
    assert [p.name for p in scan.files] == ["download.bin", "no_suffix", "photo.jpg", "deep.qoi"]
    skipped = dict((p.name, why) for p, why in scan.skipped)
    assert set(skipped) == {"notes.md", "phone.heic", "renamed.dat", "drawing.svg"}
    assert skipped["notes.md"].startswith("not an image")
    assert "HEIF" in skipped["phone.heic"] and "HEIF" in skipped["renamed.dat"]
    assert "SVG" in skipped["drawing.svg"]
    assert {p.name for p, _ in scan.unreadable_images} == {"phone.heic", "renamed.dat", "drawing.svg"}
    # not recursive: the subfolder is left alone; iter_image_paths gives the same files
    assert [p.name for p in scan_images([tmp_path], recursive=False).files] == ["download.bin", "no_suffix",
                                                                                 "photo.jpg"]
    assert list(iter_image_paths([tmp_path])) == scan.files
    # a file named explicitly is always taken, even one that is not an image
    assert scan_images([tmp_path / "notes.md"]).files == [tmp_path / "notes.md"]


def test_heif_named_explicitly_gets_a_clear_error(tmp_path):
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    result, records = hash_cli(path)
    assert result.exit_code == 1 and not records
    assert f"{path}: HEIF image: no Pillow plugin for HEIF is installed here" in result.stderr


# For the lead: the CLI's part of issue 21 item 6 (cli.py is the lead's file). Fails
# until `hash` prints scan_images(...).skipped on stderr.
def test_unreadable_file_in_a_folder_is_reported_on_stderr_not_silently_skipped(tmp_path, astronaut):
    astronaut.resize((64, 64)).save(tmp_path / "good.png")
    (tmp_path / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    result, records = hash_cli(tmp_path)
    assert {Path(r["path"]).name for r in records} == {"good.png"}
    assert "phone.heic" in result.stderr and "HEIF" in result.stderr


def test_bomb_header_costs_nothing(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_claiming(60_000, 60_000))
    result, _ = hash_cli(tmp_path / "bomb.png")
    assert result.exit_code == 1 and "refused before decoding" in result.stderr
