#!/usr/bin/env bash
# Create or update the pinned Python reference environment and print its python path.
#
#   $(Tools/reference_env.sh) Tools/make_fixtures.py
#   $(Tools/reference_env.sh) Tools/make_bench_model.py
#
# The venv lives OUTSIDE the repository:
#   ${DEBERTA_REFERENCE_VENV:-$HOME/.cache/deberta-swift/venv-reference}
# It is (re)installed from Tools/requirements-reference.txt whenever that file changes.
# Environment:
#   DEBERTA_REFERENCE_VENV      venv directory (must not be inside the repository)
#   DEBERTA_REFERENCE_PYTHON    interpreter used to create the venv (default: python3)
#   DEBERTA_REFERENCE_PIP_ARGS  extra arguments for pip install (e.g. an index option)
# Everything but the final python path goes to stderr, so $(...) captures only the path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
req="$here/requirements-reference.txt"
venv="${DEBERTA_REFERENCE_VENV:-$HOME/.cache/deberta-swift/venv-reference}"
python="${DEBERTA_REFERENCE_PYTHON:-python3}"

venv="$(realpath -m "$venv")"
case "$venv/" in
  "$(realpath "$repo")"/*)
    echo "reference_env.sh: $venv is inside the repository; choose another DEBERTA_REFERENCE_VENV" >&2
    exit 1 ;;
esac

mkdir -p "$(dirname "$venv")"
if [ ! -x "$venv/bin/python" ]; then
  echo "reference_env.sh: creating $venv" >&2
  "$python" -m venv "$venv" >&2
fi

stamp="$venv/.requirements-reference.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "reference_env.sh: installing $req" >&2
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --disable-pip-version-check ${DEBERTA_REFERENCE_PIP_ARGS:-} -r "$req" >&2
  echo "$want" > "$stamp"
fi

echo "$venv/bin/python"
