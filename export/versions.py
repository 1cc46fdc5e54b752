"""Model versions: each export publishes version N+1 of a variant beside the newest ones kept
(Triton's numeric version folders), and exactly one version is live.

<variant>/config.pbtxt    version_policy: latest 1, or specific [N] after a rollback
<variant>/manifest.json   what every reader reads: the live version's record at the top
                          level, `version` (the live one), `version_policy`, `model_versions`
                          ({N: the record version N was exported with, its own files'
                          sha256 under `files`}) and `files` (every file of the variant)
<variant>/<N>/model.<ext>

A version's record says where it came from: the trainer, the training run (`run`: data,
seed, init hash, test metrics), the checkpoint's sha256, the runtimes' versions.

Kept versions move into the new variant folder by hard link (no copy), and the variant is
still published whole by one rename (repository.publish): a reader sees the old set of
versions or the new one. A version number is never used twice. Versions whose tensors differ
from the new export's (another image size, other labels) cannot share its config.pbtxt:
they are dropped, and the export says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from export import repository
from export.triton_config import with_version_policy

KEEP = 3  # versions a variant keeps, the new one included (export --keep-versions)
LATEST = {"latest": 1}  # Triton's default policy, stated: serve the newest version
# Top-level keys of a variant's manifest that belong to no single version.
VARIANT_KEYS = ("files", "version", "version_policy", "model_versions")
# What all versions of one variant must share: config.pbtxt describes them together.
SHARED = ("name", "format", "input", "output", "labels")


class RollbackError(ValueError):
    """No version to make live; the message says which versions there are."""


def live(manifest: dict) -> str:
    """The version a variant serves (exports older than versioning hold only `1`)."""
    return str(manifest.get("version", "1"))


def records(manifest: dict) -> dict[str, dict]:
    """{version: its record} in version order, for versioned and older manifests alike."""
    found = manifest.get("model_versions")
    if not found:  # one version, described by the top level
        version = live(manifest)
        record = {k: v for k, v in manifest.items() if k not in VARIANT_KEYS}
        found = {version: {**record, "files": own_files(manifest.get("files", {}), version)}}
    return dict(sorted(found.items(), key=lambda item: int(item[0])))


def own_files(files: dict[str, str], version: str) -> dict[str, str]:
    return {rel: digest for rel, digest in files.items() if rel.startswith(f"{version}/")}


def numbered(folder: Path) -> list[int]:
    """The numeric version folders of a variant folder, ascending."""
    if not Path(folder).is_dir():
        return []
    return sorted(int(p.name) for p in Path(folder).iterdir() if p.is_dir() and p.name.isdigit())


def carried(root: Path, name: str, new: dict, keep: int) -> tuple[int, dict[str, dict], str]:
    """For the next export of <root>/<name>: its version number, the published versions it
    keeps (the newest keep-1 that share its tensors), and a line saying what is dropped and
    why ("" when nothing is). A variant whose files fail their manifest keeps nothing."""
    folder = Path(root) / name
    number = max(numbered(folder), default=0) + 1
    if not (folder / repository.MANIFEST_FILE).is_file():
        return number, {}, ""
    try:
        manifest = repository.verify(folder)
    except repository.IntegrityError as e:
        return number, {}, f"no earlier version kept: {e}"
    every = records(manifest)
    number = max(number, *(int(v) + 1 for v in every))
    fits = {v: r for v, r in every.items() if all(r.get(k) == new.get(k) for k in SHARED)}
    kept = dict(list(fits.items())[max(0, len(fits) - (keep - 1)) :]) if keep > 1 else {}
    dropped = [v for v in every if v not in kept]
    why = ""
    if dropped:
        other = [v for v in dropped if v not in fits]
        why = f"version(s) {', '.join(dropped)} dropped (--keep-versions {keep}" + (
            f"; {', '.join(other)} take other tensors or labels)" if other else ")"
        )
    return number, kept, why


def deployed_size(folder: Path) -> int:
    """Bytes of a variant as one version of it is deployed: its shared files (config,
    labels, warmup) and its live version, not the other versions kept beside it."""
    folder = Path(folder)
    current = live(repository.read_manifest(folder))
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not _other_version(p.relative_to(folder).parts[0], current)
    )


def _other_version(top: str, current: str) -> bool:
    return top.isdigit() and top != current


def link_versions(source: Path, staged: Path, versions: list[str]) -> None:
    """Hard-link each version folder of `source` into `staged` (a copy where links fail)."""
    for version in versions:
        shutil.copytree(Path(source) / version, Path(staged) / version, copy_function=_link)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def assemble(record: dict, version: str, kept: dict[str, dict], files: dict[str, str]) -> dict:
    """The variant manifest with `version` live under the `latest` policy; `files`: the
    sha256 of every file staged (the new version's among them)."""
    every = {**kept, version: {**record, "files": own_files(files, version)}}
    return {**record, "version": version, "version_policy": LATEST, "model_versions": every}


def rollback(root: Path, name: str, to: str | None = None) -> tuple[str, str]:
    """Make version `to` (default: the newest one older than the live one) live again, by
    pinning config.pbtxt's version_policy to it; the variant is re-published whole, as an
    export does. Returns (old live, new live). Refuses a variant whose files fail their
    manifest (repository.IntegrityError) and a version it does not hold (RollbackError)."""
    folder = Path(root) / name
    manifest = repository.verify(folder)
    every, current = records(manifest), live(manifest)
    if to is None:
        older = [v for v in every if int(v) < int(current)]
        if not older:
            raise RollbackError(
                f"{name}: version {current} is live and no older version is kept "
                f"(it holds {', '.join(every)}); nothing to roll back to"
            )
        to = older[-1]
    to = str(to)
    if to not in every:
        raise RollbackError(f"{name}: no version {to!r}; it holds {', '.join(every)}")
    staged = repository.stage(root, name)
    try:
        link_versions(folder, staged, list(every))
        for rel in manifest["files"]:
            if not rel.split("/")[0].isdigit():  # labels.txt, config.pbtxt, warmup/
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / rel, staged / rel)
        config = staged / repository.CONFIG_FILE
        if config.is_file():
            config.write_text(with_version_policy(config.read_text(), [int(to)]))
        record = {k: v for k, v in every[to].items() if k != "files"}
        top = {**record, "version": to, "version_policy": {"specific": [int(to)]}}
        repository.write_manifest(staged, {**top, "model_versions": every})
        repository.publish(staged, root, name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return current, to
