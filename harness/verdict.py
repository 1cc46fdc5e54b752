"""The parity verdict: pass, inconclusive or fail, for one candidate against its reference.

Pure NumPy, no runtime: the gate (harness/parity.py) and the server's start-up replay
(serve/models.py) call the same `judge`, so a variant is judged the same way everywhere.

Exact profiles (fp32, transfer, oracle) are strict on every row: max abs logit diff under
the bound and the same top-1 everywhere. Pass or fail, never inconclusive.

Quantized profiles (fp16, int8) cannot be exact, so the rule asks only what quantization
cannot explain, and says so with a confidence that knows the set size:

- scale S = max(1, max |reference logit| over the labelled rows): the range the
  quantized outputs cover. The profile's tolerance gives the error budget E = tol x S.
- Unlabelled rows have no right answer: only |candidate - reference| <= E. They come in
  two kinds: RANDOM (uniform noise, far from any training image) and BLEND (two held-out
  images mixed, unlike any but within their range). int8 is calibrated on training images:
  activations of uniform noise fall outside the ranges it measured and saturate, as int8
  does by design (measured on a 64 px photo model: noise rows 26 logits off, while real
  rows agree on 99.7% to 100% and blends stay in budget). So int8 (`calibrated`) bounds the
  BLEND rows, reporting the RANDOM rows' error beside them; every other profile bounds both.
  A golden set without BLEND rows (made before they existed) is bounded on its RANDOM ones.
- Labelled rows (the real held-out images) are judged on top-1. A flip where the
  reference's top-1 leads its runner-up by at most 2E is a near tie: an error inside the
  budget can flip it, so it is no evidence of a defect. A flip with a larger margin is
  *decisive*: the candidate missed by more than the budget.
- Decisive flips (and decisive flips that turn a right answer wrong, for the accuracy
  drop) are counted against the profile's allowed rate with a one-sided 95% Wilson
  bound: fail when even the lower bound exceeds the allowance, pass when the upper bound
  is within it, inconclusive in between (too few images to tell). With no decisive miss,
  a pass needs n >= z^2 (1 - p) / p images: 133 at p = 2%, 268 at p = 1%.

Which rows flip between near ties depends on float rounding, so on the CPU; a decisive
flip does not. Nothing here is measured by a threshold that a rounding change can cross.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PASS, INCONCLUSIVE, FAIL = "pass", "inconclusive", "fail"
RANDOM, BLEND = -1, -2  # labels of the golden set's unlabelled rows (docstring)
VERDICTS = (PASS, INCONCLUSIVE, FAIL)  # best to worst
Z = 1.6449  # one-sided 95%
CONFIDENCE = "95%"


@dataclass(frozen=True)
class Profile:
    """Named tolerances (the parity profiles, docs/parity.md)."""

    max_abs_diff: float  # exact profiles: absolute bound; quantized: tolerance x S
    scaled: bool  # bound x max(1, max |reference logit|)
    quantized: bool  # the quantized rule above, else strict on every row
    max_disagreement: float = 0.0  # quantized: allowed rate of decisive flips
    max_accuracy_drop: float | None = None  # quantized: allowed rate of decisive new misses
    calibrated: bool = False  # int8: RANDOM rows reported, not bounded (docstring)


PROFILES = {
    "fp32": Profile(1e-4, scaled=False, quantized=False),
    # float16 weights: errors ~2e-4 x S measured; 1e-2 x S leaves a 50x margin.
    "fp16": Profile(1e-2, scaled=True, quantized=True, max_disagreement=0.01),
    # int8 weights and activations: the output step alone is ~2S/255 ~ 0.008 S; errors on
    # real rows measured at p99 ~0.009 S, worst row 0.05 S; noise rows <= 0.008 S.
    "int8": Profile(
        0.05,
        scaled=True,
        quantized=True,
        max_disagreement=0.02,
        max_accuracy_drop=0.01,
        calibrated=True,
    ),
    # torch eager vs keras eager, same weights. Scaled: float32 keeps ~7 digits, so trained
    # logits near 20 differ by a few ulps (~1e-5) between two correct frameworks.
    "transfer": Profile(1e-5, scaled=True, quantized=False),
    "oracle": Profile(1e-4, scaled=False, quantized=False),  # onnxruntime vs onnx.reference
}


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score bounds of a rate k/n (each one-sided at the confidence of z)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def min_images(p: float, z: float = Z) -> int:
    """Fewest images for a pass with no miss at allowance p: z^2 (1 - p) / p, rounded up."""
    return math.ceil(z * z * (1 - p) / p)


def rate_verdict(what: str, k: int, n: int, allowed: float) -> tuple[str, str]:
    """Verdict and reason for k misses in n against an allowed rate."""
    low, high = wilson(k, n)
    interval = f"{k}/{n} {what} ({CONFIDENCE} bounds {low:.2%}..{high:.2%}, allowed {allowed:.0%})"
    if low > allowed:
        return FAIL, interval
    if high <= allowed:
        return PASS, ""
    return INCONCLUSIVE, (
        f"{interval}: too few labelled images to tell; a pass with none needs {min_images(allowed)}"
    )


def worst(verdicts: list[str]) -> str:
    return max(verdicts, key=VERDICTS.index, default=PASS)


def judge(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, profile: str) -> dict:
    """Shape, then dtype, then values against the named profile. Returns the figures,
    `verdict` (pass | inconclusive | fail) and `reason` (empty on a pass)."""
    p = PROFILES[profile]
    if candidate.shape != reference.shape or candidate.dtype != reference.dtype:
        reason = (
            f"output {candidate.dtype}{list(candidate.shape)} != "
            f"reference {reference.dtype}{list(reference.shape)}"
        )
        return {"verdict": FAIL, "reason": reason}
    known = labels >= 0
    diff = np.abs(candidate - reference)
    ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
    scale = float(np.abs(reference[known] if known.any() else reference).max(initial=0.0))
    bound = p.max_abs_diff * (max(1.0, scale) if p.scaled else 1.0)
    out = figures(diff, ref_top, cand_top, labels)
    out["bound"] = bound
    if not p.quantized:
        misses = []
        if out["max_abs_diff"] > bound:
            misses.append(f"max abs diff {out['max_abs_diff']:.3g} > {bound:.3g}")
        if out["top1_agreement"] < 1.0:
            flips = int((ref_top != cand_top).sum())
            misses.append(f"top-1 differs on {flips}/{len(ref_top)} rows (must be 0)")
        return {**out, "verdict": FAIL if misses else PASS, "reason": "; ".join(misses)}
    return {**out, **quantized(p, reference, candidate, diff, labels, bound)}


def figures(
    diff: np.ndarray, ref_top: np.ndarray, cand_top: np.ndarray, labels: np.ndarray
) -> dict:
    """What the report shows for every row kind, whatever the profile."""
    known = labels >= 0
    agree = ref_top == cand_top

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else float("nan")

    out = {
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": mean(diff),
        "top1_agreement": mean(agree),
        "labelled_images": int(known.sum()),
        "accuracy": mean(cand_top[known] == labels[known]),
        "reference_accuracy": mean(ref_top[known] == labels[known]),
    }
    out["accuracy_delta"] = out["accuracy"] - out["reference_accuracy"]
    return out


def quantized(
    p: Profile,
    reference: np.ndarray,
    candidate: np.ndarray,
    diff: np.ndarray,
    labels: np.ndarray,
    bound: float,
) -> dict:
    known = labels >= 0
    results = []
    bounded = ~known
    if p.calibrated and (labels == BLEND).any():
        bounded = labels == BLEND
    noise_max = float(diff[bounded].max(initial=0.0))
    if noise_max > bound:
        results.append((FAIL, f"unlabelled rows: max abs diff {noise_max:.3g} > {bound:.3g}"))
    ranked = np.sort(reference[known], axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else np.full(len(ranked), 0.0)
    ref_top, cand_top = reference[known].argmax(1), candidate[known].argmax(1)
    decisive = (ref_top != cand_top) & (margin > 2 * bound)
    n = int(known.sum())
    k = int(decisive.sum())
    results.append(rate_verdict("decisive top-1 flips", k, n, p.max_disagreement))
    new_misses = int((decisive & (ref_top == labels[known])).sum())
    if p.max_accuracy_drop is not None:
        what = "decisive flips of a right answer"
        results.append(rate_verdict(what, new_misses, n, p.max_accuracy_drop))
    verdict = worst([v for v, _ in results])
    reason = "; ".join(r for v, r in results if v == verdict and r)
    return {
        "verdict": verdict,
        "reason": reason,
        "unlabelled_max_abs_diff": noise_max,
        "random_max_abs_diff": float(diff[labels == RANDOM].max(initial=0.0)),
        "near_tie_flips": int(((ref_top != cand_top) & ~decisive).sum()),
        "decisive_flips": k,
    }


@dataclass
class Row:
    """One row of the parity report (harness/parity.py, harness/browser_parity.py): what was
    compared, under which profile, `judge`'s figures and verdict."""

    name: str
    trainer: str
    format: str
    profile: str
    reference: str
    size_bytes: int
    verdict: str
    reason: str = ""
    max_abs_diff: float = float("nan")
    mean_abs_diff: float = float("nan")
    top1_agreement: float = float("nan")
    accuracy: float = float("nan")
    reference_accuracy: float = float("nan")
    accuracy_delta: float = float("nan")
    bound: float | None = None
    labelled_images: int | None = None
    unlabelled_max_abs_diff: float | None = None
    random_max_abs_diff: float | None = None  # int8: reported, not bounded (above)
    near_tie_flips: int | None = None
    decisive_flips: int | None = None
    oracle_max_abs_diff: float | None = None
    runtime: str | None = None  # browser rows: the in-browser runtime; else the format's own
    # harness/diagnose.py, for the rows it diagnoses: the first probe point over its budget,
    # a one-line summary, and every probe's error.
    first_divergence: str | None = None
    diagnosis: str = ""
    layers: list[dict] | None = None
    host_max_abs_diff: float | None = None  # browser rows: vs the same file in Python
    version: str | None = None  # the variant's live version judged (export/versions.py)
