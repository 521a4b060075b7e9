#!/usr/bin/env bash
# Installs the Adversarial Robustness Toolbox (ART, the maintained NumPy-driven attack
# library) into bench/.art-lib, apart from the project's lock, for
# bench/library_reference.py: the same-run reference the Evaluator's AutoAttack suite
# is timed against. ART is pure Python and every dependency it imports for its
# TensorFlow v2 attacks (numpy, scipy, scikit-learn, six, tqdm) is already in the
# project's .venv, so it goes in with --no-deps and runs on the project's own
# TensorFlow: the comparison is of the attack code, not of two TF builds.
#
# Idempotent: a stamp holding the requirement is written after a successful install
# and checked first. ART_LIB overrides the directory, ART_PIP the pip to install with
# (default: the project's .venv python -m pip, else bench/.nsl-venv's, else pip3).
#
#   bash bench/art_lib.sh          # prints the directory on its last line
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="${ART_LIB:-$here/.art-lib}"
req="adversarial-robustness-toolbox==1.20.1"
stamp="$lib/.installed"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$req" ]]; then
  echo "$lib"
  exit 0
fi

pick_pip() {
  if [[ -n "${ART_PIP:-}" ]]; then echo "$ART_PIP"; return; fi
  for py in "$here/../.venv/bin/python" "$here/.nsl-venv/bin/python"; do
    if [[ -x "$py" ]] && "$py" -m pip --version >/dev/null 2>&1; then
      echo "$py -m pip"; return
    fi
  done
  command -v pip3 >/dev/null 2>&1 && { echo pip3; return; }
  echo "art_lib.sh: no pip found; set ART_PIP" >&2
  exit 1
}

pip="$(pick_pip)"
echo "art_lib.sh: installing $req into $lib with $pip" >&2
rm -rf "$lib"
$pip install --quiet --disable-pip-version-check --no-deps --target "$lib" "$req" >&2
echo "$req" > "$stamp"
echo "$lib"
