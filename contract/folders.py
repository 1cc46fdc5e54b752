"""A folder of class sub-folders, decoded once into a cache (`python -m train.prepare DIR`).

A folder is listed (one sub-folder per class; PNG, JPEG and WebP files at any depth below
it), its files' headers are read in worker processes, then every image is decoded, turned
into the contract's pixels (contract/pixels.py) and written into one uint8 file, in parallel:

    artifacts/data/<folder>-<listing key>/probe.json      what each file's header says
    artifacts/data/<folder>-<listing key>/<size>px-<grey|rgb>/
        images.u8      uint8 (N, size, size, C), C order: np.memmap-able, or read by rows
        labels.npy     int64 (N,)
        meta.json      class names, the files in row order, what was skipped and why

The listing key is a digest of every file's path, size and modification time: a changed
folder is prepared again, an unchanged one never. Each cache is written to a temporary
folder and renamed into place when complete; one process prepares it while any other
(torchrun's ranks, the workers of a multi-worker run) waits for it and reuses it.
$TANDEM_DATA puts the caches elsewhere than artifacts/data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import pixels
from contract.files import write_json_atomic
from contract.paths import ARTIFACTS

DATA = ARTIFACTS / "data"  # where prepared folders go; $TANDEM_DATA moves them (a big disk)
VERSION = 1  # of the decoding (contract/pixels.py); a new one makes every cache anew
DEFAULT_SIZE = 64  # pixels: what a CPU trains in minutes (docs: the training page)
CHUNK = 64  # files a worker decodes per task


class DataError(ValueError):
    """Bad user data: the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Listing:
    root: Path
    classes: list[str]
    files: list[str]  # relative to root, sorted by class then path
    labels: np.ndarray  # int64, per file
    key: str
    home: Path  # this listing's caches: <cache>/<folder>-<key>


def cache_root() -> Path:
    return Path(os.environ.get("TANDEM_DATA") or DATA)


def list_folder(root: str | Path, cache: Path | None = None) -> Listing:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass a folder of class sub-folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels, digest = [], [], hashlib.sha256(f"v{VERSION}".encode())
    kept = []
    for name in classes:
        found = sorted(
            p
            for p in (root / name).rglob("*")
            if p.suffix.lower() in pixels.SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if not found:
            continue
        kept.append(name)
        for path in found:
            stat = path.stat()
            relative = str(path.relative_to(root))
            files.append(relative)
            labels.append(len(kept) - 1)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if len(kept) < 2:
        raise DataError(
            f"{root} has {len(kept)} class sub-folder(s) with PNG/JPEG/WebP images; a "
            "classifier needs at least 2: put each class's images in its own sub-folder"
        )
    digest.update(json.dumps(kept).encode())
    key = digest.hexdigest()
    home = Path(cache or cache_root()) / f"{root.resolve().name}-{key[:16]}"
    return Listing(root, kept, files, np.asarray(labels, np.int64), key, home)


def probe_file(path: Path) -> dict:
    """What a file's header says (nothing is decoded): its size, colour, or why not."""
    from PIL import Image

    try:
        with Image.open(path, formats=pixels.FORMATS) as im:
            width, height = im.size
            return {"size": [width, height], "colour": pixels.is_colour(im)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def probe_chunk(root: Path, files: list[str]) -> list[dict]:
    return [probe_file(root / f) for f in files]


def decode_chunk(
    root: Path, files: list[str], rows: list[int], out: Path, size: int, channels: int
) -> list[tuple[int, str]]:
    """Decode files into their rows of `out` (pwrite: the pages go to the page cache, not
    into this worker); (row, error) for those that fail."""
    from PIL import Image

    frame = size * size * channels
    failed = []
    fd = os.open(out, os.O_WRONLY)
    try:
        for name, row in zip(files, rows, strict=True):
            try:
                with Image.open(root / name, formats=pixels.FORMATS) as im:
                    if im.size[0] * im.size[1] > Image.MAX_IMAGE_PIXELS:
                        raise ValueError(f"{im.size[0]}x{im.size[1]} is over PIL's pixel limit")
                    image = pixels.to_pixels(im, size, size, channels)
                os.pwrite(fd, image.tobytes(), row * frame)
            except Exception as e:
                failed.append((row, f"{type(e).__name__}: {e}"))
    finally:
        os.close(fd)
    return failed


def chunks(n: int) -> Iterator[slice]:
    return (slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK))


def run_parallel(fn, jobs: list[tuple], workers: int, desc: str, quiet: bool) -> list:
    """fn(*job) for every job, in worker processes, results in job order, with a bar."""
    from tqdm import tqdm

    if workers <= 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc, disable=quiet, unit="chunk")]
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        bar = tqdm(total=len(futures), desc=desc, disable=quiet, unit="chunk")
        with bar:
            results = []
            for future in futures:
                results.append(future.result())
                bar.update(1)
    return results


