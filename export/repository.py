"""The model repository on disk: Triton's layout, one manifest per variant, atomic publishing.

The only module that knows the layout: exporters write through it, and the harness, the
parity gate and the server read through it. What a config.pbtxt says: `triton_config.py`.

<root>/<variant>/config.pbtxt        (formats Triton serves; warmup/image: its warmup sample)
<root>/<variant>/labels.txt
<root>/<variant>/manifest.json       (sha256 of every other file)
<root>/<variant>/<N>/model.<ext>     (version N; versions.py: which are kept, which is live)

Triton refuses a folder it cannot load, and it has no ExecuTorch backend: the formats no
Triton backend loads (their record's `edge`, contract/formats.py) go to a second root
(artifacts/edge/) with the same layout, no config.pbtxt.

A variant is built in a hidden sibling `.tmp-<variant>-<pid>` and renamed into place, so a
reader sees a whole variant or none. Readers skip dot-folders; the next export cleans them.
A symlink that leaves its variant folder is refused, never followed (`verify`, `refusal`).
This module imports no ML framework: the harness calls `verify` before loading (writing a
TFLite variant's config reads its tensor names with LiteRT, imported then).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from contract.formats import FORMATS
from contract.names import INPUT_NAME, LABELS_FILE, OUTPUT_NAME
from contract.paths import EDGE
from contract.spec import CNNSpec
from export import triton_config
from export.triton_config import MAX_BATCH_SIZE

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.pbtxt"
TMP_PREFIX = ".tmp-"  # a variant being built
OLD_PREFIX = ".old-"  # the variant being replaced, between the two renames of `publish`
# What every reader takes from a manifest; a manifest without one of them is refused.
MANIFEST_KEYS = ("name", "trainer", "format", "input", "output", "labels", "files")
LINK_OUT = "is a symlink that leaves the variant folder; refused, not followed"


class IntegrityError(ValueError):
    """A variant whose files do not match its manifest: the message names the file."""


def read_manifest(variant_dir: Path) -> dict:
    """The manifest, unchecked (see `verify`); an error that says what to run if absent."""
    variant_dir = Path(variant_dir)
    path = variant_dir / MANIFEST_FILE
    if not path.is_file():
        raise IntegrityError(
            f"{variant_dir.name} is not a model variant (no {MANIFEST_FILE}); run `make export`"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise IntegrityError(
            f"{variant_dir.name}/{MANIFEST_FILE}: unreadable manifest ({e}); re-run `make export`"
        ) from e


def artifact(variant_dir: Path, manifest: dict) -> Path:
    """The model file (or SavedModel folder) of a variant's live version."""
    rel = manifest.get("artifact") or f"1/{FORMATS[manifest['format']].artifact}"
    return Path(variant_dir) / rel


def home(fmt: str, repository: Path, edge: Path) -> Path:
    """The root a format's variants are published under (the edge root: no Triton backend)."""
    return Path(edge if FORMATS[fmt].edge else repository)


def edge_beside(repository: Path) -> Path:
    """The edge root that goes with a model repository: its sibling, as in artifacts/."""
    return Path(repository).parent / EDGE.name


def fixed_batch_file(fmt: str, batch: int) -> str:
    """A copy of the artifact converted at one fixed batch size, beside the dynamic one in
    its version folder, for runtimes that cannot resize an input (LiteRT.js): `model.b64.tflite`."""
    stem, dot, ext = FORMATS[fmt].artifact.rpartition(".")
    return f"{stem}.b{batch}{dot}{ext}"


def max_batch_size(manifest: dict) -> int:
    """config.pbtxt's max_batch_size as the manifest records it (older exports: the default;
    pt2: what `serve` batches, though Triton's config says 0, see PT2_TENSORS)."""
    return int(manifest.get("max_batch_size", MAX_BATCH_SIZE))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(variant_dir: Path) -> dict[str, str]:
    """{path relative to the variant, POSIX style: sha256} for every file but the manifest."""
    variant_dir = Path(variant_dir)
    files = sorted(p for p in variant_dir.rglob("*") if p.is_file())
    return {
        p.relative_to(variant_dir).as_posix(): sha256_file(p)
        for p in files
        if p != variant_dir / MANIFEST_FILE
    }


def write_metadata(
    staged: Path,
    name: str,
    fmt: str,
    spec: CNNSpec,
    labels: list[str],
    model: Path,
    warmup: bytes = b"",
) -> None:
    """labels.txt and Triton's config.pbtxt, in `staged`, whose model file is `model`; with
    `warmup` (one image, float32 bytes) the config's model_warmup and its warmup/ file."""
    (staged / LABELS_FILE).write_text("\n".join(labels) + "\n")
    record = FORMATS[fmt]
    if record.edge:
        return
    tensors = (INPUT_NAME, OUTPUT_NAME)
    if not record.triton_platform:  # TFLite's backend names tensors as the file does
        tensors = triton_config.tflite_tensor_names(model)
    (staged / CONFIG_FILE).write_text(
        triton_config.config_pbtxt(name, fmt, spec, tensors, bool(warmup))
    )
    if warmup:
        (staged / triton_config.WARMUP_DIR).mkdir()
        (staged / triton_config.WARMUP_DIR / triton_config.WARMUP_FILE).write_bytes(warmup)


