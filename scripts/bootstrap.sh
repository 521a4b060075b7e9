#!/usr/bin/env bash
# Creates .venv with a CPython 3.10 interpreter and installs requirements.lock plus
# the project. TFX 1.16 supports Python 3.9-3.10 only, so the interpreter is searched
# for rather than taken from `python3`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
UV_VERSION=0.13.9

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python() {
  local cand
  if [ -n "${PYTHON310:-}" ]; then
    is_py310 "$PYTHON310" && { echo "$PYTHON310"; return; }
    echo "error: PYTHON310=$PYTHON310 is not a working Python 3.10 interpreter" >&2; return 1
  fi
  # A pyenv shim may exist on PATH yet refuse to run, so each candidate is executed.
  if cand=$(command -v python3.10 2>/dev/null) && is_py310 "$cand"; then echo "$cand"; return; fi
  local roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
  for root in "${roots[@]}"; do
    for cand in $(ls -d "$root"/versions/3.10*/bin/python 2>/dev/null | sort -rV); do
      is_py310 "$cand" && { echo "$cand"; return; }
    done
  done
  for cand in /usr/bin/python3.10 /usr/local/bin/python3.10 python3; do
    is_py310 "$cand" && { echo "$cand"; return; }
  done
  cat >&2 <<'MSG'
error: no Python 3.10 interpreter found (TFX 1.16 needs Python 3.9-3.10).
Looked for: $PYTHON310, python3.10 on PATH, pyenv's versions/3.10.*, /usr/bin/python3.10.
Install one, e.g. `pyenv install 3.10` or `apt-get install python3.10 python3.10-venv`,
or point PYTHON310 at it: `make test PYTHON310=/path/to/python3.10`.
MSG
  return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_py310 "$VENV/bin/python"; then
  PY=$(find_python)
  echo "bootstrap: creating $VENV with $PY ($("$PY" --version 2>&1))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q "uv==$UV_VERSION" 2>&1 | grep -v -E "^WARNING: Location 'file:" || true
# uv installs the fully pinned lock without resolving, so nothing backtracks.
"$VENV/bin/uv" pip sync -q --compile-bytecode --python "$VENV/bin/python" requirements.lock
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version 2>&1), lock $(grep -c '==' requirements.lock) pins)"
