"""Where every stage reads and writes by default, and the one `--repository` flag."""

from __future__ import annotations

import argparse
from pathlib import Path

ARTIFACTS = Path("artifacts")
CHECKPOINTS = ARTIFACTS / "checkpoints"
MODEL_REPOSITORY = ARTIFACTS / "model_repository"
EDGE = ARTIFACTS / "edge"  # variants Triton cannot load (ExecuTorch), same layout
WEB = ARTIFACTS / "web"  # the static in-browser site
REPORTS = ARTIFACTS / "reports"

REPOSITORY_HELP = "model repository: one <trainer>.<format>/ folder per variant"


def add_repository_argument(
    parser: argparse.ArgumentParser, flag: str = "--repository", help: str = REPOSITORY_HELP
) -> None:
    """The model repository a command reads (or, for export, writes): a path, by default
    artifacts/model_repository."""
    parser.add_argument(
        flag, type=Path, default=MODEL_REPOSITORY, help=f"{help} (default: {MODEL_REPOSITORY})"
    )
