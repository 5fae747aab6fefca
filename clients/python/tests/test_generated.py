"""The committed stubs in topdeck_resilience/_gen are what gen.sh makes from proto/."""

import subprocess
import tempfile
from pathlib import Path

from conftest import PKG_DIR


def test_generated_stubs_are_fresh() -> None:
    committed = PKG_DIR / "topdeck_resilience" / "_gen"
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([str(PKG_DIR / "gen.sh"), tmp], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"gen.sh failed: {r.stderr}"
        fresh = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    have = {p.name: p.read_bytes() for p in committed.iterdir() if p.is_file()}
    assert sorted(have) == sorted(fresh), f"files: got {sorted(have)}, want {sorted(fresh)}: run make python-generate"
    stale = [n for n in fresh if fresh[n] != have[n]]
    assert not stale, f"stale generated stubs {stale}: run make python-generate"


def test_stubs_import_package_relative() -> None:
    for p in (PKG_DIR / "topdeck_resilience" / "_gen").glob("*.py"):
        text = p.read_text()
        assert "from topdeck.resilience" not in text and "import topdeck.resilience" not in text, p.name
