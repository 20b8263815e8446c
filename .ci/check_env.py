"""CI environment check: ``pip check`` clean except the peers' undeclarable torchvision/torchaudio, and
every peer imports (they fail with RuntimeError/OSError, not ImportError, when a broken build is present)."""

import importlib
import subprocess
import sys

ALLOWED_MISSING = ("torchvision", "torchaudio", "scienceplots", "tensorboard")

out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
problems = [line for line in out.splitlines()
            if line.strip() and "No broken requirements" not in line
            and not any(f"requires {name}," in line.lower() for name in ALLOWED_MISSING)]
for name in ("torchvision", "torchaudio"):
    try:
        importlib.import_module(name)
        problems.append(f"{name} is installed (no CPU build exists here; a peer pulled it in)")
    except ImportError:
        pass
    except Exception as e:  # a broken build: exactly what must not be left behind
        problems.append(f"{name} is installed but broken: {type(e).__name__}: {e}")
for mod in ("torch", "spike", "spike.events", "snntorch", "spikingjelly.activation_based.neuron", "norse.torch",
            "DCLS.construct.modules", "neurobench", "tonic", "numba"):
    try:
        importlib.import_module(mod)
    except Exception as e:
        problems.append(f"import {mod} failed: {type(e).__name__}: {e}")
import torch  # noqa: E402

if torch.__version__.split("+")[0] != "2.13.0":
    problems.append(f"torch {torch.__version__} installed, expected 2.13.0 (CPU)")
if problems:
    print("environment check failed:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"environment ok: torch {torch.__version__}, pip check clean apart from {ALLOWED_MISSING}")
