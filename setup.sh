#!/usr/bin/env bash
# One script for a fresh Debian/Ubuntu machine with Python 3.10-3.12:
#   ./setup.sh train [planet train options]   install everything, then train (cartpole-swingup)
#   ./setup.sh test  [pytest options]         install everything, then run the test suite
#   ./setup.sh install                        install only
# It creates .venv/ in the repo, installs PyTorch, MuJoCo 3.17 + dm_control and the rest, and the
# system GL libraries for headless rendering (EGL and OSMesa; Xvfb for the viewer test) and g++
# for torch.compile when it runs as root or with passwordless sudo; otherwise it prints the exact
# apt-get command.
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-install}"
[ $# -gt 0 ] && shift

say() { printf '[setup] %s\n' "$*" >&2; }
case "$mode" in
  install|train|test) ;;
  *) say "usage: ./setup.sh [install|train|test] [args...]"; exit 2 ;;
esac

# --- Python --------------------------------------------------------------------------------------
python=""
for candidate in python3.11 python3.12 python3.10 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
      'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  say "ERROR: needs Python 3.10-3.12 (dm_control's labmaze has no wheel for 3.13);"
  say "       run: sudo apt-get install -y python3.11 python3.11-venv"
  exit 1
fi

# --- system libraries ---------------------------------------------------------------------------
packages=(libegl1 libopengl0 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglfw3)
# torch.compile (machine.compile_planner, on in the cpu preset) builds C++ kernels: a compiler and
# Python's headers. Without them the planner runs eagerly and says so.
packages+=(g++)
"$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || packages+=("$(basename "$python")-dev")
[ "$mode" = test ] && packages+=(xvfb)
# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in its own package.
"$python" -c 'import ensurepip' 2>/dev/null || packages+=("$(basename "$python")-venv")
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo apt-get);
  else apt=(); fi
  if [ ${#apt[@]} -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
      || { "${apt[@]}" update -qq >/dev/null && \
           "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
      || say "WARNING: could not install ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
  else
    say "WARNING: missing system packages (headless rendering, torch.compile): ${missing[*]}"
    say "         run: sudo apt-get install -y ${missing[*]}"
  fi
fi

# --- Python packages ----------------------------------------------------------------------------
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then  # none yet, or a venv left half-made
  say "creating .venv with $($python --version)"
  rm -rf .venv
  "$python" -m venv .venv || {
    rm -rf .venv
    say "ERROR: venv failed; run: sudo apt-get install -y $(basename "$python")-venv"; exit 1; }
fi
stamp=.venv/.planet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.sh -nt "$stamp" ]; then
  say "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  # PyTorch first, on its own: a plain install from PyPI is the CUDA build with several GB of
  # NVIDIA libraries. A wheel on disk (pip's find-links) wins; then the CUDA build where an NVIDIA
  # driver is present; else PyTorch's CPU-only index.
  torch_spec="torch==2.13.0"
  if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    if .venv/bin/python -m pip install -q --no-index --no-deps "$torch_spec" 2>/dev/null; then
      say "PyTorch: the local wheel"
      .venv/bin/python -m pip install -q "$torch_spec" 2>&1 | grep -v '^WARNING: Location' \
        || true  # its small pure-Python dependencies; torch itself is already there
    elif command -v nvidia-smi >/dev/null 2>&1; then
      say "PyTorch: the CUDA build from PyPI (an NVIDIA driver is present)"
      .venv/bin/python -m pip install -q "$torch_spec"
    else
      say "PyTorch: the CPU-only build from download.pytorch.org"
      .venv/bin/python -m pip install -q "$torch_spec" --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  # Quiet when it works (setuptools' notes about editable installs are not for the user); the
  # whole output when it does not.
  if ! .venv/bin/python -m pip install -q -e ".[test]" > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    say "ERROR: pip could not install planet's packages (above; kept in .venv/pip-install.log)"
    exit 1
  fi
  .venv/bin/python -c "import planet, torch, dm_control, gymnasium" \
    || { say "ERROR: the Python install failed (see above)"; exit 1; }
  touch "$stamp"
fi

case "$mode" in
  install) say "done: .venv/bin/planet --help" ;;
  train)   exec .venv/bin/planet train "$@" ;;
  test)    exec .venv/bin/python -m pytest "$@" ;;
esac
