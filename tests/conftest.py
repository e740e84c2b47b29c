"""Shared fixtures: scikit-image's bundled photos and a folder of hostile files made here."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

PHOTO_NAMES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTO_NAMES}


@pytest.fixture(scope="session")
def astronaut(photos) -> Image.Image:
    return photos["astronaut"]


def jpeg_bytes(im: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb in spirit."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def sof_patched(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a JPEG) with its frame header claiming ``width`` × ``height``."""
    pos = 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[:pos + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[pos + 9:]
        pos += 2 + length


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, astronaut) -> Path:
    """A folder of hostile or unusual files, generated here."""
    root = tmp_path_factory.mktemp("hostile")
    small = astronaut.resize((128, 128))
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    good = jpeg_bytes(small)
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "bomb.png").write_bytes(png_header_claiming(50_000, 50_000))
    small.convert("CMYK").save(root / "cmyk.jpg", quality=90)
    grey16 = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.png")
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    # A landscape picture stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view").
    upright = Image.new("RGB", (60, 40), (255, 255, 255))
    upright.paste((0, 0, 0), (0, 0, 30, 40))  # left half black when viewed correctly
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(root / "exif_rotated.jpg", exif=exif, quality=95)
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 20, 40))
    rgba.save(root / "transparent.png")
    (root / "good.jpg").write_bytes(good)
    return root


# --- PostgreSQL, started for real: a private cluster on a loopback port -----------------

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server for the session (initdb + pg_ctl, trust auth on
    127.0.0.1). As root, the server runs as the ``postgres`` user, which initdb requires."""
    import os
    import shutil
    import subprocess

    bin_dir = next((d for d in PG_BIN_DIRS if (d / "pg_ctl").exists()), None)
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it")
    import tempfile

    # Not under pytest's tmp folders: those are private to root, and the server may run as postgres.
    root = Path(tempfile.mkdtemp(prefix="robusthash-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(root, 0o755)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "robusthash", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
                   check=True, capture_output=True)
    url = f"postgresql://robusthash@127.0.0.1:{port}/postgres"

    def restart() -> None:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-m",
                        "fast", "-w", "restart"], check=True, capture_output=True)

    _POSTGRES_RESTART.append(restart)
    try:
        yield url
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_POSTGRES_RESTART: list = []  # the session server's restart, set by postgres_url


@pytest.fixture
def restart_postgres(postgres_url):
    """Restart the session's PostgreSQL server (pg_ctl restart -m fast): every
    connection to it is cut, and the server answers again once this returns."""
    return _POSTGRES_RESTART[-1]


@pytest.fixture
def fresh_postgres(postgres_url):
    """A new, empty database on the session's server for one test."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def clipart() -> Image.Image:
    """An RGBA cut-out drawn like the corpus's clip art: flat colours, black outlines."""
    im = Image.new("RGBA", (240, 300), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle((40, 20, 200, 200), radius=40, fill=(240, 200, 40, 255), outline=(0, 0, 0, 255), width=6)
    for left in (75, 135):
        draw.ellipse((left, 70, left + 30, 100), fill=(255, 255, 255, 255), outline=(0, 0, 0, 255), width=4)
        draw.ellipse((left + 10, 80, left + 22, 92), fill=(0, 0, 0, 255))
    draw.arc((80, 110, 160, 170), 20, 160, fill=(150, 30, 30, 255), width=6)
    draw.polygon([(70, 200), (170, 200), (210, 290), (30, 290)], fill=(40, 90, 200, 255), outline=(0, 0, 0, 255),
                 width=6)
    return im


@pytest.fixture(scope="session")
def milvus_address():
    """A real Milvus server for the session: the embedded standalone build from PyPI
    (``milvus``), in a throw-away folder. Every test that uses it is in tests/test_milvus.py,
    so one test process starts it (two cannot run on one machine)."""
    import shutil
    import tempfile

    from robusthash.db.milvus import start_embedded

    root = Path(tempfile.mkdtemp(prefix="robusthash-milvus-"))
    try:
        server = start_embedded(str(root), _free_port())
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield f"127.0.0.1:{server.listen_port}"
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def png_16bit_rgba(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG of zeros (Pillow cannot write one): a few hundred KB that decode
    to width × height × 4 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = bytes(1 + width * 8)  # filter byte, then 8 bytes a pixel
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def png_page_with_picture(width: int, height: int) -> bytes:
    """A PNG of a striped picture on a white page of dash "text" with a wide right margin:
    an upload with content (not refused as flat) whose margin is a uniform border and
    whose picture is found among text, so every query variant of it is worked out. A few
    hundred KB for tens of megapixels."""
    import numpy as np

    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for y in range(40, height, 90):
        for x in range(40, width - 460, 260):
            draw.rectangle((x, y, x + 180, y + 14), fill=(20, 20, 20))
    pw, ph = width * 4 // 5, height * 2 // 3
    stripes = np.zeros((ph, pw, 3), np.uint8)
    for i in range(0, ph, 300):
        stripes[i:i + 150] = ((i * 37) % 255, (i * 91) % 255, (i * 53) % 255)
    stripes[:, ::700] = 0
    page.paste(Image.fromarray(stripes), (width // 10, height // 6))
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()
