"""Cost plan: what a target would cost before any GPU hour is spent.

    python -m repro.plan results/tables/table3.csv              # or: make plan TARGET=…
    python -m repro.plan paper --gpu h100 --mfu 0.4
    python -m repro.plan all --configfile config/smoke.yaml --gpu cpu
    python -m repro.plan paper --calibration results/gpu_check/gpu_check.json --jobs

It builds the same DAG as ``snakemake -n <targets>`` (in this process, through Snakemake's API:
the same Snakefile, config files, ``--config set=…``/``REPRO_SET`` overrides and staleness), takes
the jobs that would run, and prints per stage and in total: jobs, GPU jobs, estimated GPU-hours,
tokens, checkpoint disk and sample disk. Nothing is run and nothing is written.

**How the numbers are made** (every one an estimate, stated here and in the printed header):

* *model size*: the model of each experiment is built on PyTorch's ``meta`` device (no memory, no
  weights) with the vocabulary of its tokenizer; its compute size ``N`` is the weights of its
  matrix multiplications (``nn.Linear``: the blocks and the output head; embedding look-ups cost
  nothing). The vocabulary is the tokenized data's ``meta.json`` where it exists, else the
  tokenizer's config (``train.vocab_size``, or the pinned size of a pretrained tokenizer).
* *training*: tokens = steps x batch_size x accumulate x ranks x seq_len; FLOPs = tokens x
  (6 N + 6 n_layers seq_len d_model) (forward and backward of the weights and of attention).
* *sampling*: per example, a non-autoregressive sampler makes ``nfe`` forward passes over the
  whole sequence, 2 N seq_len + 2 n_layers seq_len² d_model FLOPs each; an autoregressive one
  decodes with a KV cache, about one forward pass over the sequence in all. Examples are
  ``eval.max_examples``, or, when that is 0 (the whole split), the rows of the prepared split if
  it exists, or ``--examples DATASET=N`` (otherwise the job's cost is left out and counted as
  "unknown").
* *throughput*: GPU-seconds = FLOPs / (peak dense bf16 TFLOP/s of the GPU type x MFU), with MFU
  :data:`MFU_TRAIN` for training and :data:`MFU_SAMPLE` for sampling (``--gpu``, ``--tflops``,
  ``--mfu``, ``--sample-mfu`` override them). A measured calibration (``--calibration``, the
  ``cost_calibration`` block written by ``benchmarks/gpu_check.py``: seconds of one optimizer step
  on one GPU at the per-GPU batch, per experiment and dataset) replaces the FLOPs estimate of every
  training job it measured: GPU-hours = seconds_per_step x steps x ranks / 3600.
* *disk*: a trained model keeps ``model.ckpt`` (fp32 weights, plus one copy per EMA) and
  ``_work/last.ckpt`` (weights, two Adam moments, the EMAs): 4 bytes x all parameters x (1 + EMAs)
  and x (3 + EMAs); a samples file ~:data:`SAMPLE_BYTES_PER_TOKEN` bytes per generated token.
* scoring, MBR, tables and the CPU stages are counted as jobs only; their GPU time (BERTScore, a
  judge's forward passes) is minutes against the hours above and is not modelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.workflow import paths

#: peak dense bf16 (V100: fp16) tensor throughput per GPU, TFLOP/s, from the vendors' data sheets
GPU_TFLOPS = {
    "h200": 989.0,
    "h100": 989.0,  # SXM; the PCIe card is 756
    "a100": 312.0,
    "l40s": 362.0,
    "a10": 125.0,
    "rtx4090": 165.0,
    "v100": 125.0,
    # the 2-core machine of `make demo`/CI in fp32, fitted to smoke training jobs (README "Cost
    # plan"): there per-step overhead, not FLOPs, dominates tiny models
    "cpu": 0.15,
}
DEFAULT_GPU = "a100"
#: model FLOPs utilisation assumed for training and for sampling (small batches, many short steps)
MFU_TRAIN = 0.35
MFU_SAMPLE = 0.15
#: bytes per generated token in a samples file (JSON: text, token ids, fields)
SAMPLE_BYTES_PER_TOKEN = 12
#: vocabulary sizes of the pretrained tokenizers the configs pin (before added specials)
PRETRAINED_VOCAB = {"gpt2": 50257, "bert-base-uncased": 30522, "bert-base-cased": 28996,
                    "roberta-base": 50265}
#: the stages whose GPU time is modelled
TRAIN_RULE, SAMPLE_RULE = "train_model", "sample_text"


class PlanError(ValueError):
    """Bad plan input (calibration file, GPU type, config); the message names it."""


@dataclass
class ModelSize:
    compute: int  # weights of the matrix multiplications (FLOPs per token ~ 2 x this, forward)
    total: int  # every parameter (checkpoint size)
    n_layers: int
    d_model: int


@dataclass
class JobCost:
    rule: str
    wildcards: dict[str, str]
    gpus: int = 0
    gpu_hours: float | None = 0.0  # None: unknown
    tokens: int = 0
    ckpt_bytes: int = 0
    sample_bytes: int = 0
    calibrated: bool = False
    note: str = ""


@dataclass
class Throughput:
    gpu: str
    tflops: float
    mfu_train: float
    mfu_sample: float
    calibration: dict[str, dict[str, float | None]] = field(default_factory=dict)
    calibration_gpu: str | None = None

    def seconds(self, flops: float, mfu: float) -> float:
        return flops / (self.tflops * 1e12 * mfu)


# --- the numbers -----------------------------------------------------------------------------


def model_size(method: str, model_cfg: Mapping[str, Any], vocab_size: int, seq_len: int) -> ModelSize:
    """Parameters of the experiment's model, built on the ``meta`` device (no memory, no weights)."""
    import torch

    from repro.methods import get_method

    cfg = dict(model_cfg)
    if str(cfg.get("embeddings", "")).startswith("from:") or str(cfg.get("embeddings", "")).endswith(".npy"):
        cfg["embeddings"] = "random"  # the exported matrix has the same shape
    specials = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "sep_id": 3, "mask_id": 4}
    with torch.device("meta"):
        model = get_method(method).build_model({**specials, **cfg}, vocab_size, seq_len)
    total = sum(p.numel() for p in model.parameters())
    compute = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return ModelSize(compute, total, int(cfg.get("n_layers", 0)), int(cfg.get("d_model", 0)))


