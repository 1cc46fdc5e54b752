"""The variants one server holds: each loaded, proven before it serves, and batched.

A variant serves only after a start-up check: it replays the golden batch that
`make parity` saved (artifacts/reports/golden.npz) against the eager reference logits
saved with it, and the parity gate's own verdict (harness/verdict.py) decides: fail ->
UNAVAILABLE; inconclusive (too few labelled images to tell) -> it serves, and its
metadata and ready answers say so. Without a golden batch it checks the contract on a
seeded batch and that batched rows equal one-at-a-time rows (dynamic batching relies on
it). A variant that fails to load or check is UNAVAILABLE with the reason, and every
request for it gets that reason with a 503.

A golden batch names the checkpoint its reference logits came from; a version exported from
another training run (a retrained model before `make parity`) cannot be compared with them:
it gets the seeded check and an inconclusive verdict that says so. Its top-1 answers on the
labelled golden images are kept either way: a new version is promoted over a live one only
if it is not decisively less accurate on them (`compare`, registry.Registry.reload).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import harness
from contract.formats import FORMATS
from export import repository, versions
from harness.golden import Saved
from harness.verdict import FAIL, INCONCLUSIVE, PASS, PROFILES, judge, rate_verdict
from serve import catalog, v2
from serve.batching import MAX_QUEUE, Batcher
from serve.metrics import ModelStats

SEEDED_IMAGES = 7  # an odd batch: a batch-dimension bug shows at N > 1
# A new version may miss at most this share of the labelled golden images more than the live
# one (net, one-sided 95% Wilson bound, harness/verdict.py): the int8 profile's accuracy drop.
MAX_ACCURACY_DROP = PROFILES["int8"].max_accuracy_drop
LOADING, READY, UNAVAILABLE = "LOADING", "READY", "UNAVAILABLE"


@dataclass
class Servable:
    name: str
    path: Path
    stats: ModelStats = field(default_factory=ModelStats)
    manifest: dict | None = None
    model: harness.Backend | None = None
    batcher: Batcher | None = None
    signature: v2.Signature | None = None
    state: str = LOADING
    reason: str = "loading"
    parity: dict = field(default_factory=dict)  # the start-up check's verdict and reason
    # Top-1 on the golden batch's labelled images, and the labels (None: no golden batch).
    answers: tuple[np.ndarray, np.ndarray] | None = None
    refused: dict = field(default_factory=dict)  # the last version refused, and why
    version: str = v2.VERSION  # the variant's live version when it was loaded (a field:
    # every answer names it, so the hot path reads it, never computes it)
    max_batch: int = repository.MAX_BATCH_SIZE  # what the batcher puts in one runtime call
    plans: dict = field(default_factory=dict)  # binary request headers parsed (v2.Plan)

    @property
    def ready(self) -> bool:
        return self.state == READY

    def metadata(self) -> dict:
        """V2 model metadata, from the manifest (served even while unavailable). `versions`
        are the ones a request may name (the loaded one); the repository's are listed too."""
        m = self.manifest or {}
        tensors = {key: m.get(key, {}) for key in ("input", "output")}
        held = list(versions.records(m)) if m else [self.version]
        return {
            "name": self.name,
            "versions": [self.version],
            "live_version": self.version,
            "repository_versions": held,
            "version_policy": m.get("version_policy", versions.LATEST),
            # As config.pbtxt names the runtime: its platform, else its backend (TFLite's).
            "platform": platform(m.get("format")),
            "inputs": [tensors["input"]],
            "outputs": [tensors["output"]],
            "parity": self.parity,
            **({"refused": self.refused} if self.refused else {}),
        }


def platform(fmt: str | None) -> str:
    """What Triton's model metadata says for a folder of this format: the config's
    `platform`, or for a backend-only config the backend's name, as Triton reports it."""
    record = FORMATS.get(fmt)
    if record is None:
        return "unknown"
    return record.triton_platform or record.triton_backend or "unknown"


