"""Data sources under the I/O contract, and the errors for bad folders."""

from __future__ import annotations

import numpy as np
import pytest
from folders import COLOURS, write_rgb_folder

from contract import datasets
from train.__main__ import main


def test_digits_contract():
    d = datasets.load_digits()
    assert d.images.dtype == np.float32 and d.images.shape[1:] == (8, 8, 1)
    assert d.images.min() == 0 and d.images.max() == 255  # 0..16 scaled by 255/16
    assert d.class_names == [str(i) for i in range(10)]


def test_split_is_fixed_stratified_and_disjoint():
    a, b = (
        datasets.split(datasets.load_digits(), seed=0),
        datasets.split(datasets.load_digits(), seed=0),
    )
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    sizes = [len(s.labels) for s in (a.train, a.val, a.test)]
    assert sum(sizes) == 1797 and sizes[2] == 360
    assert set(np.bincount(a.test.labels)) <= {35, 36, 37}


@pytest.mark.parametrize("channels", [1, 3], ids=["1ch", "3ch"])
def test_synthetic_any_size(channels):
    d = datasets.make_synthetic(50, 12, channels, 4, seed=1)
    assert d.images.shape == (50, 12, 12, channels) and d.images.dtype == np.float32
    assert d.images.min() >= 0 and d.images.max() <= 255
    np.testing.assert_array_equal(d.images, datasets.make_synthetic(50, 12, channels, 4, 1).images)


def test_folder_rgb(tmp_path):
    root = write_rgb_folder(tmp_path / "colours")
    d = datasets.load_folder(root, image_size=8, channels=3)
    assert d.class_names == sorted(COLOURS)
    assert d.images.shape == (18, 8, 8, 3) and d.images.dtype == np.uint8  # prepared, on disk
    images = np.asarray(d.images, np.float32)
    for label, name in enumerate(d.class_names):
        mean = images[d.labels == label].mean(axis=(0, 1, 2))
        assert np.argmax(mean) == np.argmax(COLOURS[name]), f"{name}: channels out of order"


def test_folder_grey_from_rgb(tmp_path):
    d = datasets.load_folder(write_rgb_folder(tmp_path / "c"), image_size=8, channels=1)
    assert d.images.shape == (18, 8, 8, 1)


def test_corrupt_image_names_the_file(tmp_path):
    root = write_rgb_folder(tmp_path / "c")
    bad = root / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(datasets.DataError, match=r"broken\.png"):
        datasets.load_folder(root, 8, 3)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(datasets.DataError, match="at least 2"):
        datasets.load_folder(tmp_path / "empty", 8, 3)


def test_one_class_folder(tmp_path):
    root = write_rgb_folder(tmp_path / "c")
    for name in ("green", "blue"):
        for f in (root / name).iterdir():
            f.unlink()
    with pytest.raises(datasets.DataError, match="has 1 class"):
        datasets.load_folder(root, 8, 3)


def test_missing_folder(tmp_path):
    with pytest.raises(datasets.DataError, match="does not exist"):
        datasets.load_folder(tmp_path / "nope", 8, 3)


def test_cli_bad_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "sub-folder" in err and "Traceback" not in err