def train_flops(size: ModelSize, tokens: int, seq_len: int) -> float:
    """Forward + backward FLOPs of training on ``tokens`` tokens."""
    return tokens * (6.0 * size.compute + 6.0 * size.n_layers * seq_len * size.d_model)


def sample_flops(size: ModelSize, examples: int, seq_len: int, nfe: int, autoregressive: bool) -> float:
    """FLOPs of sampling ``examples`` sequences of ``seq_len`` tokens with ``nfe`` evaluations."""
    one_pass = 2.0 * size.compute * seq_len + 2.0 * size.n_layers * seq_len**2 * size.d_model
    passes = 1 if autoregressive else nfe
    return examples * passes * one_pass


def ema_count(train: Mapping[str, Any]) -> int:
    ema = train.get("ema", 0)
    if isinstance(ema, list):
        return len(ema)
    return 1 if ema else 0


def checkpoint_bytes(size: ModelSize, train: Mapping[str, Any]) -> int:
    emas = ema_count(train)
    return 4 * size.total * (1 + emas) + 4 * size.total * (3 + emas)


def read_calibration(path: Path) -> tuple[str, dict[str, dict[str, float | None]]]:
    """(GPU name, seconds_per_step[experiment][dataset]) of a ``cost_calibration`` block."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"--calibration {path}: cannot read it as JSON ({exc})") from None
    block = data.get("cost_calibration", data) if isinstance(data, dict) else None
    if not isinstance(block, dict) or "seconds_per_step" not in block:
        raise PlanError(f"--calibration {path}: no cost_calibration.seconds_per_step in it")
    if block.get("valid") is False:
        raise PlanError(
            f"--calibration {path}: cost_calibration.valid is false (a CPU run at tiny sizes "
            "proves the code, it measures nothing); run benchmarks/gpu_check.py on the GPU")
    per = block["seconds_per_step"]
    if not isinstance(per, dict) or not all(isinstance(v, dict) for v in per.values()):
        raise PlanError(f"--calibration {path}: seconds_per_step must map experiment -> dataset -> s")
    for exp, row in per.items():
        for ds, secs in row.items():
            if secs is not None and (not isinstance(secs, (int, float)) or secs <= 0):
                raise PlanError(f"--calibration {path}: seconds_per_step.{exp}.{ds} = {secs!r}")
    return str(block.get("gpu", "?")), per


# --- the DAG ---------------------------------------------------------------------------------


@dataclass
class DagJob:
    rule: str
    wildcards: dict[str, str]
    gpus: int


def stale_jobs(targets: list[str], configfiles: list[str], config: dict[str, str],
               forceall: bool = False, snakefile: str = "Snakefile") -> tuple[list[DagJob], dict]:
    """The jobs ``snakemake -n targets`` would run, and the workflow's (validated) config."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
        WorkflowSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, enable_file_logging=False)) as api:
        wf_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=config, configfiles=[Path(f) for f in configfiles]),
            storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
            snakefile=Path(snakefile),
        )
        dag_api = wf_api.dag(dag_settings=DAGSettings(targets=set(targets), forceall=forceall))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=forceall, ignore_incomplete=True, lock_warn_only=True,
                              nolock=True)
        workflow._build_dag()
        jobs = []
        for job in workflow.dag.needrun_jobs():
            if job.rule.norun:
                continue
            gpus = job.resources.get("gpu", 0) if hasattr(job.resources, "get") else 0
            jobs.append(DagJob(job.rule.name, dict(job.wildcards_dict), int(gpus or 0)))
        return jobs, dict(workflow.config)


