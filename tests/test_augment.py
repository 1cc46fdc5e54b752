"""train/augment.py and data.stream: the same augmented pixels for every trainer, rank and
step, from (seed, epoch, step) alone."""

from __future__ import annotations

import numpy as np
import pytest

from contract import datasets
from train import augment, data


def images(n=6, size=16, channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
def test_none_is_the_images_and_crop_flip_stays_in_range(dtype, channels):
    x = images(channels=channels, dtype=dtype)
    unchanged = augment.draw("none", len(x), 16, 0, 0, 0)
    np.testing.assert_array_equal(augment.apply(x, unchanged), x.astype(np.float32))
    out = augment.augment(x, "crop-flip", augment.draw("crop-flip", len(x), 16, 0, 0, 0))
    assert out.dtype == np.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 255 and not np.array_equal(out, x)


def test_flip_mirrors_left_and_right():
    x = np.zeros((2, 4, 4, 1), np.uint8)
    x[:, :, 0] = 255  # the left column
    params = augment.Draw(np.array([True, False]), np.tile([0.0, 0, 4, 4], (2, 1)))
    for policy in ("flip", "crop-flip"):
        out = augment.augment(x, policy, params)
        assert (out[0, :, -1] == 255).all() and (out[0, :, :-1] == 0).all(), policy
        np.testing.assert_array_equal(out[1], x[1])


def test_a_crop_shows_its_box():
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, :4, :4] = 200.0  # the top-left quarter
    quarter = augment.Draw(np.array([False]), np.array([[0.0, 0.0, 4.0, 4.0]]))
    out = augment.apply(x, quarter)[0, :, :, 0]
    assert (out[:7, :7] == 200.0).all()  # the box, 2x; its last row and column blend in the next
    assert out[7, 7] < 200.0


def test_parameters_come_from_seed_epoch_and_step_only():
    a = augment.draw("crop-flip", 8, 32, 3, 1, 5)
    b = augment.draw("crop-flip", 8, 32, 3, 1, 5)
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(a.flip, b.flip)
    c = augment.draw("crop-flip", 8, 32, 3, 1, 6)
    assert not np.array_equal(a.box, c.box)
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        augment.draw("rotate", 8, 32, 0, 0, 0)


def test_parts_of_a_batch_are_rows_of_the_whole():
    """torchrun's ranks each read their part: together, the one-process batch."""
    split = datasets.Dataset(images(n=20), np.arange(20) % 2, ["a", "b"])
    order = data.batches(20, 7, 0, 0)
    whole = list(data.stream(split, order, "crop-flip", 0, 0))
    parts = [list(data.stream(split, order, "crop-flip", 0, 0, (r, 2))) for r in range(2)]
    for step, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[step][0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[step][1] for p in parts]), y)


def test_stream_is_the_order_and_model_fits_batches_are_the_loops(tmp_path):
    """keras-fit's PyDataset gives, batch for batch, what the loops' stream gives."""
    from train.config import TrainConfig
    from train.keras_fit import EpochBatches

    split = datasets.Dataset(images(n=30), np.arange(30) % 3, ["a", "b", "c"])
    cfg = TrainConfig(batch_size=8, seed=4, augment="crop-flip")
    fit = EpochBatches(cfg, split)
    fit.set_epoch(2)
    order = data.batches(30, 8, 4, 2)
    for step, (x, y) in enumerate(data.stream(split, order, "crop-flip", 4, 2)):
        np.testing.assert_array_equal(y, split.labels[order[step]])
        np.testing.assert_array_equal(fit[step][0], x)


def test_a_failed_batch_is_raised_and_an_early_stop_ends_the_thread():
    def load(step):
        if step == 2:
            raise OSError("disk gone")
        return step

    with pytest.raises(OSError, match="disk gone"):
        list(data.prefetch(load, 5, 2))
    first = data.prefetch(lambda step: step, 1000, 2)
    assert next(first) == 0
    first.close()  # the consumer stops: the thread is told to stop, and joined
