#!/usr/bin/env bash
# The test suite (what CI runs): lint, then pytest. Pass --slow to include slow tests; other
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
marker=(-m "not slow")
args=()
for a in "$@"; do
  if [ "$a" = "--slow" ]; then marker=(); else args+=("$a"); fi
done
ruff check .
python -m pytest "${marker[@]}" "${args[@]}"
