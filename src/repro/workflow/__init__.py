"""Everything the Snakefile needs beyond glue, unit-testable and free of torch.

``workflow/rules/common.smk`` builds one :class:`~repro.workflow.catalogue.Catalogue` from the
validated config and one :class:`~repro.workflow.resources.Jobs`; every rule asks them for its
inputs, params and resources, and takes its file names from :mod:`repro.workflow.paths`.

==================  ===========================================================================
``paths``           every ``results/``, ``resources/``, ``logs/``, ``benchmarks/`` path template
``spec``            the catalogue's vocabulary: ConfigError, Cell, sweeps, ``extends:``, JSON
``expansion``       sweeps -> samplers/datasets, rows -> cells -> the files each deliverable reads
``checks``          cross-checks of the config (the stages' own checks, run at DAG build)
``params``          each rule's params (canonical JSON sub-configs) and computed inputs
``digests``         code digests of each stage (import closure) and of the pinned environment
``catalogue``       the Catalogue: expansion + checks + params over one config
``resources``       SLURM resources per job, site settings, training geometry
``hub``             hub repositories jobs read, offline shell prefix, their download
``priorities``      the order ready jobs start in: critical path first, then longest first
``scheduler_patch`` one workaround in Snakemake's scheduling loop (one pending wake-up)
==================  ===========================================================================

Nothing under this package imports torch or the heavy NLP stack at DAG build.
"""
