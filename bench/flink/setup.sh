#!/usr/bin/env bash
# Creates bench/.venv with PyFlink (pinned in bench/flink/requirements.txt),
# for bench/flink/nexmark_flink.py. Idempotent: when the virtualenv already
# holds exactly these requirements, it only checks and returns.
#
# Needs: python3 (3.9 to 3.12; PYTHON=... to pick another) and Java 11, 17
# or 21 on PATH; PyPI reachable.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
venv="$bench/.venv"
req="$here/requirements.txt"
stamp="$venv/.flink-requirements.sha256"
python="${PYTHON:-python3}"

if ! command -v java >/dev/null 2>&1; then
    echo "setup.sh: java not found on PATH (Flink needs Java 11/17/21)" >&2
    exit 1
fi

# apache-flink 2.3 ships wheels for CPython 3.9 to 3.12.
if ! "$python" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 12)))'; then
    echo "setup.sh: $("$python" --version 2>&1) is not supported by PyFlink (3.9 to 3.12);" \
        "set PYTHON to another interpreter" >&2
    exit 1
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import pyflink' >/dev/null 2>&1; then
    echo "setup.sh: $venv is up to date ($(grep -E '^apache-flink==' "$req"))"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup.sh: creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
"$venv/bin/python" -c 'import pyflink, os; print("setup.sh: PyFlink at", os.path.dirname(pyflink.__file__))'
echo "$want" > "$stamp"
echo "setup.sh: done"
