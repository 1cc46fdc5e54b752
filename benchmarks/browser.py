"""Time per image in the browser: each variant of the built site in headless Chromium.

    python -m benchmarks.browser [--site artifacts/web] [--repeats 30]

Per variant, the median over `repeats` calls (after a warm-up) of one call at batch 1 and
at batch 64, divided by the batch, timed inside the page (performance.now around the
runtime call: no Playwright round trip). Also what a visitor downloads. Writes
artifacts/reports/browser_bench.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.files import write_json_atomic
from contract.paths import REPORTS, WEB
from harness import browser
from web import site as web_site

BATCHES = (1, 64)


def sizes(root: Path) -> dict:
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")}
    return {
        "total_bytes": sum(n for p, n in files.items() if (root / p).is_file()),
        "page_bytes": sum(files[p] for p in web_site.PAGE_FILES),
        "vendor_bytes": {p: files[p] for p in web_site.VENDOR},
        "models_bytes": sum(n for p, n in files.items() if p.startswith("models/")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=WEB, help="the site `make web` built")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch size")
    parser.add_argument("--out", type=Path, default=REPORTS / "browser_bench.json")
    args = parser.parse_args(argv)
    rows = []
    with browser.open_site(args.site) as site:
        threads = site.page.evaluate("self.crossOriginIsolated")
        for entry in browser.read_index(args.site):
            row = {"variant": entry["name"], "runtime": entry["runtime"]}
            for batch in BATCHES:
                row[f"ms_per_image_b{batch}"] = site.timing(entry["name"], batch, args.repeats)
            rows.append(row)
            print(
                f"{row['variant']:<26} {row['runtime']:<16}"
                + "".join(f" b{b} {row[f'ms_per_image_b{b}']:7.4f} ms" for b in BATCHES),
                flush=True,
            )
    result = {"cross_origin_isolated": threads, "site": sizes(args.site), "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
