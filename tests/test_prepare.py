"""train/prepare.py: a folder of real image files decoded once into a uint8 cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from contract import datasets, folders, pixels
from train import data
from train.prepare import main as prepare_main


def solid(colour, size=(24, 16), mode="RGB"):
    return Image.new(mode, size, colour)


@pytest.fixture
def folder(tmp_path):
    """Two classes: red things and blue things, in every format and mode a folder holds."""
    root = tmp_path / "things"
    for name, rgb in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (root / name / "nested").mkdir(parents=True)
        for i in range(3):
            solid(rgb).save(root / name / f"{i}.jpg", quality=95)
        solid(rgb).save(root / name / "a.png")
        solid(rgb).save(root / name / "nested" / "b.webp", lossless=True)
        solid(rgb).quantize(8).save(root / name / "palette.png")
        (root / name / ".hidden.png").write_bytes(b"not an image, and hidden")
        (root / name / "notes.txt").write_text("not an image file: left alone")
    return root


def test_prepare_reads_every_format_and_caches_uint8(folder, tmp_path):
    dataset = datasets.load_folder(folder, image_size=8, channels=3)
    assert dataset.class_names == ["blue", "red"]
    assert dataset.images.shape == (12, 8, 8, 3) and dataset.images.dtype == np.uint8
    images = np.asarray(dataset.images, np.float32)
    for label, name in enumerate(dataset.class_names):
        mean = images[dataset.labels == label].mean(axis=(0, 1, 2))
        assert np.argmax(mean) == (2 if name == "blue" else 0), f"{name}: channels out of order"
    meta = json.loads((dataset.prepared / "meta.json").read_text())
    assert len(meta["files"]) == 12 and meta["skipped"] == []
    assert "blue/nested/b.webp" in meta["files"]
    raw = np.memmap(dataset.prepared / "images.u8", np.uint8, "r", shape=(12, 8, 8, 3))
    np.testing.assert_array_equal(raw[meta["rows"]], np.asarray(dataset.images))


def test_an_unchanged_folder_is_never_prepared_again_and_a_changed_one_is(folder):
    first = folders.prepare(folder, 8, 3, quiet=True)
    stamp = (first / "images.u8").stat().st_mtime_ns
    assert folders.prepare(folder, 8, 3, quiet=True) == first
    assert (first / "images.u8").stat().st_mtime_ns == stamp
    solid((220, 20, 20)).save(folder / "red" / "new.jpg")
    second = folders.prepare(folder, 8, 3, quiet=True)
    assert second != first and len(json.loads((second / "meta.json").read_text())["rows"]) == 13
    assert folders.prepare(folder, 16, 1, quiet=True).name == "16px-grey"  # one per shape


def test_defaults_follow_the_data(tmp_path):
    grey = tmp_path / "grey"
    for name in ("a", "b"):
        (grey / name).mkdir(parents=True)
        for i in range(5):
            solid(40 * i, (30, 50), "L").save(grey / name / f"{i}.png")
    dataset = datasets.load_folder(grey)
    assert dataset.images.shape[1:] == (24, 24, 1)  # median short side 30, to a multiple of 8
    solid((0, 200, 0), (300, 200)).save(grey / "a" / "colour.jpg")  # one colour image: RGB
    big = datasets.load_folder(grey)
    assert big.images.shape[1:] == (24, 24, 3)
    assert folders.defaults([{"size": [1000, 800], "colour": False}]) == (64, 1)


def test_exif_orientation_palette_alpha_and_16_bit_are_what_they_show(tmp_path):
    stripe = np.zeros((8, 16, 3), np.uint8)
    stripe[:, :8] = 255  # left half white, right half black, as stored
    im = Image.fromarray(stripe)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    im.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "turned.jpg") as opened:
        shown = pixels.to_pixels(opened, 16, 16, 1)[:, :, 0]
    assert shown[:4].mean() > 200 and shown[-4:].mean() < 50  # top white: turned, as shown

    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent black: shown on white
    assert (pixels.to_pixels(clear, 8, 8, 3) == 255).all()
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 200, 30] * 256)
    assert (pixels.to_pixels(palette, 8, 8, 3) == [10, 200, 30]).all()
    deep = Image.fromarray(np.full((8, 8), 65535, np.uint16))  # 16-bit white
    assert (pixels.to_pixels(deep, 8, 8, 1) == 255).all()
    assert not pixels.is_colour(palette.convert("L").convert("P")) and pixels.is_colour(palette)


def test_a_bad_file_is_named_or_skipped_and_counted(folder, capsys):
    (folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(
        datasets.DataError, match=r"(?s)1 of 13 files .*red/broken\.jpg.*--skip-bad"
    ):
        folders.prepare(folder, 8, 3, quiet=True)
    assert prepare_main([str(folder), "--image-size", "8", "--quiet"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    made = folders.prepare(folder, 8, 3, skip_bad=True, quiet=True)
    meta = json.loads((made / "meta.json").read_text())
    assert [s["file"] for s in meta["skipped"]] == ["red/broken.jpg"] and len(meta["rows"]) == 12
    assert len(datasets.open_prepared(made).labels) == 12
    assert prepare_main([str(folder), "--image-size", "8", "--skip-bad", "--quiet"]) == 0
    assert "1 skipped" in capsys.readouterr().out


def test_processes_preparing_one_folder_at_once_share_one_cache(folder):
    cmd = [sys.executable, "-m", "train.prepare", str(folder), "--image-size", "8", "--quiet"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = {run.communicate()[0] for run in runs}
    assert [run.returncode for run in runs] == [0, 0, 0] and len(outputs) == 1, outputs
    home = folders.list_folder(folder).home
    assert sorted(p.name for p in home.iterdir()) == ["8px-rgb", "probe.json"], (
        "a temporary folder was left behind"
    )


def test_reading_a_prepared_folder_does_not_grow_the_process(tmp_path):
    """Frames read rows with pread: the page cache holds the file, not this process. A
    memory map would add every page it touched to the resident size."""
    from benchmarks.shapes import write_folder

    root = write_folder(tmp_path / "shapes", per_class=250, size=64, suffix=".png")
    splits = datasets.load(str(root), 128, 3, seed=0)  # 1,000 images, 49 MB of uint8
    order = data.batches(len(splits.train.labels), 64, 0, 0)

    def resident_mb() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    for _ in data.stream(splits.train, order[:2], "none", 0, 0):
        pass
    before = resident_mb()
    for _ in range(2):
        for _ in data.stream(splits.train, order, "none", 0, 0):
            pass
    assert resident_mb() - before < 16, "reading the file grew the process"
