# Sourced by scripts/demo and scripts/test: make .venv current, activate it, cd to the repo.
# The venv is (re)installed when missing or when pyproject.toml changed since the last install.
set -euo pipefail
SONOR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SONOR_ROOT"

_sonor_python() {
  # Sonor supports Python 3.11 and 3.12; prefer an exact match over a newer python3.
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  echo "sonor: python3 (3.11 or 3.12) is required" >&2
  return 1
}

_sonor_stamp="$SONOR_ROOT/.venv/.sonor-installed"
if [[ ! -x "$SONOR_ROOT/.venv/bin/python" ]]; then
  echo "sonor: creating .venv" >&2
  "$(_sonor_python)" -m venv "$SONOR_ROOT/.venv" || {
    echo "sonor: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  }
  rm -f "$_sonor_stamp"
fi
# The stamp holds pyproject.toml's digest: a copy or checkout with an older mtime counts too.
_sonor_digest="$("$SONOR_ROOT/.venv/bin/python" -c \
  'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
  "$SONOR_ROOT/pyproject.toml")"
if [[ ! -f "$_sonor_stamp" || "$SONOR_ROOT/pyproject.toml" -nt "$_sonor_stamp" \
      || "$(cat "$_sonor_stamp")" != "$_sonor_digest" ]]; then
  echo "sonor: installing dependencies into .venv (pip install -e '.[test]')" >&2
  _sonor_log="$(mktemp)"
  if ! "$SONOR_ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -e "$SONOR_ROOT[test]" >"$_sonor_log" 2>&1; then
    cat "$_sonor_log" >&2
    rm -f "$_sonor_log"
    echo "sonor: pip install failed" >&2
    exit 1
  fi
  rm -f "$_sonor_log"
  echo "$_sonor_digest" >"$_sonor_stamp"
fi
# shellcheck disable=SC1091
source "$SONOR_ROOT/.venv/bin/activate"
