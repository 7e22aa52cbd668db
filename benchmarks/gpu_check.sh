#!/usr/bin/env bash
# The GPU path checked in minutes: device tests, `planet bench` and a short training run.
#
#   benchmarks/gpu_check.sh --out results/gpu/nvidia-h200      a CUDA machine: under 8 minutes
#   benchmarks/gpu_check.sh --device cpu --quick --out DIR      the CPU dry run (CI runs it)
#   benchmarks/gpu_check.sh --fetch-wheels                      where pip reaches the index:
#                                                               gymnasium's wheels into .whl/
#
# Needs PyTorch, numpy, pytest, tqdm, tensorboard and gymnasium (toy:dot is a Gymnasium env);
# MuJoCo and dm_control are optional. A GPU machine with PyTorch but no gymnasium gets it from
# the repo's .whl/ (carried along): installed into a temporary folder, nothing else touched.
# Python: $PYTHON, else the repo's .venv/bin/python where setup.sh made one, else python3.
# Stages, output files and the rule for switch defaults: python -m planet.gpu_check --help.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

# Versions within pyproject's range (gymnasium>=1.3,<1.4), which setup.sh installs; both are
# pure Python.
wheels=(gymnasium==1.3.0 farama-notifications==0.0.6)
if [ "${1:-}" = "--fetch-wheels" ]; then
  "$python" -m pip download -q --no-deps --only-binary=:all: -d "$root/.whl" "${wheels[@]}"
  echo "gpu_check: wheels in $root/.whl: $(ls "$root/.whl" | tr '\n' ' ')"
  exit 0
fi

if ! "$python" -c "import gymnasium" 2>/dev/null; then
  if compgen -G "$root/.whl/gymnasium-*.whl" >/dev/null; then
    site="$(mktemp -d)"
    trap 'rm -rf "$site"' EXIT
    if "$python" -m pip install -q --no-index --no-deps --no-compile \
        --disable-pip-version-check --root-user-action=ignore --target "$site" "$root"/.whl/*.whl
    then
      export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
      echo "gpu_check: gymnasium installed from .whl/ into $site (this run only)"
    else  # a Python without pip, say: only the training stage needs gymnasium
      echo "gpu_check: could not install .whl/ (see above): the training stage will be skipped"
    fi
  else
    echo "gpu_check: gymnasium is not installed and .whl/ holds no wheel of it: the training" \
         "stage will be skipped (benchmarks/gpu_check.sh --fetch-wheels brings it)"
  fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
"$python" -m planet.gpu_check "$@"
