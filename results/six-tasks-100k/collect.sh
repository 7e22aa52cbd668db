#!/usr/bin/env bash
# Copy what a sweep's runs say about learning (config.json, metrics.jsonl, the sweep's own
# sweep.json) out of SWEEP into runs/ here, leaving checkpoints and replay behind, then write the
# report (report.md, report.json, report.png) from the copies.
#   results/six-tasks-100k/collect.sh sweeps/six-tasks-100k
set -euo pipefail
sweep="$(cd "${1:?usage: collect.sh SWEEP_DIR}" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
planet="$(realpath "${PLANET:-$here/../../.venv/bin/planet}")"
rm -rf "$here/runs" && mkdir -p "$here/runs"
(cd "$sweep" && find . \( -name config.json -o -name metrics.jsonl -o -name sweep.json \) \
   -not -path "*/checkpoints/*" -exec cp --parents {} "$here/runs/" \;)
# From the repository root, so that the command the report records runs as written there.
cd "$here/../.."
"$planet" report results/six-tasks-100k/runs --at-env-steps 25000,50000,75000,100000 \
  --out results/six-tasks-100k/report
