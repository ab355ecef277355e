#!/usr/bin/env bash
# Creates/updates the virtual environment with everything the tool and its tests need.
# Idempotent: pip skips what is installed; the OpenPifPaf wheel is built once and cached.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
CACHE=${ANNOTATOR_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facemask-annotator/wheels}
TORCH="torch==2.14.1 torchvision==0.29.1"
OPENPIFPAF=0.13.11

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24" setuptools wheel
echo "setup: torch"
"${PIP[@]}" install $TORCH

# OpenPifPaf 0.13.11 pins torch 1.13 and compiles with -std=c++17; torch 2.14 headers need C++20.
# Build it against our torch once, keep the wheel.
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/openpifpaf-$OPENPIFPAF-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "setup: building openpifpaf $OPENPIFPAF against torch (a few minutes, once)"
  tmp=$(mktemp -d)
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" openpifpaf==$OPENPIFPAF
  tar -xzf "$tmp"/openpifpaf-$OPENPIFPAF.tar.gz -C "$tmp"
  sed -i 's/-std=c++17/-std=c++20/g' "$tmp"/openpifpaf-$OPENPIFPAF/setup.py
  "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$CACHE" "$tmp"/openpifpaf-$OPENPIFPAF
  rm -rf "$tmp"
  wheel=$(ls "$CACHE"/openpifpaf-$OPENPIFPAF-*.whl | head -n1)
fi
"${PIP[@]}" install --no-deps "$wheel"
"${PIP[@]}" install pysparkling python-json-logger importlib_metadata

# facenet-pytorch ships MTCNN weights in its wheel (offline detector); its metadata pins an old
# torch and numpy<2 that it does not actually need.
"${PIP[@]}" install --no-deps facenet-pytorch==2.6.0

echo "setup: project and dependencies"
# [ray]: the tests run `extract --engine ray` on a local Ray cluster
"${PIP[@]}" install -e ".[dev,ray]"

# Headless Chromium for the end-to-end tests: Debian's package, never `playwright install`.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium not found; install it (e.g. apt-get install chromium) to run the browser tests" >&2
  fi
fi
# PostgreSQL server binaries: the tests start a throwaway server (tests/pg.py) to run the queue
# suite on PostgreSQL too. Debian keeps initdb/pg_ctl in /usr/lib/postgresql/N/bin, off PATH.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's postgresql for the PostgreSQL tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL not found; install it (e.g. apt-get install postgresql) to run the PostgreSQL tests" >&2
  fi
fi
echo "setup: done"
