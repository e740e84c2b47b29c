"""A method's hash is a function of the file alone, whichever other methods are asked for
(issue 21, item 1): forbild and the learned hashers decode JPEGs at a reduced size, pdq at
full size, and each must see the file as it would on its own."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from robusthash.cli import app
from robusthash.hashing import get_hasher
from robusthash.hashing.base import hash_image
from robusthash.io import load_pil

from .conftest import jpeg_bytes


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory, photos):
    # A busy photo, large enough for a 1/8 draft decode: the decodings differ here.
    path = tmp_path_factory.mktemp("jpeg") / "hubble.jpg"
    path.write_bytes(jpeg_bytes(photos["hubble_deep_field"].resize((1536, 1761)), quality=85))
    return path


@pytest.mark.parametrize("method", ["forbild", "cmaa"])
def test_a_method_hashes_a_file_alike_with_or_without_other_methods(big_jpeg, method):
    alone = get_hasher(method)
    with_pdq = hash_image([get_hasher("pdq"), alone, get_hasher("segments")], big_jpeg)
    assert with_pdq[method] == alone.hash(big_jpeg)
    # The test has teeth: the full-size decode another method needs gives other bits.
    full = alone.hash_pil(load_pil(big_jpeg))
    assert (full.bits != with_pdq[method].bits).any()


def test_the_cli_prints_the_same_hash_alone_and_with_other_methods(big_jpeg):
    runner = CliRunner()
    alone = runner.invoke(app, ["hash", "-m", "forbild", "--format", "jsonl", str(big_jpeg)])
    together = runner.invoke(app, ["hash", "-m", "pdq,forbild", "--format", "jsonl", str(big_jpeg)])
    assert alone.exit_code == 0 and together.exit_code == 0
    forbild = [line for line in together.stdout.splitlines() if '"forbild"' in line]
    assert forbild == alone.stdout.splitlines()