def check(model: harness.Backend, manifest: dict, golden: Saved) -> tuple[dict, tuple | None]:
    """The start-up check's verdict ({"verdict", "reason"}; a FAIL keeps it from serving),
    and the model's (top-1, labels) on the golden batch's labelled images, if there is one."""
    profile = FORMATS[manifest["format"]].precision
    entry = golden.batch(manifest["trainer"])
    answers = None
    if entry is not None:
        images, labels, reference = entry
        if images.shape[1:] != model.input_shape:
            return {
                "verdict": FAIL,
                "reason": f"golden batch {golden.path.name} holds {list(images.shape[1:])} "
                f"images, the model takes {list(model.input_shape)}: rerun `make parity` "
                "for this repository",
            }, None
        logits = model.predict(images)
        labelled = labels >= 0
        answers = (logits[labelled].argmax(axis=1), labels[labelled])
        made_from = golden.checkpoint(manifest["trainer"])
        exported_from = manifest.get("source_checkpoint", {}).get("sha256")
        if made_from is None or made_from == exported_from:
            result = judge(reference, logits, labels, profile)
            if result["verdict"] != PASS:
                result["reason"] = f"golden replay ({profile} profile): {result['reason']}"
            return {"verdict": result["verdict"], "reason": result["reason"]}, answers
    seeded = seeded_check(model, profile)
    if entry is not None and seeded["verdict"] != FAIL:
        seeded = {
            "verdict": INCONCLUSIVE,
            "reason": f"version {versions.live(manifest)} comes from another training run "
            f"than {golden.path.name}'s reference logits (checkpoint "
            f"{(exported_from or 'unrecorded')[:12]}, golden batch {made_from[:12]}): "
            "contract and batching checked; `make parity` proves it",
        }
    return seeded, answers


def seeded_check(model: harness.Backend, profile: str) -> dict:
    """No reference to replay: the contract on a seeded batch, and batched rows equal to
    one-at-a-time rows (dynamic batching relies on it)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (SEEDED_IMAGES, *model.input_shape)).astype(np.float32)
    batched = model.predict(images)
    single = np.concatenate([model.predict(images[i : i + 1]) for i in range(len(images))])
    result = judge(single, batched, np.full(len(images), -1), profile)
    if result["verdict"] == FAIL:
        return {
            "verdict": FAIL,
            "reason": f"a batch of {len(images)} differs from one image at a time: "
            f"{result['reason']}",
        }
    return {"verdict": PASS, "reason": "no golden batch: contract and batching checked"}


def compare(fresh: Servable, live: Servable) -> tuple[str, str]:
    """Whether `fresh` may take over from `live`: (verdict, reason). Fail when, on the
    labelled golden images, it misses decisively more of them than the live version
    (net new misses against MAX_ACCURACY_DROP, Wilson-bounded); pass without them to count
    (no golden batch, or another one than the live version was loaded with)."""
    if fresh.answers is None or live.answers is None or not live.ready:
        return PASS, ""
    (new, labels), (old, old_labels) = fresh.answers, live.answers
    if not np.array_equal(labels, old_labels) or len(labels) == 0:  # another golden batch
        return PASS, ""
    lost = int(((old == labels) & (new != labels)).sum())
    gained = int(((old != labels) & (new == labels)).sum())
    verdict, why = rate_verdict(
        f"more labelled golden images missed than version {live.version}",
        max(0, lost - gained),
        len(labels),
        MAX_ACCURACY_DROP,
    )
    counts = f"version {fresh.version} misses {lost} that {live.version} gets"
    counts += f" and gets {gained} that it misses"
    return verdict, f"{counts}; {why}" if why else counts


def load(
    servable: Servable,
    golden: Saved,
    threads: int,
    max_batch: int,
    delay: float,
    max_queue: int = MAX_QUEUE,
) -> None:
    """Load and check one variant in place; never raises, the reason goes on the servable."""
    try:
        servable.manifest = repository.read_manifest(servable.path)
        servable.version = versions.live(servable.manifest)
        model = harness.load(servable.path, threads=threads)
        servable.parity, servable.answers = check(model, servable.manifest, golden)
    except Exception as e:  # whatever stops a variant is its reason, not a crash
        # Runtimes name the file they fail on; clients get it relative to the repository.
        reason = catalog.without_paths(f"{type(e).__name__}: {e}", servable.path.parent)
        servable.state, servable.reason = UNAVAILABLE, reason
        return
    if servable.parity["verdict"] == FAIL:
        servable.state, servable.reason = UNAVAILABLE, servable.parity["reason"]
        return
    servable.model = model
    servable.signature = v2.Signature(
        servable.manifest["input"]["name"],
        servable.manifest["output"]["name"],
        tuple(model.labels),
    )
    servable.max_batch = min(max_batch, repository.max_batch_size(servable.manifest))
    servable.batcher = Batcher(
        servable.name,
        model.predict,
        servable.max_batch,
        delay,
        on_batch=servable.stats.batch,
        max_queue=max_queue,
    )
    servable.state, servable.reason = READY, ""


def inconclusive(servable: Servable) -> str:
    """Why a serving variant's parity is unproven, or empty."""
    verdict = servable.parity.get("verdict")
    return servable.parity["reason"] if servable.ready and verdict == INCONCLUSIVE else ""
