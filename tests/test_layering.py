"""Layers import downward only; the numba event code never imports torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "spike"

# layer of each subpackage/module; a module may import only from layers <= its own
LAYER = {"core": 0, "surrogate": 1, "neurons": 1, "synapses": 1, "events": 1, "data": 1, "sim": 1, "io": 1,
         "models": 2, "archs": 2, "prune": 2, "nir": 2, "backends": 2, "energy": 2, "inference": 3, "train": 3, "cli": 4}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def _part(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if parts[0] == "spike" and len(parts) > 1 else None


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_downward(path):
    rel = path.relative_to(PKG)
    own = rel.parts[0].removesuffix(".py") if len(rel.parts) > 0 else None
    if own == "__init__":
        return
    assert own in LAYER, f"spike/{rel}: part {own!r} has no layer in tests/test_layering.py's LAYER; add it"
    for mod in _imports(path):
        other = _part(mod)
        if other is None or other not in LAYER or other == own:
            continue
        # the backend registry maps names to module paths lazily (strings), not imports
        assert LAYER[other] <= LAYER[own] or (own, other) in {("data", "events"), ("data", "sim"), ("data", "io")}, \
            f"{rel} (layer {LAYER[own]}) imports {mod} (layer {LAYER[other]})"


def test_event_code_never_imports_torch():
    for path in list((PKG / "events").rglob("*.py")) + list((PKG / "sim").rglob("*.py")):
        assert not any(m == "torch" or m.startswith("torch.") for m in _imports(path)), path
    code = ("import sys, spike.events, spike.events.frames, spike.sim, spike.sim.esim, spike.core.events; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
