#!/usr/bin/env bash
# Create .venv and install moldau into it. With --test, also everything the
# test suite needs: the test extra from PyPI, and from Debian (when running
# as root on a machine with apt) kcat, ZooKeeper, and the old clients' tools:
# Go with sarama (tests/clients/sarama) and Burrow.
#
# Says what it is doing on stderr. Runs pip only when needed: a stamp in .venv
# records what was installed (the install mode and a hash of pyproject.toml,
# plus the source tree for a regular install, which copies it); when it
# matches, nothing is installed again. An editable install (what --test makes)
# stays editable: a plain run does not turn it into a regular one.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

step() { echo "setup: $*" >&2; }

if [[ $want_test == 1 ]] && command -v apt-get >/dev/null; then
    missing=()
    command -v kcat >/dev/null || missing+=(kcat)
    [[ -x /usr/share/zookeeper/bin/zkServer.sh ]] || missing+=(zookeeper)
    command -v go >/dev/null || missing+=(golang-go)
    [[ -d /usr/share/gocode/src/github.com/Shopify/sarama ]] \
        || missing+=(golang-github-shopify-sarama-dev)
    command -v Burrow >/dev/null || missing+=(burrow)
    if (( ${#missing[@]} )); then
        step "installing ${missing[*]} from Debian (apt-get)"
        SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    step "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi

# Is moldau installed editable (pip's direct_url.json says so)?
installed_editable() {
    .venv/bin/python - <<'EOF' 2>/dev/null
import json, sys
from importlib.metadata import PackageNotFoundError, distribution
try:
    text = distribution("moldau").read_text("direct_url.json") or "{}"
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if json.loads(text).get("dir_info", {}).get("editable") else 1)
EOF
}

if [[ $want_test == 1 ]]; then
    mode=editable-test
elif installed_editable; then
    mode=editable
else
    mode=regular
fi

# What the install depends on: pyproject.toml, and for a regular install the
# sources it copied.
source_hash() {
    {
        cat pyproject.toml
        if [[ $mode == regular ]]; then
            find src -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
                | LC_ALL=C sort -z | xargs -0 cat
        fi
    } | sha256sum | cut -d' ' -f1
}

stamp_file=.venv/.moldau-setup-stamp
hash=$(source_hash)
stamped=$(cat "$stamp_file" 2>/dev/null || true)
# A test install (editable plus the test extra) also serves a plain run.
if [[ "$stamped" == "$mode $hash" || ( $mode == editable && "$stamped" == "editable-test $hash" ) ]] \
    && .venv/bin/python -c "import moldau" 2>/dev/null; then
    step "moldau is installed and up to date ($mode); nothing to do"
    exit 0
fi

rm -f "$stamp_file"
step "upgrading pip in .venv"
.venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip 2>&1 \
    | sed -un '/^ERROR/p' >&2
case $mode in
    editable-test) what="moldau (editable) and the test extra"; target=(-e '.[test]') ;;
    editable) what="moldau (editable, as it was)"; target=(-e .) ;;
    regular) what="moldau and its dependencies"; target=(.) ;;
esac
step "installing $what with pip; dependencies come from PyPI"
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off "${target[@]}" 2>&1 \
    | sed -un '/^\(Collecting\|Installing\|Successfully\|ERROR\)/s/^/  pip: /p' >&2
step "checking that moldau imports"
.venv/bin/python -c "import moldau"
echo "$mode $hash" > "$stamp_file"
step "done: .venv/bin/moldau is ready"
