"""Glue shared by every rule file: config validation, the catalogue, wildcard constraints.

Defines no rules. All logic lives in repro.workflow_utils (unit-tested); this file only builds the
one Catalogue object the rules ask for their inputs and params.
"""

from snakemake.utils import validate

from repro.workflow_utils import SPLITS, Catalogue, lock_digest, stage_digest


validate(config, schema="../schemas/config.schema.yaml")
C = Catalogue(config)
C.warn_skipped()
LOCK = lock_digest()


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

