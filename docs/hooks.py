"""MkDocs hook: README.md, the repository's front page, is the site's index page too.

Its links into docs/ are made relative to the site (`docs/parity.md` -> `parity.md`), so
the strict build checks them as it checks every page's; a link to a file outside docs/
fails it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

DOCS_LINK = re.compile(r"\]\((?:\./)?docs/")


def on_files(files: Files, config) -> Files:
    readme = Path(config.config_file_path).parent / "README.md"
    page = DOCS_LINK.sub("](", readme.read_text())
    files.append(File.generated(config, "index.md", content=page))
    return files
