"""CLI of the train_tokenizer and tokenize stages (docs/architecture.md, "Files between stages").

    python -m repro.tokenization train --data-dir results/data/NAME --kind seq2seq|text|code \\
        --config-json '{"train": {...}}' | '{"pretrained": {...}}' \\
        --out results/tokenizer/NAME/tokenizer.json
    python -m repro.tokenization encode --data-dir results/data/NAME \\
        --tokenizer results/tokenizer/NAME/tokenizer.json --layout LAYOUT --seq-len L \\
        [--options-json '{...}'] --out-dir results/tokenized/NAME/LAYOUT

``train`` fits on the train split only (seq2seq: src and trg; text: text; code: prompt and code)
or loads the pretrained tokenizer; ``encode`` writes train/validation/test arrays and meta.json
(``lm`` with ``shard_windows``: streamed into resumable shards, see :mod:`.shards`).
Bad input exits with status 2 and one ``error:`` line naming the file, row or key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from repro.io import (
    InputError,
    atomic_write_text,
    iter_jsonl,
    iter_jsonl_at,
    json_object_arg,
    read_jsonl,
    run_cli,
)

from .layouts import (
    KINDS,
    EncodedSplit,
    Layout,
    encode_split,
    get_layout,
    infer_kind,
    layouts_for,
    write_tokenized,
)
from .shards import ShardedSplit, write_stream_shards
from .vocab import load_pretrained, load_tokenizer, specials_of, train_tokenizer

SPLITS = ("train", "validation", "test")


def _json_arg(text: str, flag: str) -> dict:
    return json_object_arg(text, flag)


def _read_split(data_dir: Path, split: str) -> tuple[Path, list[dict]]:
    path = data_dir / f"{split}.jsonl"
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: the {split} split of {data_dir} is empty")
    return path, rows


def _training_texts(path: Path, kind: str, count: list[int]) -> Iterator[str]:
    """The texts of the train split, streamed row by row; ``count[0]`` counts the rows."""
    fields = {"seq2seq": ("src", "trg"), "text": ("text",), "code": ("prompt", "code")}[kind]
    for i, (_, row) in enumerate(iter_jsonl(path), start=1):
        count[0] = i
        got = infer_kind(row, f"{path}: row {i}")
        if got != kind:
            raise InputError(f"{path}: row {i} is a {got} row, but --kind is {kind}")
        for key in fields:
            value = row.get(key, "")
            if not isinstance(value, str):
                raise InputError(f"{path}: row {i}: field {key!r} must be a string")
            if value:
                yield value


def cmd_train(args: argparse.Namespace) -> None:
    cfg = _json_arg(args.config_json, "--config-json")
    if len(cfg) != 1 or next(iter(cfg)) not in ("train", "pretrained"):
        raise InputError(
            f"--config-json: expected exactly one of {{\"train\": {{...}}}} or "
            f"{{\"pretrained\": {{...}}}}, got keys {sorted(cfg)}"
        )
    if "train" in cfg:
        path, count = Path(args.data_dir) / "train.jsonl", [0]
        tok = train_tokenizer(_training_texts(path, args.kind, count), cfg["train"])
        if not count[0]:
            raise InputError(f"{path}: the train split of {args.data_dir} is empty")
        how = f"trained on {count[0]} rows of {path}"
    else:
        tok = load_pretrained(cfg["pretrained"])
        how = f"pretrained {cfg['pretrained'].get('id')}"
    atomic_write_text(args.out, tok.to_str())
    print(f"{args.out}: {how}; vocab_size={tok.get_vocab_size(with_added_tokens=True)} "
          f"specials={specials_of(tok).as_dict()}")


def cmd_encode(args: argparse.Namespace) -> None:
    options = _json_arg(args.options_json, "--options-json")
    tok = load_tokenizer(args.tokenizer)
    layout = get_layout(args.layout, args.seq_len, tok, specials_of(tok), **options)
    data_dir = Path(args.data_dir)
    splits: dict[str, EncodedSplit | ShardedSplit] = {}
    for split in args.splits.split(","):
        if split not in SPLITS:
            raise InputError(f"--splits: unknown split {split!r}; choose from {SPLITS}")
        if layout.options.get("shard_windows"):
            splits[split] = _encode_sharded(data_dir, split, layout, Path(args.out_dir))
            continue
        path, rows = _read_split(data_dir, split)
        kind = infer_kind(rows[0], f"{path}: row 1")
        if kind not in layout.kinds:
            raise InputError(
                f"{data_dir}: a {kind} dataset, but layout {layout.name!r} takes "
                f"{'/'.join(layout.kinds)} data; use one of {layouts_for(kind)}"
            )
        enc = encode_split(rows, layout, where=str(path))
        reasons = "; ".join(f"{n} {r}" for r, n in sorted(enc.drop_reasons.items()))
        print(f"{split}: {len(rows)} rows -> n={len(enc.row_ids)} dropped={enc.dropped}"
              f"{f' ({reasons})' if reasons else ''} truncated={enc.truncated}")
        if not enc.row_ids:
            raise InputError(f"{path}: every row was dropped by layout {layout.name!r} ({reasons}); "
                             f"raise --seq-len or the line_budget")
        splits[split] = enc
    write_tokenized(args.out_dir, layout, splits)
    print(f"{args.out_dir}: layout={layout.name} seq_len={layout.seq_len} options={layout.options}")


def _encode_sharded(data_dir: Path, split: str, layout: Layout, out_dir: Path) -> ShardedSplit:
    """Pack one split into shards, streaming its JSONL (``lm`` with ``shard_windows``)."""
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    for lineno, _, _, row in iter_jsonl_at(path):
        kind = infer_kind(row, f"{path}:{lineno}")
        if kind not in layout.kinds:
            raise InputError(
                f"{data_dir}: a {kind} dataset, but layout {layout.name!r} takes "
                f"{'/'.join(layout.kinds)} data; use one of {layouts_for(kind)}"
            )
        break
    else:
        raise InputError(f"{path}: the {split} split of {data_dir} is empty")
    enc = write_stream_shards(path, layout, out_dir, split)
    print(f"{split}: {enc.rows} rows -> n={enc.n} in {len(enc.files)} shards of "
          f"<= {enc.windows} windows ({enc.reused} kept from an earlier run) dropped=0 truncated=0")
    return enc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.tokenization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train or load a tokenizer, write tokenizer.json")
    train.add_argument("--data-dir", required=True)
    train.add_argument("--kind", required=True, choices=KINDS)
    train.add_argument("--config-json", required=True)
    train.add_argument("--out", required=True)
    train.set_defaults(func=cmd_train)
    enc = sub.add_parser("encode", help="encode the splits of a dataset into a layout")
    enc.add_argument("--data-dir", required=True)
    enc.add_argument("--tokenizer", required=True)
    enc.add_argument("--layout", required=True)
    enc.add_argument("--seq-len", required=True, type=int)
    enc.add_argument("--options-json", default="{}")
    enc.add_argument("--splits", default=",".join(SPLITS))
    enc.add_argument("--out-dir", required=True)
    enc.set_defaults(func=cmd_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
