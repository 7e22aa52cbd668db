#!/usr/bin/env bash
# Copy what a sweep's runs say about learning (config.json, metrics.jsonl, the sweep's own
# sweep.json) out of SWEEP into runs/ here, leaving checkpoints and replay behind, then write the
# report (report.md, report.json, report.png) from the copies, and copy its 100k table into the
# READMEs.
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
# The READMEs show the report's 100k table and how many runs have finished (tests/test_readme.py
# checks that they agree with report.md and report.json).
python3 - <<'PY'
import json
import re
from pathlib import Path

here = Path("results/six-tasks-100k")
report = (here / "report.md").read_text()
table = report.split("## At 100,000 env steps\n\n", 1)[1].split("\n\n", 1)[0]
groups = json.loads((here / "report.json").read_text())["groups"]
runs = sum(len(group["runs"]) for group in groups)
done = runs - sum(len(group["unfinished"]) for group in groups)
updated = {}
for name, count, wording in (("README.md", r"\*\*\d+ of \d+ runs\*\*", "**{} of {} runs**"),
                             ("README.zh-CN.md", r"\*\*\d+ / \d+ 个运行\*\*", "**{} / {} 个运行**")):
    text, tables = re.subn(r"\n\n\| task \| this sweep \| minutes \|.*?\n\n",
                           lambda _: f"\n\n{table}\n\n", Path(name).read_text(), count=1,
                           flags=re.S)
    text, counts = re.subn(count, wording.format(done, runs), text, count=1)
    assert tables == counts == 1, f"{name}: no six-task table or run count to update"
    updated[name] = text
for name, text in updated.items():  # both found before either is written
    Path(name).write_text(text)
print(f"README.md, README.zh-CN.md: the 100k table, {done} of {runs} runs finished")
PY