# --- the plan --------------------------------------------------------------------------------


class Planner:
    def __init__(self, config: dict, throughput: Throughput, root: Path = Path("."),
                 examples: Mapping[str, int] | None = None):
        from repro.workflow import resources
        from repro.workflow.catalogue import Catalogue

        self.cat = Catalogue(config)
        self.res = config.get("resources", {})
        self.resources = resources
        self.tp = throughput
        self.root = root
        self._sizes: dict[tuple[str, str], ModelSize] = {}
        self._examples = dict(examples or {})

    def vocab(self, dataset: str, layout: str) -> int:
        src = self.cat.source(dataset)
        meta = self.root / paths.tokenized_meta(src, layout)
        if meta.exists():
            return int(json.loads(meta.read_text())["vocab_size"])
        tok = self.cat.datasets[src].get("tokenizer", {})
        if "train" in tok and "vocab_size" in tok["train"]:
            return int(tok["train"]["vocab_size"]) + 8  # + the specials the tokenizer adds
        name = tok.get("pretrained", {}).get("id")
        if name in PRETRAINED_VOCAB:
            return PRETRAINED_VOCAB[name] + 8
        raise PlanError(
            f"datasets.{src}.tokenizer: vocabulary size of {name or tok!r} unknown before the "
            f"data is tokenized (known pretrained: {sorted(PRETRAINED_VOCAB)}); run "
            f"`snakemake {paths.tokenized_meta(src, layout)}` first")

    def size(self, dataset: str, experiment: str) -> ModelSize:
        src = self.cat.source(dataset)
        key = (src, experiment)
        if key not in self._sizes:
            exp = self.cat.experiments[experiment]
            layout = self.cat.layout(src, experiment)
            seq_len = int(self.cat.datasets[src]["seq_len"])
            self._sizes[key] = model_size(exp["method"], exp.get("model", {}),
                                          self.vocab(src, layout), seq_len)
        return self._sizes[key]

    def examples(self, dataset: str) -> int | None:
        if dataset in self._examples:
            return self._examples[dataset]
        ev = self.cat.eval_params(dataset)
        if int(ev["max_examples"]) > 0:
            rows = self._split_rows(dataset, ev["split"])
            return int(ev["max_examples"]) if rows is None else min(rows, int(ev["max_examples"]))
        return self._split_rows(dataset, ev["split"])

    def _split_rows(self, dataset: str, split: str) -> int | None:
        path = self.root / paths.prepared(dataset, split)
        if not path.exists():
            size = self.cat.datasets[dataset].get("synthetic", {}).get("size", {}).get(split)
            return None if size is None else int(size)  # a generated split has its size
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())

    def cost(self, job: DagJob) -> JobCost:
        out = JobCost(job.rule, job.wildcards, gpus=job.gpus)
        if job.rule == TRAIN_RULE:
            self._train(job, out)
        elif job.rule == SAMPLE_RULE:
            self._sample(job, out)
        return out

    def _train(self, job: DagJob, out: JobCost) -> None:
        ds, name = job.wildcards["dataset"], job.wildcards["experiment"]
        exp = self.cat.experiments[name]
        train = exp.get("train", {})
        tr = self.resources.train_resources(self.res, exp)
        ranks = tr["devices"] * tr["nodes"]
        seq_len = int(self.cat.datasets[ds]["seq_len"])
        steps = int(train["steps"])
        out.tokens = steps * int(train.get("batch_size", 32)) * int(train.get("accumulate", 1)) * ranks * seq_len
        size = self.size(ds, name)
        out.ckpt_bytes = checkpoint_bytes(size, train)
        secs = self.tp.calibration.get(name, {}).get(ds)
        if secs is not None:
            out.gpu_hours = secs * steps * ranks / 3600.0
            out.calibrated = True
        else:
            out.gpu_hours = self.tp.seconds(train_flops(size, out.tokens, seq_len),
                                            self.tp.mfu_train) / 3600.0
        out.note = f"N={size.compute / 1e6:.1f}M, {steps} steps x {ranks} rank(s)"

    def _sample(self, job: DagJob, out: JobCost) -> None:
        ds, name = job.wildcards["dataset"], job.wildcards["experiment"]
        exp = self.cat.experiments[name]
        seq_len = int(self.cat.datasets[self.cat.source(ds)]["seq_len"])
        nfe = int(job.wildcards["nfe"])
        n = self.examples(ds)
        cap = exp.get("samplers", {}).get(job.wildcards.get("sampler"), {}).get("max_examples")
        if cap is not None:  # the sampler's own cap on evaluation rows
            n = cap if n is None else min(n, cap)
        if n is None:
            out.gpu_hours = None
            out.note = (f"eval.max_examples 0: rows of {ds}'s split unknown until it is prepared "
                        f"(or give --examples {ds}=N)")
            return
        out.tokens = n * seq_len
        out.sample_bytes = out.tokens * SAMPLE_BYTES_PER_TOKEN
        flops = sample_flops(self.size(ds, name), n, seq_len, nfe, exp["method"] == "ar")
        out.gpu_hours = self.tp.seconds(flops, self.tp.mfu_sample) / 3600.0
        out.note = f"{n} examples x NFE {nfe}"


