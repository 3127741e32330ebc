#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating it first if needed.
#   bash scripts/venv.sh python examples/multimodal.py
#   bash scripts/venv.sh python -m pytest
# torch is pinned to 2.13.0 (a CPU build available offline on the project machines);
# set HAMFLOW_TORCH to another requirement to override.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HAMFLOW_VENV:-$root/.venv}
stamp=$venv/.hamflow-installed
want=$(cat "$root/pyproject.toml" "$root/scripts/venv.sh" | sha256sum | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q "${HAMFLOW_TORCH:-torch==2.13.0}" >&2
    "$venv/bin/python" -m pip install -q -e "$root[dev]" >&2
    echo "$want" > "$stamp"
fi
cd "$root"
export PATH="$venv/bin:$PATH"
exec "$@"
