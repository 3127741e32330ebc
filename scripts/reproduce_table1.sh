#!/usr/bin/env bash
# Reproduce Table 1 and Fig. 6-8 of the HGN paper; see scripts/reproduce_table1.py --help.
#   scripts/reproduce_table1.sh --scale small --jobs 2     # 2-CPU dev machine, about an hour
#   scripts/reproduce_table1.sh --scale paper              # one GPU: 50 000 sequences, 15 000 steps
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" scripts/reproduce_table1.py "$@"
