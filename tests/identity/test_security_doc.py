from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_security_doc.py"


def test_security_doc_shows_the_current_matrix_and_public_routes() -> None:
    spec = importlib.util.spec_from_file_location("render_security_doc", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = module.DOC.read_text(encoding="utf-8")
    assert module.rendered() == current, "docs/security.md is stale: run scripts/render_security_doc.py"
    assert "| `user:admin` |" in current
    assert "- `POST /api/v1/auth/login`" in current
