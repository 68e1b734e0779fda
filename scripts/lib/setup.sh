# Shared set-up steps for scripts/dev and scripts/test: install what is missing, nothing more.
# shellcheck shell=bash

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else
    echo "need root to run: $* (install it yourself, or run as root)" >&2
    return 1
  fi
}

# ensure_apt PACKAGE:PROBE ... -- installs each Debian package whose probe command is missing.
ensure_apt() {
  local missing=() spec pkg probe
  for spec in "$@"; do
    pkg=${spec%%:*}; probe=${spec#*:}
    if ! eval "$probe" >/dev/null 2>&1; then missing+=("$pkg"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ensure_venv EXTRAS -- a virtual environment in .venv with the project installed (editable).
ensure_venv() {
  local extras=$1 python=${PYTHON:-python3}
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
  fi
  # a .venv without pip is one a failed first run left (python3-venv missing): made again, not trusted
  if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    "$python" -m venv .venv || { rm -rf .venv; ensure_apt python3-venv:false; "$python" -m venv .venv; }
  fi
  local stamp=.venv/.installed-$(echo "$extras" | tr -c 'a-z0-9' '_')
  if ! _installed "$extras"; then
    echo "installing Python packages into .venv ($extras, and the Python SDK in clients/python) ..."
    if ! { .venv/bin/python -m pip install -q --upgrade pip \
           && .venv/bin/python -m pip install -q -e "$extras" -e ./clients/python; } \
        > .venv/pip.log 2>&1; then
      cat .venv/pip.log >&2
      return 1
    fi
    _extras_of "$extras" > "$stamp"
  fi
}

# The extras of a pip requirement such as ".[worker,dev]", one per line.
_extras_of() {
  local inner=${1#*[}
  inner=${inner%]}
  [ "$inner" = "$1" ] || printf '%s\n' ${inner//,/ }
}

# _installed EXTRAS -- whether an install newer than both pyproject.toml files holds every extra asked: one stamp
# names the extras it installed, so ./scripts/test's .[worker,dev] serves ./scripts/dev's .[worker] (the first
# ./scripts/dev after the tests ran pip again).
_installed() {
  local stamp extra
  for stamp in .venv/.installed-*; do
    [ -f "$stamp" ] || continue
    if [ pyproject.toml -nt "$stamp" ] || [ clients/python/pyproject.toml -nt "$stamp" ]; then continue; fi
    for extra in $(_extras_of "$1"); do
      grep -qx -- "$extra" "$stamp" || continue 2
    done
    return 0
  done
  return 1
}
