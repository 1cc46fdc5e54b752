"""python -m web: the static site that classifies digits in the browser, no server needed.

python -m web build                  # artifacts/model_repository -> artifacts/web
python -m web serve --port 8001      # serve artifacts/web with COOP/COEP (wasm threads)

Any static server works if it sends `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp`; without them the runtimes use one thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from contract.paths import WEB, add_repository_argument
from harness import browser
from web import site


def fmt_bytes(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def summary(files: dict[str, int], out: Path) -> str:
    """What a visitor downloads: the page, each runtime's files, the models."""
    page = sum(files[f] for f in site.PAGE_FILES)
    models = {f: n for f, n in files.items() if f.startswith("models/")}
    lines = [f"{out}: {len(files)} files, {fmt_bytes(sum(files.values()))}"]
    lines.append(f"  page ({', '.join(site.PAGE_FILES)}): {fmt_bytes(page)}")
    for path in site.VENDOR:
        lines.append(f"  {path}: {fmt_bytes(files[path])}")
    variants = {f.split("/")[1] for f in models}
    lines.append(f"  models/: {len(variants)} variants, {fmt_bytes(sum(models.values()))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the site")
    add_repository_argument(build, help="model repository to copy from")
    build.add_argument("--out", type=Path, default=WEB, help="where the site goes")
    serve = commands.add_parser("serve", help="serve the site with the isolation headers")
    serve.add_argument("--site", type=Path, default=WEB, help="the built site")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=8001, help="port to bind")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(summary(site.build(args.repository, args.out), args.out))
            print("serve it: make web-serve, or python -m web serve")
            return 0
        with browser.serve(args.site, args.host, args.port) as url:
            print(f"serving {args.site} at {url}/ (Ctrl-C stops)", flush=True)
            while True:
                time.sleep(3600)
    except (site.SiteError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
