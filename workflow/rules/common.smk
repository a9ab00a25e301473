"""Glue shared by every rule file: config validation, the catalogue, wildcard constraints.

Defines no rules. All logic lives in repro.workflow (unit-tested); this file only builds the one
Catalogue the rules ask for their inputs and params, and the Jobs that give their resources. Paths
come from repro.workflow.paths (imported here as `paths`).
"""

import os
import sys

from snakemake.utils import validate

from repro import overrides
from repro.workflow import paths, scheduler_patch
from repro.workflow.catalogue import Catalogue
from repro.workflow.digests import lock_digest, stage_digest
from repro.workflow.hub import OFFLINE_PREFIX, hub_pattern, hub_repos, tokenizer_hub_inputs
from repro.workflow.params import job_device, seed_samples, tokenized_data_dir
from repro.workflow.priorities import Priorities
from repro.workflow.resources import Jobs, check_train_resources

# one wake-up timer for the scheduling loop instead of one more per pass (scheduler_patch)
scheduler_patch.apply()
# single keys from the command line (REPRO_SET, --config set="a.b=1 …"), typed, before validation
for _item in overrides.apply(config, os.environ):
    print(f"repro: config override {_item}", file=sys.stderr)
overrides.expand(config)  # `seeds: N` = [0, …, N-1], aliases copied (config/README.md)
# relative `local:` files of datasets and judges are under `data_root` when the config sets it
overrides.resolve_data_root(config)
validate(config, schema="../schemas/config.schema.yaml")
C = Catalogue(config)
check_train_resources(config["resources"], C.experiments)  # errors at parse time
# resources of every job (memory/time growing with the attempt, GPUs, partitions)
R = Jobs(config["resources"], C.experiments, C.resource, C.metrics_for, config.get("logging"))
LOCK = lock_digest()
# the order in which ready jobs start: critical path first, then longest first (repro.workflow.priorities)
P = Priorities(C)

# Every job runs with the Hugging Face hub offline and reads hub files from the project cache
# (compute nodes have no network); the local download rules (login node) start their command
# with `env HF_HUB_OFFLINE=0 …` (the string repro.workflow.hub.ONLINE, spelled out in each rule so
# that snakemake --lint sees a literal shell; docs/pipeline.md §2.4). It also fixes
# PYTHONHASHSEED, so that set orders (bert-score's batches) are the same in every run.
shell.prefix(OFFLINE_PREFIX)


wildcard_constraints:
    dataset=C.wildcard_pattern("dataset"),
    experiment=C.wildcard_pattern("experiment"),
    sampler=C.wildcard_pattern("sampler"),
    table=C.wildcard_pattern("table"),
    figure=C.wildcard_pattern("figure"),
    judge=C.wildcard_pattern("judge"),
    draw=r"(seed|mbr)\d+",
    k=r"\d+",
    layout=r"[a-z_]+",
    split="train|validation|test",
    nfe=r"\d+",
    seed=r"\d+",
    hub=hub_pattern(config),
