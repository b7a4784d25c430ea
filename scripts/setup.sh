#!/usr/bin/env bash
# Set up radraft on a fresh Debian/Ubuntu machine: system tools (apt-get) and a virtual
# environment in .venv with the project and its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if command -v apt-get >/dev/null 2>&1; then
  # dcmtk: storescu/echoscu/storescp peers; dicom3tools: dciodvfy; the servers for the
  # Postgres + Redis test run; chromium for the web app's browser tests.
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    dcmtk dicom3tools postgresql redis-server chromium chromium-driver >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The CPU build of PyTorch first (a looser requirement would pull a multi-GB CUDA build);
# radraft itself only asks for torch>=2.4, so GPU hosts keep theirs.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "radraft installed in $(pwd)/.venv"
