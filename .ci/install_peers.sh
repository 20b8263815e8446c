#!/usr/bin/env bash
# Installs the peer libraries that tests/ compares spike against (pytest -m peers), into the active
# environment: SpikingJelly, Norse, DCLS, NeuroBench (snnTorch comes with the test extra).
# They declare torchvision/torchaudio, which have no CPU build here (and whose CUDA builds are GBs), so
# each is installed with --no-deps and then what it really imports is installed by name.
# Usage, after README's install lines:  bash .ci/install_peers.sh && python -m pytest -q -m "peers and not slow"
set -euo pipefail
python -m pip install -q --no-deps spikingjelly==2.0.0 dcls==0.1.1 neurobench==2.3.0 nirtorch
# norse ships only an sdist whose version comes from setuptools_scm (0.0.0 without git metadata)
python -m pip install -q setuptools_scm
SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0 python -m pip install -q --no-deps --no-build-isolation norse==1.1.0
# what the peers import at run time
python -m pip install -q loguru scipy packaging requests nir
# pip check clean apart from the undeclarable torchvision/torchaudio, and every peer imports
python "$(dirname "$0")/check_env.py"
