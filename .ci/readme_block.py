"""Print the shell lines of one marked block of README.md, so CI runs exactly what a newcomer runs.

Usage: ``python3 .ci/readme_block.py NAME`` prints the lines of the fenced code block between
``<!-- ci:NAME -->`` and ``<!-- /ci:NAME -->`` (without the fences). Exits 1, naming the block, if it is
missing, empty or not one fenced block: a README edit that loses the markers breaks CI.
"""

import re
import sys
from pathlib import Path


def block(text: str, name: str) -> str:
    m = re.search(rf"<!-- ci:{re.escape(name)} -->\n(.*?)<!-- /ci:{re.escape(name)} -->", text, re.S)
    if m is None:
        raise SystemExit(f"README.md: no block between <!-- ci:{name} --> and <!-- /ci:{name} -->")
    fence = re.fullmatch(r"\s*```(?:bash|sh|console)?\n(.*?)```\s*", m.group(1), re.S)
    if fence is None or not fence.group(1).strip():
        raise SystemExit(f"README.md: block ci:{name} must hold exactly one non-empty fenced code block")
    return fence.group(1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: readme_block.py NAME")
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write(block((root / "README.md").read_text(encoding="utf-8"), sys.argv[1]))
