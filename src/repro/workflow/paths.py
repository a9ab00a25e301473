"""Every file the pipeline writes or reads by convention: the one home of its path templates.

Each function returns a path relative to the repository root. Called with no arguments (or with
only some) it returns the *template* a rule declares, with Snakemake wildcards in place of the
missing parts: ``samples()`` is ``results/samples/{dataset}/{experiment}/{sampler}/nfe{nfe}/
{draw}.jsonl`` and ``samples(draw="seed{seed}")`` the output of ``sample_text``; called with every
part it is the path of one file (``samples("qqp", "fm", "euler", 100, "seed0")``). The rule files
(``workflow/rules/*.smk``), the catalogue and the planner all read their paths here.

Layout (docs/pipeline.md §1)::

    resources/datasets/{dataset}/                       raw hub download
    results/data/{dataset}/{split}.jsonl                prepared rows
    results/tokenizer/{dataset}/tokenizer.json
    results/tokenized/{dataset}/{layout}/{split}.{ids,cond}.npy + meta.json
    results/train/{dataset}/{experiment}/model.ckpt
    results/embeddings/{dataset}/{experiment}/embeddings.{npy,json}
    results/samples/{cell}/{draw}.jsonl                 cell = dataset/experiment/sampler/nfe<n>
    results/scores/{cell}/{draw}.json                   draw = seed<s>, mbr<k> or group<k>
    results/analysis/{dataset}/{experiment}/<file>
    results/judges/{judge}/  resources/judges/{judge}/  resources/hf/{hub}.json
    results/tables/{table}.{csv,md}  results/figures/{figure}.{png,pdf}
    logs/<rule>/<wildcards>.log  benchmarks/<rule>/<wildcards>.tsv
"""

from __future__ import annotations

SPLITS = ("train", "validation", "test")
#: the arrays of one tokenized split
ARRAYS = ("ids", "cond")

D, E, S, N = "{dataset}", "{experiment}", "{sampler}", "{nfe}"


def raw_dataset(dataset: str = D) -> str:
    return f"resources/datasets/{dataset}"


def data_dir(dataset: str = D) -> str:
    return f"results/data/{dataset}"


def prepared(dataset: str = D, split: str = "{split}") -> str:
    return f"{data_dir(dataset)}/{split}.jsonl"


def prepared_splits(dataset: str = D) -> list[str]:
    """The prepared rows of every split (prepare_dataset's outputs)."""
    return [prepared(dataset, s) for s in SPLITS]


def tokenizer(dataset: str = D) -> str:
    return f"results/tokenizer/{dataset}/tokenizer.json"


def tokenized_dir(dataset: str = D, layout: str = "{layout}") -> str:
    return f"results/tokenized/{dataset}/{layout}"


def tokenized_meta(dataset: str = D, layout: str = "{layout}") -> str:
    return f"{tokenized_dir(dataset, layout)}/meta.json"


def tokenized_arrays(dataset: str = D, layout: str = "{layout}",
                     splits: tuple[str, ...] = SPLITS) -> list[str]:
    """The ``ids``/``cond`` arrays of ``splits`` (the meta file last, in :func:`tokenized_files`)."""
    base = tokenized_dir(dataset, layout)
    return [f"{base}/{s}.{a}.npy" for s in splits for a in ARRAYS]


def tokenized_files(dataset: str = D, layout: str = "{layout}",
                    splits: tuple[str, ...] = SPLITS) -> list[str]:
    """What a stage reading tokenized ``splits`` needs: their arrays, then ``meta.json``."""
    return [*tokenized_arrays(dataset, layout, splits), tokenized_meta(dataset, layout)]


def ckpt(dataset: str = D, experiment: str = E) -> str:
    return f"results/train/{dataset}/{experiment}/model.ckpt"


def embeddings(dataset: str = D, experiment: str = E, ext: str = "npy") -> str:
    """An exported word-embedding matrix (``npy``) or its description (``json``)."""
    return f"results/embeddings/{dataset}/{experiment}/embeddings.{ext}"


def cell(dataset: str = D, experiment: str = E, sampler: str = S, nfe: int | str = N) -> str:
    return f"{dataset}/{experiment}/{sampler}/nfe{nfe}"


#: wildcards of one catalogue cell (its samples and scores directory)
CELL = cell()


def samples(dataset: str = D, experiment: str = E, sampler: str = S, nfe: int | str = N,
            draw: str = "{draw}") -> str:
    """A samples file: ``draw`` is ``seed<s>`` (sample_text) or ``mbr<k>`` (mbr_select)."""
    return f"results/samples/{cell(dataset, experiment, sampler, nfe)}/{draw}.jsonl"


def scores(dataset: str = D, experiment: str = E, sampler: str = S, nfe: int | str = N,
           draw: str = "{draw}") -> str:
    """A scores file: ``draw`` is ``seed<s>``, ``mbr<k>`` (score_samples) or ``group<k>``."""
    return f"results/scores/{cell(dataset, experiment, sampler, nfe)}/{draw}.json"


def seed_samples(dataset: str, experiment: str, sampler: str, nfe: int | str, k: int) -> list[str]:
    """The samples files of seeds 0..k-1 of one cell (inputs of MBR and of group metrics)."""
    return [samples(dataset, experiment, sampler, nfe, f"seed{s}") for s in range(k)]


def analysis(dataset: str = D, experiment: str = E, file: str = "loss_vs_t.json") -> str:
    return f"results/analysis/{dataset}/{experiment}/{file}"


def trained_judge(judge: str = "{judge}") -> str:
    return f"results/judges/{judge}"


def downloaded_judge(judge: str = "{judge}") -> str:
    return f"resources/judges/{judge}"


def hub_marker(slug: str = "{hub}") -> str:
    """The manifest of one fetched hub repository (slug ``org--name@revision``)."""
    return f"resources/hf/{slug}.json"


def table(name: str = "{table}", ext: str = "csv") -> str:
    return f"results/tables/{name}.{ext}"


def figure(name: str = "{figure}", ext: str = "png") -> str:
    return f"results/figures/{name}.{ext}"


def paper_values(name: str) -> str:
    """The default paper-values CSV of a table or figure."""
    return f"config/paper_values/{name}.csv"


def log(rule: str, wildcards: str) -> str:
    """``logs/<rule>/<wildcards>.log``: one log per job."""
    return f"logs/{rule}/{wildcards}.log"


def benchmark(rule: str, wildcards: str) -> str:
    """``benchmarks/<rule>/<wildcards>.tsv``: Snakemake's time and memory record of one job."""
    return f"benchmarks/{rule}/{wildcards}.tsv"