def write_manifest(staged: Path, manifest: dict) -> dict:
    """Add the sha256 of every file already in `staged` and write manifest.json last."""
    manifest = {**manifest, "files": file_hashes(staged)}
    (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(variant_dir: Path) -> dict:
    """The variant's manifest, after checking the sha256 of every file it lists and that
    it lists every file there is. Raises IntegrityError naming the first bad file as
    <variant>/<file> (messages reach clients of the server: no filesystem paths)."""
    variant_dir = Path(variant_dir)
    name, manifest_path = variant_dir.name, variant_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IntegrityError(
            f"{name}: no {MANIFEST_FILE}, so not a complete variant; re-run `make export`"
        )
    link = escaping_link(variant_dir)
    if link:
        raise IntegrityError(f"{name}: {link} {LINK_OUT}")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(
            f"{name}/{MANIFEST_FILE}: unreadable manifest ({e}); re-run `make export`"
        ) from e
    if manifest.get("name") != name:
        raise IntegrityError(
            f"{name}/{MANIFEST_FILE}: names the variant {manifest.get('name')!r} but lies in "
            f"folder {name!r}; Triton requires them equal"
        )
    actual = file_hashes(variant_dir)
    for rel, digest in expected.items():
        if rel not in actual:
            raise IntegrityError(f"{name}: {rel} is missing (listed in {MANIFEST_FILE})")
        if actual[rel] != digest:
            raise IntegrityError(
                f"{name}: {rel} has sha256 {actual[rel][:16]}..., {MANIFEST_FILE} says "
                f"{digest[:16]}...: the file changed after export; re-run `make export`"
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise IntegrityError(f"{name}: {extra[0]} is not listed in {MANIFEST_FILE}")
    return manifest


def escaping_link(folder: Path) -> str:
    """The first symlink under `folder` that resolves outside it, as a path relative to
    it, or "". Never follows one to look inside."""
    folder = Path(folder)
    top = folder.resolve()
    for parent, dirs, files in os.walk(folder):  # followlinks=False: links are not entered
        for entry in sorted(dirs + files):
            path = Path(parent) / entry
            if not path.is_symlink():
                continue
            try:
                target = path.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                return path.relative_to(folder).as_posix()
            if not target.is_relative_to(top):
                return path.relative_to(folder).as_posix()
    return ""


def refusal(root: Path, name: str) -> str:
    """Why the folder <root>/<name> is no variant to load ("" when it is one): no
    manifest, one that does not read as a manifest, or a symlink leaving the folder
    (refused, not followed). A variant folder that is itself a symlink must stay inside
    the repository. Cheap: the sha256 of the files is `verify`'s job, at load time."""
    root, folder = Path(root), Path(root) / name
    if folder.is_symlink() and not folder.resolve().is_relative_to(root.resolve()):
        return "the folder is a symlink to a place outside the repository; refused, not followed"
    if not (folder / MANIFEST_FILE).is_file():
        return f"no {MANIFEST_FILE}: not an exported variant; run `make export`"
    link = escaping_link(folder)
    if link:
        return f"{link} {LINK_OUT}"
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (ValueError, OSError) as e:
        return f"{MANIFEST_FILE} is not valid JSON ({e}); re-run `make export`"
    if not isinstance(manifest, dict):
        return f"{MANIFEST_FILE} is not a JSON object; re-run `make export`"
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        return f"{MANIFEST_FILE} lacks {', '.join(missing)}; re-run `make export`"
    return ""


def variants(root: Path) -> dict[str, Path]:
    """The published variant folders under root by name, sorted (in-progress and stale
    dot-folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
    }


def stage(root: Path, name: str) -> Path:
    """A fresh, empty hidden folder beside the variant's final place (same filesystem, so
    `publish` is a rename)."""
    staged = Path(root) / f"{TMP_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    return staged


def publish(staged: Path, root: Path, name: str) -> Path:
    """Move a complete staged variant into place, replacing any previous one.

    A directory cannot be atomically swapped with a portable rename, so the old variant
    is first renamed aside; a kill between the two renames leaves no variant and an
    `.old-` folder that `clean_stale` puts back.
    """
    final = Path(root) / name
    old = Path(root) / f"{OLD_PREFIX}{name}-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def clean_stale(root: Path) -> None:
    """Delete the leftovers of exports that died; restore a variant a dead export had
    renamed aside and not replaced. Folders of a running export are left alone."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        prefix = next((p for p in (TMP_PREFIX, OLD_PREFIX) if path.name.startswith(p)), None)
        if prefix is None:
            continue
        name, _, pid = path.name[len(prefix) :].rpartition("-")
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if prefix == OLD_PREFIX and name and not (root / name).exists():
            os.rename(path, root / name)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
