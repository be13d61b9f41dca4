#!/usr/bin/env python3
"""Regenerate the permission matrix in docs/security.md from hims.core.permissions and the app's routes."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr

from hims.app import create_app
from hims.identity.matrix import render_matrix, replace_block
from hims.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def rendered() -> str:
    """The doc as it should be."""
    app = create_app(
        Settings(database_url=SecretStr("postgresql://render@127.0.0.1:1/none"), log_level="warning")
    )
    return replace_block(DOC.read_text(encoding="utf-8"), render_matrix(app))


if __name__ == "__main__":
    text = rendered()
    if "--check" in sys.argv:
        sys.exit(0 if text == DOC.read_text(encoding="utf-8") else 1)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
