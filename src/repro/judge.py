"""Judges for generative perplexity: train a tiny one (smoke runs) or download a hub one (cluster).

Usage::

    python -m repro.judge train --data results/data/D/train.jsonl --kind text|seq2seq|code \\
        --config-json '{"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128,
                        "vocab_size": 1000, "steps": 300, "batch_size": 32, "lr": 1e-3, "seed": 0}' \\
        --threads 1 --out results/judges/NAME

    python -m repro.judge download --id gpt2 --revision SHA --out resources/judges/NAME

Both write a directory that :func:`repro.metrics.judge.load_judge` reads with
``AutoTokenizer`` / ``AutoModelForCausalLM`` (``local_files_only``), so a trained smoke judge and a
downloaded hub judge go through the same code. The directory is built in a temporary directory
beside ``--out`` and renamed onto it only when complete.

**train** fits a byte-level BPE tokenizer (``tokenizers``; ``vocab_size`` from the config, one
special token ``<|endoftext|>``: BOS, EOS and UNK as in GPT-2, and also PAD) on the
training texts (kind ``text``: ``text``; ``seq2seq``: ``trg``; ``code``: ``code``), wraps it in
``transformers.PreTrainedTokenizerFast`` and trains a ``GPT2LMHeadModel`` (GPT-2's tanh GELU in its
fused form, ``gelu_pytorch_tanh``) with a plain torch loop on the GPT-2-style packed
stream ``text <|endoftext|> text <|endoftext|> …``: each step draws ``batch_size`` random windows of
``n_positions`` tokens (a seeded ``torch.Generator``) and minimises the causal LM loss with AdamW
(β = (0.9, 0.95), no weight decay, gradient clip 1.0, linear warm-up over the first 5% of steps then
cosine decay to 10% of ``lr``). Everything is seeded by ``seed``; on CPU with the same ``--threads``
the weights are bit-identical across runs. ``judge_train.json`` in the output records the config,
corpus sizes, the loss curve and versions. Config keys (all optional, defaults in
:data:`TRAIN_DEFAULTS`): the nine above and ``dropout`` (default 0.0). The model's vocabulary is the
tokenizer's actual size (at most ``vocab_size``: BPE stops early on a small corpus).

**download** runs ``huggingface_hub.snapshot_download(repo_id, revision=…, local_dir=…)`` (weights
for other frameworks — TF, Flax, ONNX, tflite, Rust — are skipped) and records the id and revision
in ``judge_download.json``. Pin ``--revision`` to a commit; it needs the network (a cluster login
node). Offline, the error says to point the metric's ``judge`` option at a local directory instead.

Exit status: 0 on success, 2 on bad input (the message names the file, key or fix).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from repro.io import (
    InputError,
    iter_jsonl,
    json_object_arg,
    log_to_stderr,
    make_temp_dir,
    run_cli,
    stage_parser,
)

log = logging.getLogger("repro.judge")

#: config keys of ``train`` and their defaults
TRAIN_DEFAULTS: dict[str, Any] = {
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 2,
    "n_positions": 128,
    "vocab_size": 1000,
    "steps": 300,
    "batch_size": 32,
    "lr": 1e-3,
    "seed": 0,
    "dropout": 0.0,
}

#: the training text field of each dataset kind (docs/architecture.md, normalised rows)
TEXT_FIELD = {"text": "text", "seq2seq": "trg", "code": "code"}

#: the one special token: BOS, EOS, UNK and PAD
EOT = "<|endoftext|>"

#: hub files never needed by ``AutoModelForCausalLM`` (other frameworks' weights)
DOWNLOAD_IGNORE = (
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "*.tflite",
    "onnx/*",
    "coreml/*",
    "flax_model*",
    "tf_model*",
)

_INT_KEYS = ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size", "steps", "batch_size")


# --- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``out``; on success it replaces ``out``.

    An existing ``out`` is moved aside first and deleted after the rename; on an exception the
    temporary directory is removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory; remove it or choose another")
    tmp = make_temp_dir(out)  # stale temporaries removed; not mkdtemp's 0700
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "d")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_train_config(cfg: dict[str, Any], where: str = "--config-json") -> dict[str, Any]:
    """``cfg`` merged over :data:`TRAIN_DEFAULTS`; unknown keys or bad values raise InputError
    naming ``where`` (the workflow passes the config path ``judges.<name>.train``)."""
    unknown = sorted(set(cfg) - set(TRAIN_DEFAULTS))
    if unknown:
        known = ", ".join(f"{k} (default {v!r})" for k, v in TRAIN_DEFAULTS.items())
        raise InputError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"the judge config keys are: {known}"
        )
    out = {**TRAIN_DEFAULTS, **cfg}
    for key in _INT_KEYS:
        v = out[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{where}: {key} must be a positive integer, got {v!r}")
    if not isinstance(out["seed"], int) or isinstance(out["seed"], bool):
        raise InputError(f"{where}: seed must be an integer, got {out['seed']!r}")
    lr = out["lr"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < 1:
        raise InputError(f"{where}: lr must be a number in (0, 1), got {lr!r}")
    dropout = out["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise InputError(f"{where}: dropout must be a number in [0, 1), got {dropout!r}")
    if out["n_embd"] % out["n_head"]:
        raise InputError(
            f"{where}: n_embd ({out['n_embd']}) must be divisible by n_head ({out['n_head']})"
        )
    if out["vocab_size"] < 258:
        raise InputError(
            f"{where}: vocab_size must be at least 258 (256 byte symbols + {EOT} + one "
            f"merge), got {out['vocab_size']}"
        )
    return out


def read_texts(path: str | os.PathLike, kind: str) -> list[str]:
    """The training texts of a normalised dataset split (field by ``kind``, :data:`TEXT_FIELD`)."""
    if kind not in TEXT_FIELD:
        raise InputError(f"--kind {kind!r}: use one of {', '.join(TEXT_FIELD)}")
    field = TEXT_FIELD[kind]
    texts = []
    for lineno, row in iter_jsonl(path):
        value = row.get(field)
        if not isinstance(value, str):
            raise InputError(
                f"{path}:{lineno}: a {kind!r} row needs a string field {field!r} "
                f"(see docs/architecture.md, normalised dataset rows); is --kind right?"
            )
        texts.append(value)
    if not texts:
        raise InputError(f"{path}: no rows; a judge needs training text")
    return texts


def train_tokenizer(texts: Sequence[str], vocab_size: int, model_max_length: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as BOS/EOS/UNK/PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=model_max_length,
    )


def _versions() -> dict[str, str]:
    from repro.metrics.base import package_version

    return {p: package_version(p) for p in ("torch", "transformers", "tokenizers")}


def _quiet_transformers() -> None:
    with contextlib.suppress(ImportError, AttributeError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


# --- train --------------------------------------------------------------------------------------


def _token_stream(texts: Sequence[str], tokenizer: Any, eot: int, data: Any, length: int) -> Any:
    """All texts as one int64 token stream, each followed by ``<|endoftext|>``."""
    import torch

    stream: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        stream.extend(enc.ids)
        stream.append(eot)
    ids = torch.tensor(stream, dtype=torch.long)
    if ids.numel() < length + 1:
        raise InputError(
            f"{data}: the corpus has {ids.numel()} tokens, fewer than n_positions + 1 = "
            f"{length + 1}; lower n_positions or give more text"
        )
    return ids


def _gpt2(cfg: dict[str, Any], vocab_size: int, eot: int) -> Any:
    """A freshly initialised GPT-2 of ``cfg`` (seeded by the caller), in train mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg["n_positions"],
        n_embd=cfg["n_embd"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        resid_pdrop=cfg["dropout"],
        embd_pdrop=cfg["dropout"],
        attn_pdrop=cfg["dropout"],
        activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU, fused (faster on CPU)
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    model = GPT2LMHeadModel(config)
    model.train()
    return model


def _lr_at(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0.1 ``lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _fit(model: Any, ids: Any, cfg: dict[str, Any]) -> list[dict[str, float]]:
    """AdamW on random windows of the stream; returns the loss curve (about 10 points)."""
    import torch
    import torch.nn.functional as F

    length = cfg["n_positions"]
    steps, bs, lr = cfg["steps"], cfg["batch_size"], float(cfg["lr"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 20)
    gen = torch.Generator().manual_seed(cfg["seed"])
    offsets = torch.arange(length)
    curve: list[dict[str, float]] = []
    window: list[float] = []
    log_every = max(1, steps // 10)
    for step in range(steps):
        starts = torch.randint(0, ids.numel() - length + 1, (bs,), generator=gen)
        x = ids[starts[:, None] + offsets]
        mask = torch.ones_like(x)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, lr, warmup, steps)
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            mean = sum(window) / len(window)
            curve.append({"step": step + 1, "loss": mean})
            log.info("step %d/%d loss %.4f", step + 1, steps, mean)
            window = []
    model.eval()
    return curve


def train_judge(
    data: str | os.PathLike,
    kind: str,
    cfg: dict[str, Any],
    out: str | os.PathLike,
    *,
    threads: int = 1,
) -> dict[str, Any]:
    """Train a tiny GPT-2 judge on ``data`` and save it into ``out``; returns the summary."""
    import torch

    cfg = check_train_config(cfg)
    if threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    texts = read_texts(data, kind)
    torch.set_num_threads(threads)
    _quiet_transformers()
    t0 = time.perf_counter()

    tokenizer = train_tokenizer(texts, cfg["vocab_size"], cfg["n_positions"])
    eot = tokenizer.convert_tokens_to_ids(EOT)
    ids = _token_stream(texts, tokenizer, eot, data, cfg["n_positions"])
    torch.manual_seed(cfg["seed"])
    model = _gpt2(cfg, len(tokenizer), eot)
    curve = _fit(model, ids, cfg)
    summary = {
        "format": "repro.judge.v1",
        "data": str(data),
        "kind": kind,
        "field": TEXT_FIELD[kind],
        "config": cfg,
        "threads": threads,
        "n_texts": len(texts),
        "n_train_tokens": int(ids.numel()),
        "vocab_size": len(tokenizer),
        "loss_curve": curve,
        "final_loss": curve[-1]["loss"],
        "train_seconds": round(time.perf_counter() - t0, 3),
        "versions": _versions(),
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "judge_train.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    log.info(
        "judge trained in %.1f s (%d texts, %d tokens, vocab %d, final loss %.3f) -> %s",
        summary["train_seconds"],
        len(texts),
        ids.numel(),
        len(tokenizer),
        summary["final_loss"],
        out,
    )
    return summary


# --- download -----------------------------------------------------------------------------------


def download_judge(repo_id: str, revision: str, out: str | os.PathLike) -> Path:
    """``snapshot_download`` of ``repo_id`` at ``revision`` into ``out`` (atomically)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        log.warning(
            "--revision %r is not a 40-hex commit: the judge is not pinned and may change upstream",
            revision,
        )
    out = Path(out)
    try:
        with atomic_dir(out) as tmp:
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                local_dir=tmp,
                ignore_patterns=list(DOWNLOAD_IGNORE),
            )
            (tmp / "judge_download.json").write_text(
                json.dumps({"id": repo_id, "revision": revision, "versions": _versions()}, indent=2)
                + "\n",
                encoding="utf-8",
            )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise InputError(
            f"cannot download judge {repo_id!r} at revision {revision!r}: the Hugging Face hub is "
            f"unreachable or HF_HUB_OFFLINE is set ({type(err).__name__}). Run this on a machine "
            f"with network access (a cluster login node) and copy {out}/ over, or point the "
            "metric's 'judge' option at a local judge directory instead (e.g. one made by "
            "`python -m repro.judge train`)"
        ) from None
    except GatedRepoError:
        raise InputError(
            f"judge {repo_id!r} is gated: accept its licence on huggingface.co and log in "
            "(`hf auth login`) before downloading"
        ) from None
    except RepositoryNotFoundError:
        raise InputError(f"--id {repo_id!r}: no such model repository on the hub") from None
    except RevisionNotFoundError:
        raise InputError(f"--revision {revision!r}: not a revision of {repo_id!r}") from None
    log.info("downloaded %s@%s -> %s", repo_id, revision, out)
    return out


# --- CLI ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = stage_parser("repro.judge", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a tiny GPT-2 judge and its BPE tokenizer")
    t.add_argument("--data", required=True, help="normalised split, results/data/D/train.jsonl")
    t.add_argument("--kind", required=True, choices=sorted(TEXT_FIELD), help="dataset task kind")
    t.add_argument("--config-json", default="{}", help="judge config as JSON (or @file)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    t.add_argument("--out", required=True, help="output directory, results/judges/NAME")
    d = sub.add_parser("download", help="download a hub judge (needs network)")
    d.add_argument("--id", required=True, help="hub model id, e.g. gpt2")
    d.add_argument("--revision", required=True, help="commit SHA to pin")
    d.add_argument("--out", required=True, help="output directory, resources/judges/NAME")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log_to_stderr()

    def body() -> None:
        if args.command == "train":
            cfg = json_object_arg(args.config_json, "--config-json")
            train_judge(args.data, args.kind, cfg, args.out, threads=args.threads)
        else:
            download_judge(args.id, args.revision, args.out)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