STAGE_ORDER = ("download_dataset", "download_hub", "download_judge", "prepare_dataset",
               "train_tokenizer", "tokenize", "train_judge", "train_model", "export_embeddings",
               "sample_text", "mbr_select", "score_samples", "score_group", "analyse_loss_vs_t",
               "make_table", "make_figure")


def summarise(costs: Iterable[JobCost]) -> list[dict[str, Any]]:
    """One row per stage (rule) in pipeline order, then the total."""
    rows: dict[str, dict[str, Any]] = {}
    for c in costs:
        r = rows.setdefault(c.rule, {"stage": c.rule, "jobs": 0, "gpu_jobs": 0, "gpu_hours": 0.0,
                                     "unknown": 0, "calibrated": 0, "tokens": 0, "ckpt_bytes": 0,
                                     "sample_bytes": 0})
        r["jobs"] += 1
        r["gpu_jobs"] += c.gpus > 0
        if c.gpu_hours is None:
            r["unknown"] += 1
        else:
            r["gpu_hours"] += c.gpu_hours
        r["calibrated"] += c.calibrated
        for k in ("tokens", "ckpt_bytes", "sample_bytes"):
            r[k] += getattr(c, k)
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    out = sorted(rows.values(), key=lambda r: (order.get(r["stage"], len(order)), r["stage"]))
    total = {"stage": "total"}
    for k in ("jobs", "gpu_jobs", "gpu_hours", "unknown", "calibrated", "tokens", "ckpt_bytes",
              "sample_bytes"):
        total[k] = sum(r[k] for r in out)
    return [*out, total]


def _human(n: float, unit: str = "") -> str:
    if n == 0:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _hours(h: float) -> str:
    if h == 0:
        return "-"
    return f"{h:,.1f}" if h >= 1 else f"{h:.3f}"


def render(rows: list[dict[str, Any]], tp: Throughput, jobs: list[JobCost] | None = None) -> str:
    lines = [
        f"Assumed throughput: {tp.gpu} = {tp.tflops:g} TFLOP/s peak bf16 x MFU {tp.mfu_train:g} "
        f"(training), {tp.mfu_sample:g} (sampling)"
        + (f"; training calibrated on {tp.calibration_gpu} where measured" if tp.calibration else ""),
        "Jobs that would run (stale or missing, as `snakemake -n` lists them); GPU-hours of "
        "training and sampling only (scoring etc. not modelled); estimates: `python -m repro.plan "
        "--help`",
        "",
    ]
    head = ("stage", "jobs", "GPU jobs", "GPU-hours", "tokens", "checkpoints", "samples")
    body = []
    for r in rows:
        hours = _hours(r["gpu_hours"])
        if r["unknown"]:
            hours += f" (+{r['unknown']} unknown)"
        if r["calibrated"]:
            hours += f" ({r['calibrated']} calibrated)"
        body.append((r["stage"], str(r["jobs"]), str(r["gpu_jobs"]) if r["gpu_jobs"] else "-", hours,
                     _human(r["tokens"]), _human(r["ckpt_bytes"], "B"), _human(r["sample_bytes"], "B")))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*head))
    lines.append(fmt.format(*("-" * w for w in widths)))
    for i, b in enumerate(body):
        if i == len(body) - 1:
            lines.append(fmt.format(*("-" * w for w in widths)))
        lines.append(fmt.format(*b))
    if jobs:
        lines += ["", "GPU jobs:"]
        for c in jobs:
            if c.rule in (TRAIN_RULE, SAMPLE_RULE):
                wc = ",".join(f"{k}={v}" for k, v in c.wildcards.items())
                h = "unknown" if c.gpu_hours is None else f"{c.gpu_hours:,.3g} h"
                cal = " (calibrated)" if c.calibrated else ""
                lines.append(f"  {c.rule} {wc}: {h}{cal}  {c.note}")
    return "\n".join(lines)


