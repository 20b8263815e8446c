"""The newcomer path: README's install lines give every module spike imports.

CI runs README's ``ci:install`` block verbatim in a fresh environment and then its ``ci:test`` block
(``.ci/run``); these tests are what fails there if an import spike needs (even lazily, e.g. the AEDAT4
decoder) is left out of the dependencies that block installs.
"""

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Imported by spike only where the platform/version calls for it, each behind a clear error.
OPTIONAL = {
    "triton": "GPU kernels; imported lazily by the triton backend, in the test extra on linux x86_64",
    "tomli": "only on Python < 3.11 (tomllib before)",
}


def _third_party_imports() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "spike").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "spike":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_the_scan_finds_the_lazy_decoder_imports():
    found = _third_party_imports()
    assert {"torch", "numba", "aedat", "faery"} <= set(found)


@pytest.mark.parametrize("module", sorted(_third_party_imports()))
def test_every_module_spike_imports_is_installed(module):
    if module in OPTIONAL:
        pytest.skip(f"{module}: {OPTIONAL[module]}")
    where = _third_party_imports()[module]
    assert importlib.util.find_spec(module) is not None, (
        f"{where} imports {module}, which README's install lines did not install: add it to "
        f"[project] dependencies (or the test extra) in pyproject.toml")


def test_readme_blocks_extract_and_are_what_ci_runs():
    out = {}
    for name in ("install", "test", "docs"):
        r = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_block.py"), name],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        out[name] = r.stdout
    assert "pip install torch==2.13.0" in out["install"]
    assert 'pip install -e ".[test]"' in out["install"]
    assert "pytest" in out["test"]
    assert "mkdocs build --strict" in out["docs"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for name in ("install", "test", "docs"):
        assert f"run_block {name}" in ci


def test_readme_block_rejects_a_missing_block(tmp_path):
    spec = importlib.util.spec_from_file_location("readme_block", ROOT / ".ci" / "readme_block.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit, match="ci:install"):
        mod.block("# a README without markers\n", "install")
    with pytest.raises(SystemExit, match="one non-empty fenced"):
        mod.block("<!-- ci:test -->\n\n<!-- /ci:test -->\n", "test")
    assert mod.block("<!-- ci:test -->\n```bash\npython -m pytest -q\n```\n<!-- /ci:test -->\n",
                     "test") == "python -m pytest -q\n"
