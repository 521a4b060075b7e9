#!/usr/bin/env bash
# Builds bench/.nsl-venv: the reference library's own stack, apart from the project's
# lock: tensorflow==2.15.1 + neural-structured-learning==1.4.0 (NSL 1.4 does not
# import on TF 2.16, which lacks tf.estimator). Used by bench/nsl_reference.py, which
# bench/train_step.py --reference nsl runs as a subprocess.
#
# Idempotent: a stamp holding the requirement line is written after a successful
# install and checked first, so a second run does nothing. NSL_VENV overrides the path,
# NSL_PYTHON the interpreter (any Python 3.9-3.11: TF 2.15 has no wheel for 3.12+).
#
#   bash bench/nsl_venv.sh          # prints the venv's python path on its last line
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NSL_VENV:-$here/.nsl-venv}"
reqs="tensorflow==2.15.1 neural-structured-learning==1.4.0"
stamp="$venv/.installed"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$reqs" && -x "$venv/bin/python" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

pick_python() {
  if [[ -n "${NSL_PYTHON:-}" ]]; then echo "$NSL_PYTHON"; return; fi
  # The project's own interpreter (3.10) when its venv exists, then any 3.9-3.11.
  local cfg="$here/../.venv/pyvenv.cfg"
  if [[ -f "$cfg" ]]; then
    local home; home="$(sed -n 's/^home *= *//p' "$cfg")"
    for py in "$home/python3.10" "$home/python3" "$home/python"; do
      [[ -x "$py" ]] && { echo "$py"; return; }
    done
  fi
  for py in python3.10 python3.11 python3.9; do
    command -v "$py" >/dev/null 2>&1 && { command -v "$py"; return; }
  done
  echo "nsl_venv.sh: no Python 3.9-3.11 found; set NSL_PYTHON" >&2
  exit 1
}

python="$(pick_python)"
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$version" in
  3.9|3.10|3.11) ;;
  *) echo "nsl_venv.sh: $python is Python $version; TF 2.15 needs 3.9-3.11" >&2; exit 1 ;;
esac

echo "nsl_venv.sh: building $venv with $python ($version): $reqs" >&2
rm -f "$stamp"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
# tensorflow 2.15 pins keras 2.15 (tf.keras is Keras 2), which NSL 1.4 needs.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $reqs >&2
"$venv/bin/python" - <<'EOF' >&2
import tensorflow as tf
import neural_structured_learning as nsl
print('nsl_venv.sh: ok: tensorflow', tf.__version__, 'nsl', nsl.__version__)
EOF
echo "$reqs" > "$stamp"
echo "$venv/bin/python"
