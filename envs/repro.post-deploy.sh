#!/usr/bin/env bash
# Runs once inside the freshly created conda env (snakemake --sdm conda), from the working
# directory Snakemake was started in — the repository root: install the pinned lock and the package.
set -euo pipefail
root="${REPRO_ROOT:-$PWD}"
python -m pip install --no-input -r "$root/envs/requirements.lock"
python -m pip install --no-input --no-deps -e "$root"