def throughput(args: argparse.Namespace) -> Throughput:
    gpu = args.gpu.lower()
    if args.tflops is None and gpu not in GPU_TFLOPS:
        raise PlanError(f"--gpu {args.gpu}: unknown GPU type (known: {', '.join(GPU_TFLOPS)}); "
                        "give its peak bf16 TFLOP/s with --tflops")
    tp = Throughput(gpu, args.tflops or GPU_TFLOPS[gpu], args.mfu, args.sample_mfu)
    for name, value in (("--tflops", tp.tflops), ("--mfu", tp.mfu_train), ("--sample-mfu", tp.mfu_sample)):
        if not value > 0 or (name != "--tflops" and value > 1):
            raise PlanError(f"{name} {value}: must be > 0" + ("" if name == "--tflops" else " and <= 1"))
    if args.calibration:
        tp.calibration_gpu, tp.calibration = read_calibration(Path(args.calibration))
    return tp


def parse_config_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise PlanError(f"--config {item!r}: expected KEY=VALUE (e.g. set='a.b=1')")
        out[key] = value
    return out


def parse_examples(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise PlanError(f"--examples {item!r}: expected DATASET=N (N >= 1)")
        out[key] = int(value)
    return out


def explain(exc: BaseException) -> str:
    """The messages of an exception chain, one line each, innermost cause first."""
    parts: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        path = getattr(e, "json_path", None)
        msg = getattr(e, "message", None) or str(e)
        msg = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        parts.append(f"{path}: {msg}" if path else msg)
        e = e.__cause__ or e.__context__
    return "; ".join(reversed(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", default=["all"], help="Snakemake targets (default: all)")
    p.add_argument("--configfile", nargs="+", default=[], help="as snakemake --configfile")
    p.add_argument("--config", nargs="+", default=[], help="as snakemake --config (e.g. set='a.b=1')")
    p.add_argument("--forceall", action="store_true", help="every job, as if nothing were built")
    p.add_argument("--gpu", default=DEFAULT_GPU, help=f"GPU type: {', '.join(GPU_TFLOPS)}")
    p.add_argument("--tflops", type=float, help="peak bf16 TFLOP/s of one GPU (overrides --gpu's)")
    p.add_argument("--mfu", type=float, default=MFU_TRAIN, help="model FLOPs utilisation, training")
    p.add_argument("--sample-mfu", type=float, default=MFU_SAMPLE, help="the same, sampling")
    p.add_argument("--calibration", help="gpu_check.json with a cost_calibration block")
    p.add_argument("--examples", nargs="+", default=[], metavar="DATASET=N",
                   help="evaluation rows of a dataset whose eval.max_examples is 0 (whole split) "
                   "and whose split is not prepared yet")
    p.add_argument("--jobs", action="store_true", help="also list every training/sampling job")
    p.add_argument("--json", action="store_true", help="print the stage rows as JSON")
    args = p.parse_args(argv)
    try:
        tp = throughput(args)
        examples = parse_examples(args.examples)
        try:
            dag_jobs, config = stale_jobs(args.targets, args.configfile,
                                          parse_config_args(args.config), forceall=args.forceall)
        except Exception as exc:  # Snakemake's own errors: bad config, unknown target, …
            raise PlanError(f"the DAG could not be built: {explain(exc)}") from None
        planner = Planner(config, tp, examples=examples)
        costs = [planner.cost(j) for j in dag_jobs]
    except PlanError as exc:
        print(f"repro.plan: {exc}", file=sys.stderr)
        return 2
    rows = summarise(costs)
    if args.json:
        print(json.dumps({"throughput": tp.__dict__, "stages": rows}, indent=1))
    else:
        print(render(rows, tp, costs if args.jobs else None))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("REPRO_WARM", "0")
    sys.exit(main())
