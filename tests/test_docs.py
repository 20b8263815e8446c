"""The README and the docs site stay consistent with the repository (the tutorials themselves run in
``mkdocs build --strict``; these checks need neither mkdocs nor a kernel)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

CI_INSTALL = """<!-- ci:install -->
```bash
python3 -m venv .venv && . .venv/bin/activate
pip install torch==2.13.0          # CPU build; any torch >=2.2,<2.14 works
pip install -e ".[test]"
```
<!-- /ci:install -->"""

CI_TEST = """<!-- ci:test -->
```bash
python -m pytest -q
```
<!-- /ci:test -->"""

CI_DOCS = """<!-- ci:docs -->
```bash
pip install -e ".[docs]" && mkdocs build --strict
```
<!-- /ci:docs -->"""

CI_PEERS = """<!-- ci:peers -->
```bash
bash .ci/install_peers.sh && python -m pytest -q -m "peers and not slow and not gpu"
```
<!-- /ci:peers -->"""

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_readme_is_a_landing_page_with_the_ci_blocks():
    text = README.read_text()
    assert CI_INSTALL in text, "README: the <!-- ci:install --> block must be exactly the one CI runs"
    assert CI_TEST in text, "README: the <!-- ci:test --> block must be exactly the one CI runs"
    assert CI_DOCS in text, "README: the <!-- ci:docs --> block (.ci/run builds the docs from it) is missing"
    assert CI_PEERS in text, "README: the <!-- ci:peers --> block (.ci/run runs the peer tests from it) is missing"
    assert len(text.splitlines()) < 150, f"README has {len(text.splitlines())} lines; keep it a landing page"
    for must in ('bash .ci/install_peers.sh && python -m pytest -q -m "peers and not slow and not gpu"',
                 'pip install -e ".[docs]" && mkdocs build --strict'):
        assert must in text, f"README should mention `{must}`"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not inside code blocks
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        assert (path.parent / file).exists(), f"{path.relative_to(ROOT)}: broken link {target!r}"


def _nav_entries() -> list[str]:
    return re.findall(r":\s+(\S+\.(?:md|py))\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)


def test_every_page_and_tutorial_is_in_the_nav():
    nav = set(_nav_entries())
    assert nav, "no nav entries found in mkdocs.yml"
    for entry in nav:
        assert (DOCS / entry).is_file(), f"mkdocs.yml nav names {entry}, which does not exist"
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} | {
        str(p.relative_to(DOCS)) for p in (DOCS / "tutorials").glob("*.py")}
    assert pages <= nav, f"pages missing from the mkdocs.yml nav: {sorted(pages - nav)}"


@pytest.mark.parametrize("path", sorted((DOCS / "tutorials").glob("*.py")), ids=lambda p: p.name)
def test_tutorials_are_percent_scripts(path):
    text = path.read_text()
    assert text.startswith("# %% [markdown]\n# # "), f"{path.name}: must open with a markdown cell and a title"
    compile(text, str(path), "exec")
    assert "runs/" not in text, f"{path.name}: write run folders to a temporary directory, not the repository"


def test_public_modules_have_api_pages():
    documented = set(re.findall(r"^::: (\S+)", "\n".join(p.read_text() for p in (DOCS / "api").glob("*.md")), re.M))
    for module in ("spike.neurons", "spike.surrogate", "spike.synapses", "spike.events", "spike.io", "spike.sim",
                   "spike.data", "spike.train", "spike.inference", "spike.energy", "spike.core.config"):
        assert any(d == module or d.startswith(module + ".") for d in documented), f"no API page for {module}"
    for d in documented:
        assert (ROOT / (d.replace(".", "/") + ".py")).is_file() or (ROOT / d.replace(".", "/") / "__init__.py").is_file(), \
            f"docs/api documents {d}, which does not exist"


# -- the griffe extension that adapts the house docstring style (docs/griffe_house_style.py) --------------
@pytest.fixture(scope="module")
def house_style():
    pytest.importorskip("griffe", reason="docs extra not installed")
    import importlib.util

    spec = importlib.util.spec_from_file_location("griffe_house_style", DOCS / "griffe_house_style.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grouped_params_are_split_one_per_name(house_style):
    doc = "Title.\n\nArgs:\n    a, b: shared\n        continued.\n    c: own.\n\nReturns:\n    x, y: not params.\n"
    out = house_style.split_grouped_params(doc)
    assert "    a: shared\n        continued.\n    b: shared\n        continued.\n    c: own." in out
    assert "    x, y: not params." in out  # outside the Args section: untouched


def test_simple_table_becomes_markdown(house_style):
    doc = "Intro:\n\n====  =====  ====\nname  kind   why\n====  =====  ====\na     one    first\n             more\nb     two    second\n====  =====  ====\n"
    out = house_style.convert_simple_tables(doc)
    assert "| name | kind | why |" in out
    assert "| a | one | first more |" in out and "| b | two | second |" in out
    assert "====" not in out


def test_math_becomes_arithmatex(house_style):
    out = house_style.convert_math("See :math:`\\beta`.\n\n.. math::\n    a &= b \\\\\n    c &= d\n\nAfter.")
    assert "\\(\\beta\\)" in out
    assert "$$\n\\begin{aligned}\na &= b \\\\\nc &= d\n\\end{aligned}\n$$" in out
    assert out.rstrip().endswith("After.")
