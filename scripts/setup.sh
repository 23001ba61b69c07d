#!/usr/bin/env bash
# Create .venv and install moldau into it. With --test, also everything the
# test suite needs: the test extra from PyPI, and kcat and ZooKeeper from
# Debian (when running as root on a machine with apt).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

if [[ $want_test == 1 ]] && command -v apt-get >/dev/null; then
    missing=()
    command -v kcat >/dev/null || missing+=(kcat)
    [[ -x /usr/share/zookeeper/bin/zkServer.sh ]] || missing+=(zookeeper)
    if (( ${#missing[@]} )); then
        echo "setup: installing ${missing[*]} from Debian" >&2
        SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if [[ $want_test == 1 ]]; then
    .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
else
    .venv/bin/python -m pip install -q . 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import moldau" 
