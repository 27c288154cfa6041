# SPDX-License-Identifier: MPL-2.0
"""Every tracked Python and shell source file names its license (SPDX), as the release needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG = "SPDX-License-Identifier: MPL-2.0"


def sources() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    out = []
    for rel in listed:
        path = ROOT / rel
        if path.is_symlink() or not path.is_file() or "fixtures" in rel.split("/"):
            continue
        first = path.read_text(errors="replace").split("\n", 1)[0]
        shell = first.startswith("#!") and ("bash" in first or "/sh" in first)
        if rel.endswith((".py", ".sh")) or shell:
            out.append(path)
    return out


def test_every_source_file_has_an_spdx_header() -> None:
    files = sources()
    assert len(files) > 100  # the listing found the tree
    missing = [str(p.relative_to(ROOT)) for p in files if TAG not in p.read_text()[:400]]
    assert missing == [], f"add '# {TAG}' near the top of: {missing}"