def probe(listing: Listing, workers: int, quiet: bool) -> list[dict]:
    """Every file's header, read once per listing (kept in probe.json)."""
    path = listing.home / "probe.json"
    if path.is_file():
        return json.loads(path.read_text())["files"]
    jobs = [(listing.root, listing.files[s]) for s in chunks(len(listing.files))]
    found = [r for part in run_parallel(probe_chunk, jobs, workers, "probe", quiet) for r in part]
    listing.home.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"root": str(listing.root.resolve()), "files": found})
    return found


def defaults(probed: list[dict]) -> tuple[int, int]:
    """(image size, channels) that follow the data: RGB when any image holds colour; the
    default size, or less for smaller images (their median short side, a multiple of 8)."""
    good = [p for p in probed if "error" not in p]
    if not good:
        return DEFAULT_SIZE, 3
    channels = 3 if any(p["colour"] for p in good) else 1
    short = int(np.median([min(p["size"]) for p in good]))
    return max(8, min(DEFAULT_SIZE, short // 8 * 8)), channels


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """One preparer at a time for a cache; the others wait here, then find it made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def bad_files(listing: Listing, failed: dict[int, str]) -> str:
    shown = [f"{listing.root / listing.files[r]}: {why}" for r, why in sorted(failed.items())[:5]]
    more = f"\n  ... and {len(failed) - 5} more" if len(failed) > 5 else ""
    return (
        f"{len(failed)} of {len(listing.files)} files cannot be read as images:\n  "
        + "\n  ".join(shown)
        + more
        + "\nfix or remove them, or leave them out (counted in meta.json, never silently): "
        + f"python -m train.prepare {listing.root} --skip-bad (and the run's --image-size and "
        + "--channels, if it sets them), then train as before"
    )


def decode_all(
    listing: Listing, size: int, channels: int, skip_bad: bool, workers: int, quiet: bool
) -> Path:
    """Decode the listing into <home>/<size>px-<grey|rgb>/, made once; its folder. The
    caller holds the listing's lock."""
    final = listing.home / f"{size}px-{'rgb' if channels == 3 else 'grey'}"
    if (final / "meta.json").is_file():
        return final
    started = time.perf_counter()
    probed = probe(listing, workers, quiet)
    failed = {r: p["error"] for r, p in enumerate(probed) if "error" in p}
    if failed and not skip_bad:  # before any decoding: a header that fails says enough
        raise DataError(bad_files(listing, failed))
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = tmp / "images.u8"
    with out.open("wb") as f:
        f.truncate(len(listing.files) * size * size * channels)
    rows = [r for r in range(len(listing.files)) if r not in failed]
    jobs = [
        (listing.root, [listing.files[r] for r in rows[s]], rows[s], out, size, channels)
        for s in chunks(len(rows))
    ]
    for part in run_parallel(decode_chunk, jobs, workers, "decode", quiet):
        failed.update(part)
    if failed and not skip_bad:
        shutil.rmtree(tmp)
        raise DataError(bad_files(listing, failed))
    kept = np.asarray([r for r in range(len(listing.files)) if r not in failed], np.int64)
    np.save(tmp / "labels.npy", listing.labels)
    seconds = time.perf_counter() - started
    write_json_atomic(
        tmp / "meta.json",
        {
            "root": str(listing.root.resolve()),
            "key": listing.key,
            "version": VERSION,
            "image_size": size,
            "channels": channels,
            "classes": listing.classes,
            "files": listing.files,
            "rows": kept.tolist(),  # the rows that hold an image (all but skipped files)
            "skipped": [
                {"file": listing.files[r], "error": why} for r, why in sorted(failed.items())
            ],
            "seconds": round(seconds, 3),
            "images_per_s": round(len(kept) / max(seconds, 1e-9), 1),
        },
    )
    tmp.replace(final)
    return final


def prepare(
    root: str | Path,
    image_size: int = 0,
    channels: int = 0,
    skip_bad: bool = False,
    workers: int = 0,
    quiet: bool = False,
    cache: Path | None = None,
) -> Path:
    """The prepared cache of a folder (made when missing); 0 size or channels: from the
    data (`defaults`)."""
    if channels not in (0, 1, 3):
        raise DataError(f"--channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size and image_size < 8:
        raise DataError(f"--image-size must be at least 8 pixels, got {image_size}")
    listing = list_folder(root, cache)
    workers = workers or os.cpu_count() or 1
    with exclusive(listing.home.parent / f"{listing.home.name}.lock"):
        if not (image_size and channels):
            size, colour = defaults(probe(listing, workers, quiet))
            image_size, channels = image_size or size, channels or colour
        return decode_all(listing, image_size, channels, skip_bad, workers, quiet)
