"""python -m export.rollback: make an earlier version of a variant live again.

python -m export.rollback torch.onnx                  # the newest version before the live one
python -m export.rollback torch.onnx --to 1           # a version by number
python -m export.rollback torch.pte                   # found in the edge root beside it

It pins the variant's config.pbtxt to that version (version_policy specific) and re-publishes
the variant whole, as an export does (export/versions.py). A server started with
`--model-control poll` picks it up, one with `--model-control explicit` on a load request;
either checks it before it takes traffic. The next `make export` publishes a new version
and the policy returns to `latest`.
"""

from __future__ import annotations

import argparse
import sys

from contract.paths import add_repository_argument
from export import repository, versions


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export.rollback", description=__doc__.split("\n")[0]
    )
    parser.add_argument("variant", help="the variant folder's name, e.g. torch.onnx")
    parser.add_argument("--to", default=None, help="the version to make live (default: previous)")
    add_repository_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    roots = [args.repository, repository.edge_beside(args.repository)]
    root = next((r for r in roots if (r / args.variant / repository.MANIFEST_FILE).is_file()), None)
    if root is None:
        found = ", ".join(repository.variants(args.repository)) or "none: run `make export`"
        print(
            f"error: no variant {args.variant!r} in {args.repository} (variants: {found})",
            file=sys.stderr,
        )
        return 2
    try:
        old, new = versions.rollback(root, args.variant, args.to)
    except (repository.IntegrityError, versions.RollbackError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.variant}: version {new} is live (was {old})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
