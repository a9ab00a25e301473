"""repro: regenerate the tables and figures of FM-seq2seq, KL-flow and DiffuSeq.

Stage entry points are run as ``python -m repro.<stage>`` by the Snakemake rules in
``workflow/rules``; every module here is importable without a GPU or network.
"""

__version__ = "0.1.0"
