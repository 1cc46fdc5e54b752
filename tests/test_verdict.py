"""The parity verdict's arithmetic on hand-made logits: exact by construction, so these
hold on any CPU. Each rule is shown passing and failing."""

from __future__ import annotations

import numpy as np
import pytest

from harness.verdict import (
    BLEND,
    FAIL,
    INCONCLUSIVE,
    PASS,
    PROFILES,
    RANDOM,
    judge,
    min_images,
    wilson,
)

CLASSES = 10
NOISE = 16


def confident(n: int, noise: int = NOISE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits: n labelled rows, each with its label 10 ahead of the rest (S = 10),
    plus `noise` unlabelled rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    logits = np.zeros((n + noise, CLASSES), np.float32)
    logits[np.arange(n), labels] = 10.0
    logits[n:] = rng.uniform(-3, 3, (noise, CLASSES))
    return logits, np.concatenate([labels, np.full(noise, -1)])


def flip(logits: np.ndarray, rows: range, to: int | None = None) -> np.ndarray:
    """Candidate logits whose top-1 on `rows` moves to another class by a wide margin."""
    out = logits.copy()
    for i in rows:
        j = (logits[i].argmax() + 1) % CLASSES if to is None else to
        out[i, j] = logits[i].max() + 5.0
    return out


def test_wilson_and_minimum_counts():
    low, high = wilson(0, 100)
    assert low == 0.0 and high == pytest.approx(1.6449**2 / (100 + 1.6449**2))
    low, high = wilson(50, 100)
    assert low < 0.5 < high and low == pytest.approx(1 - high)
    assert min_images(0.02) == 133 and min_images(0.01) == 268
    assert wilson(0, min_images(0.02))[1] <= 0.02 < wilson(0, min_images(0.02) - 1)[1]


@pytest.mark.parametrize(
    "delta, flipped, verdict",
    [(5e-5, 0, PASS), (2e-4, 0, FAIL), (0.0, 1, FAIL)],
    ids=["within", "over-bound", "one-flip"],
)
def test_fp32_is_strict_on_every_row(delta, flipped, verdict):
    reference, labels = confident(20)
    candidate = flip(reference + np.float32(delta), range(flipped))
    result = judge(reference, candidate, labels, "fp32")
    assert result["verdict"] == verdict, result
    assert bool(result["reason"]) is (verdict != PASS)


@pytest.mark.parametrize("profile", ["fp16", "int8"])
def test_quantized_pass_needs_enough_labelled_images(profile):
    p = PROFILES[profile]
    n = min_images(min(p.max_disagreement, p.max_accuracy_drop or 1.0))
    reference, labels = confident(n)
    small = judge(reference[: n // 3], reference[: n // 3], labels[: n // 3], profile)
    assert small["verdict"] == INCONCLUSIVE and f"needs {n}" in small["reason"], small
    enough = judge(reference, reference.copy(), labels, profile)
    assert enough["verdict"] == PASS and enough["reason"] == "", enough


@pytest.mark.parametrize("profile", ["fp16", "int8"])
def test_near_tie_flips_are_no_defect(profile):
    """Rows whose reference top-2 are within the error budget may flip, however many."""
    reference, labels = confident(400)
    bound = PROFILES[profile].max_abs_diff * 10.0  # S = 10
    ties = range(0, 400, 5)  # 20% of the rows: top-2 a fraction of the budget apart
    for i in ties:
        reference[i, (labels[i] + 1) % CLASSES] = 10.0 - 0.5 * bound
    candidate = reference.copy()
    for i in ties:  # each moves by half the budget: within the bound, top-1 swapped
        candidate[i, labels[i]] -= 0.3 * bound
        candidate[i, (labels[i] + 1) % CLASSES] += 0.3 * bound
    result = judge(reference, candidate, labels, profile)
    assert result["top1_agreement"] < 0.85
    assert result["verdict"] == PASS and result["near_tie_flips"] == len(ties), result


@pytest.mark.parametrize("profile", ["fp16", "int8"])
def test_decisive_flips_fail_even_on_a_small_set(profile):
    reference, labels = confident(40)
    result = judge(reference, flip(reference, range(8)), labels, profile)
    assert result["verdict"] == FAIL and result["decisive_flips"] == 8, result
    assert "8/40 decisive top-1 flips" in result["reason"]


def test_int8_accuracy_drop_is_judged_apart_from_agreement():
    """60 decisive flips in 4000 (1.5%) are within the 2% disagreement allowance (upper
    bound 1.8%), but if each turns a right answer wrong the accuracy drop's lower bound
    (1.2%) is over 1 point."""
    reference, labels = confident(4000)
    result = judge(reference, flip(reference, range(60)), labels, "int8")
    assert result["verdict"] == FAIL and "right answer" in result["reason"], result
    # The same flips on rows the reference already got wrong cost no accuracy.
    wrong = labels.copy()
    wrong[:60] = (labels[:60] + 3) % CLASSES
    result = judge(reference, flip(reference, range(60)), wrong, "int8")
    assert result["verdict"] == PASS, result


@pytest.mark.parametrize("profile", ["fp16", "int8"])
def test_unlabelled_rows_are_bounded(profile):
    reference, labels = confident(400)
    bound = PROFILES[profile].max_abs_diff * 10.0
    candidate = reference.copy()
    candidate[-1] += np.float32(0.9 * bound)
    assert judge(reference, candidate, labels, profile)["verdict"] == PASS
    candidate[-1] += np.float32(0.2 * bound)
    result = judge(reference, candidate, labels, profile)
    assert result["verdict"] == FAIL and "unlabelled rows" in result["reason"], result


def test_shape_mismatch_fails():
    reference, labels = confident(10)
    result = judge(reference, reference[:, :9], labels, "fp32")
    assert result["verdict"] == FAIL and "reference" in result["reason"]


def test_int8_bounds_the_blends_and_reports_the_noise():
    """int8 saturates on uniform noise by design (outside its calibration): the blends of real
    images are what its unlabelled bound judges; every other profile judges both."""
    reference, labels = confident(400)
    labels = labels.copy()
    labels[-NOISE // 2 :] = BLEND  # the last half of the unlabelled rows: blends
    bound = PROFILES["int8"].max_abs_diff * 10.0
    noisy = reference.copy()
    noisy[400] += np.float32(5 * bound)  # a RANDOM row far out
    result = judge(reference, noisy, labels, "int8")
    assert result["verdict"] == PASS and result["random_max_abs_diff"] >= 5 * bound, result
    assert judge(reference, noisy, labels, "fp16")["verdict"] == FAIL
    blended = reference.copy()
    blended[-1] += np.float32(1.2 * bound)  # a BLEND row out of budget
    result = judge(reference, blended, labels, "int8")
    assert result["verdict"] == FAIL and "unlabelled rows" in result["reason"], result
    # a golden set made before the blends: its noise rows are what there is to bound
    old = np.where(labels == BLEND, RANDOM, labels)
    assert judge(reference, noisy, old, "int8")["verdict"] == FAIL
