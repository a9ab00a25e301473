"""Token layouts: how a normalised row becomes a fixed-length (ids, cond) pair, and back.

``cond[j] == 1`` where position j is *given* and 0 where a method must generate it
(docs/architecture.md, "Layouts"). Each layout follows one paper's code, as methods.md reports it:

* ``halves``      — FM-seq2seq (FMS code, methods.md §2.1): each side ``[CLS] … [SEP]``, first
  L/2−1 tokens kept, the side's last token appended, ``[PAD]`` to L/2: the double-``[SEP]`` quirk.
* ``diffuseq``    — DiffuSeq (DSQ code, methods.md §1.1): ``[CLS] src [SEP] [SEP] [CLS] trg [SEP]
  [PAD]…`` with pop-the-longer-side truncation; cond is the complement of DiffuSeq's input_mask.
* ``lm``          — KL-flow unconditional text (methods.md §3.5): ``[BOS] text [EOS] [PAD]…`` per
  document or stream-packed windows, with an explicit BOS as the only condition.
* ``conditional`` — KL-flow conditional generation (methods.md §3.5, snapshot code): prompt then
  response then EOS, pads generated.
* ``infill`` / ``infill_ar`` — KL-flow code infilling and its AR baseline (methods.md §3.5).

This module holds the base :class:`Layout`, its row helpers, ``lm`` and the registry
(:data:`LAYOUTS`); the seq2seq layouts live in :mod:`.seq2seq_layouts`, the code-infilling ones in
:mod:`.code_layouts`. The arrays are written by :func:`~.arrays.write_tokenized` and read back by
:func:`~.arrays.load_tokenized` (both re-exported here).

``decode`` always returns clean text (no special-token strings). The papers' exact string
cleaning (DiffuSeq keeps inner ``[PAD]`` strings and leading spaces, FMS strips) belongs to the
metrics stage.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer

from repro.io import InputError, OptionError

from .arrays import (  # noqa: F401  (re-exported: repro.tokenization.layouts names)
    EncodedSplit,
    TokenizedSplit,
    encode_split,
    load_tokenized,
    read_meta,
    tokenizer_sha256,
    write_tokenized,
)
from .vocab import Specials, load_tokenizer, specials_of

KINDS = ("seq2seq", "text", "code")
_FIELDS = {"seq2seq": ("src", "trg"), "text": ("text",), "code": ("code",)}
_CHUNK = 2048  # rows tokenised per encode_batch call




@dataclass(frozen=True)
class Encoded:
    """One encoded sequence: ``ids`` and ``cond`` have length ``seq_len``."""

    ids: list[int]
    cond: list[int]
    truncated: bool = False


def infer_kind(row: dict, where: str = "row") -> str:
    """Task kind of a normalised row, read from its fields."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "src" in row and "trg" in row:
        return "seq2seq"
    if "text" in row:
        return "text"
    if "code" in row:
        return "code"
    raise InputError(
        f"{where}: cannot tell the task kind from fields {sorted(row)}; expected src+trg "
        f"(seq2seq), text (text) or prompt+code (code) — is this a prepare_dataset output?"
    )


def _check_row(row: Any, kind: str, where: str) -> None:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not isinstance(row.get("id"), str):
        raise InputError(f"{where}: missing or non-string `id` (got {row.get('id')!r})")
    fields = _FIELDS[kind] + (("prompt",) if kind == "code" and "prompt" in row else ())
    for key in fields:
        if key not in row:
            raise InputError(f"{where} (id {row['id']}): missing field {key!r} of a {kind} row")
        if not isinstance(row[key], str):
            raise InputError(
                f"{where} (id {row['id']}): field {key!r} must be a string, got "
                f"{type(row[key]).__name__}"
            )


def _as_list(x: Any) -> list[int]:
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def split_lines(code: str) -> list[str]:
    """Lines of ``code``, each keeping its trailing ``\\n`` (only ``\\n`` splits; ``\\r`` stays)."""
    pieces = code.split("\n")
    lines = [p + "\n" for p in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _row_seed(seed: int, row_id: str) -> int:
    digest = hashlib.sha256(f"{seed}\x00{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def choose_masked_lines(
    row_id: str,
    lines: Sequence[str],
    n_tokens: Sequence[int],
    *,
    line_budget: int,
    mask_min: float,
    mask_max: float,
    seed: int,
) -> list[int]:
    """Indices of the lines to mask, deterministic in ``(seed, row_id)``; [] if none can be.

    A fraction f ~ U[mask_min, mask_max] of the non-blank lines (rounded half up, at least 1) is
    drawn among the non-blank lines whose token count is at most ``line_budget`` (KL-flow masks
    10–20% of the lines, methods.md §3.5); fewer when not enough lines fit the budget.
    """
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    eligible = [i for i in nonblank if n_tokens[i] <= line_budget]
    if not eligible:
        return []
    rng = np.random.default_rng(_row_seed(seed, row_id))
    frac = rng.uniform(mask_min, mask_max)
    n = min(max(1, math.floor(frac * len(nonblank) + 0.5)), len(eligible))
    return sorted(int(i) for i in rng.choice(eligible, size=n, replace=False))


def choose_masked_tokens(
    row_id: str, n_tokens: int, *, mask_min: float, mask_max: float, seed: int
) -> list[int]:
    """Indices (into the code's tokens) to mask, deterministic in ``(seed, row_id)``.

    KL-flow App. A masks "a proportion p of arbitrary tokens" of the canonical solution: a
    fraction f ~ U[mask_min, mask_max] (f = p when both are p) of the ``n_tokens`` code tokens,
    rounded half up, at least 1, drawn uniformly without replacement.
    """
    if n_tokens < 1:
        return []
    rng = np.random.default_rng(_row_seed(seed, f"{row_id}\x00tokens"))
    frac = rng.uniform(mask_min, mask_max)
    n = min(max(1, math.floor(frac * n_tokens + 0.5)), n_tokens)
    return sorted(int(i) for i in rng.choice(n_tokens, size=n, replace=False))


def choose_mask_unit(row_id: str, unit: str, seed: int) -> str:
    """``lines`` or ``tokens`` for one row: ``unit`` itself, or for ``lines_or_tokens`` a fair
    coin in ``(seed, row_id)`` (KL-flow App. A trains on "0%–80% of the lines or tokens")."""
    if unit != "lines_or_tokens":
        return unit
    rng = np.random.default_rng(_row_seed(seed, f"{row_id}\x00unit"))
    return "tokens" if rng.random() < 0.5 else "lines"


# ------------------------------------------------------------------------------------------ base


class Layout:
    """Base class: a layout encodes rows of its ``kinds`` into ``seq_len`` ids plus cond."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    #: option -> default; keys not listed are rejected
    defaults: ClassVar[dict[str, Any]] = {}
    min_seq_len: ClassVar[int] = 2
    #: options an evaluation-only dataset may set differently from its training dataset
    eval_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, seq_len: int, tokenizer: Tokenizer, specials: Specials | None = None, **options: Any
    ) -> None:
        self._set_options(seq_len, options)
        self.tokenizer = tokenizer
        self.specials = specials if specials is not None else specials_of(tokenizer)
        self._strip = self.specials.strip_ids()
        #: reason -> number of rows :meth:`encode` / :meth:`encode_many` returned None for
        self.drop_reasons: Counter[str] = Counter()

    def _set_options(self, seq_len: int, options: dict[str, Any]) -> None:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < self.min_seq_len:
            raise InputError(
                f"layout {self.name!r}: seq_len must be an integer >= {self.min_seq_len}, "
                f"got {seq_len!r}"
            )
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise OptionError(
                unknown[0],
                f"layout {self.name!r}: unknown option(s) {unknown}; "
                f"allowed: {sorted(self.defaults) or 'none'}",
            )
        self.seq_len = seq_len
        self.options: dict[str, Any] = {**self.defaults, **options}
        self._check_options()

    @classmethod
    def check_options(cls, seq_len: int, options: dict[str, Any]) -> dict[str, Any]:
        """The checks of the constructor that need no tokenizer (the workflow runs them on the
        config): ``options`` resolved over :attr:`defaults`, or :class:`InputError`."""
        probe = cls.__new__(cls)
        probe._set_options(seq_len, dict(options))
        return probe.options

    # ---- hooks for subclasses
    def _check_options(self) -> None:
        """Validate/resolve ``self.options`` (raise InputError naming the option)."""

    def stored_options(self) -> dict[str, Any]:
        """The options meta.json records (the layout is rebuilt from them)."""
        return dict(self.options)

    def _texts(self, row: dict) -> list[str]:
        raise NotImplementedError

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded | str:
        """Encoded row, or the reason (str) it is dropped."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        """Hypothesis text of a completed row (see the layout's docstring)."""
        raise NotImplementedError

    def source_text(self, row: dict) -> str:
        raise NotImplementedError

    def reference_text(self, row: dict) -> str:
        raise NotImplementedError

    # ---- shared machinery
    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encs = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [e.ids for e in encs]

    def check_rows(self, rows: Sequence[dict], where: str = "rows") -> None:
        """Raise InputError naming the row if a row is not of an accepted kind."""
        for i, row in enumerate(rows):
            self.check_row(row, f"{where}: row {i + 1}")

    def check_row(self, row: Any, label: str) -> None:
        """Raise InputError starting with ``label`` if ``row`` is not a valid row of an accepted
        kind."""
        kind = infer_kind(row, label)
        if kind not in self.kinds:
            raise InputError(
                f"{label}: a {kind} row, but layout {self.name!r} takes {'/'.join(self.kinds)} "
                f"rows; choose a layout for {kind} data ({', '.join(layouts_for(kind))})"
            )
        _check_row(row, kind, label)

    def iter_encoded(self, rows: Sequence[dict]) -> Iterator[tuple[str, Encoded | str]]:
        """``(row id, Encoded or drop reason)`` for each output sequence, tokenising in batches."""
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            per_row = [self._texts(row) for row in chunk]
            flat = self._tokenize([t for texts in per_row for t in texts])
            k = 0
            for row, texts in zip(chunk, per_row):
                yield row["id"], self._pack(row, flat[k : k + len(texts)])
                k += len(texts)

    def encode_many(self, rows: Sequence[dict]) -> list[Encoded | None]:
        """Encode rows (aligned with ``rows``); None = dropped, reason counted in drop_reasons."""
        rows = list(rows)
        self.check_rows(rows)
        out: list[Encoded | None] = []
        for _, enc in self.iter_encoded(rows):
            if isinstance(enc, str):
                self.drop_reasons[enc] += 1
                out.append(None)
            else:
                out.append(enc)
        return out

    def encode(self, row: dict) -> Encoded | None:
        return self.encode_many([row])[0]

    def decode_batch(self, ids: Sequence[Sequence[int]], cond: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(i, c) for i, c in zip(ids, cond)]

    def _finish(self, ids: list[int], cond: list[int], pad_cond: int, truncated: bool) -> Encoded:
        n_pad = self.seq_len - len(ids)
        assert n_pad >= 0 and len(ids) == len(cond)
        return Encoded(ids + [self.specials.pad] * n_pad, cond + [pad_cond] * n_pad, truncated)

    def _rows_of(self, ids: Sequence[int], cond: Sequence[int]) -> tuple[list[int], list[int]]:
        ids, cond = _as_list(ids), _as_list(cond)
        if len(ids) != self.seq_len or len(cond) != self.seq_len:
            raise ValueError(
                f"layout {self.name!r}: decode expects {self.seq_len} ids and cond values, "
                f"got {len(ids)} and {len(cond)}"
            )
        return ids, cond

    def _detok(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self._strip], skip_special_tokens=False)

    def _generated_until_eos(self, ids: list[int], cond: list[int]) -> str:
        region = [i for i, c in zip(ids, cond) if not c]
        if self.specials.eos in region:
            region = region[: region.index(self.specials.eos)]
        return self._detok(region)

    def _opt_int(self, key: str, minimum: int) -> int:
        value = self.options[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InputError(
                f"layout {self.name!r}: option {key} must be an integer >= {minimum}, got {value!r}"
            )
        return value


# --------------------------------------------------------------------------------------- text


class LM(Layout):
    """KL-flow unconditional text (methods.md §3.5) with an explicit ``[BOS]`` (cond = 1 there only).

    ``packing: document``: ``[BOS] text [EOS] [PAD]…`` per row; a longer text is cut to L−1 tokens
    and loses its EOS (counted as truncated). ``packing: stream``: all texts of the split joined as
    ``text [EOS] text [EOS] …``, cut into windows of L−1 tokens, each prefixed with ``[BOS]``; the
    last partial window is padded. A window's row id is that of the text its first token belongs
    to. decode: the generated region up to the first EOS, specials dropped.

    ``shard_windows: N`` (stream packing only) makes the tokenize stage write each split in
    shards of N windows with bounded memory (:mod:`.shards`); the windows are the same.
    """

    name = "lm"
    kinds = ("text",)
    defaults: ClassVar[dict[str, Any]] = {"packing": "document", "shard_windows": None}
    eval_options: ClassVar[tuple[str, ...]] = ("shard_windows",)

    def _check_options(self) -> None:
        if self.options["packing"] not in ("document", "stream"):
            raise InputError(
                f"layout 'lm': option packing must be 'document' or 'stream', "
                f"got {self.options['packing']!r}"
            )
        if self.options["shard_windows"] is not None:
            self._opt_int("shard_windows", 1)
            if self.options["packing"] != "stream":
                raise InputError(
                    "layout 'lm': option shard_windows needs packing 'stream' (document packing "
                    "keeps one row per window)"
                )

    def stored_options(self) -> dict[str, Any]:
        opts = dict(self.options)
        if opts["shard_windows"] is None:
            del opts["shard_windows"]
        return opts

    def _texts(self, row: dict) -> list[str]:
        return [row["text"]]

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded:
        body = [self.specials.bos, *toks[0], self.specials.eos]
        truncated = len(body) > self.seq_len
        body = body[: self.seq_len]
        return self._finish(body, [1] + [0] * (len(body) - 1), 0, truncated)

    def encode_many(self, rows: Sequence[dict]) -> list[Encoded | None]:
        if self.options["packing"] == "stream":
            raise ValueError(
                "layout 'lm' with packing 'stream' packs a whole split into windows; rows have no "
                "one-to-one encoding — use encode_split(rows, layout)"
            )
        return super().encode_many(rows)

    def iter_encoded(self, rows: Sequence[dict]) -> Iterator[tuple[str, Encoded | str]]:
        if self.options["packing"] == "document":
            yield from super().iter_encoded(rows)
            return
        width = self.seq_len - 1
        cond = [1] + [0] * width
        buf: list[int] = []  # tokens not yet emitted
        owners: list[tuple[int, str]] = []  # (offset in buf where a text starts, its id)
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            for row, toks in zip(chunk, self._tokenize([r["text"] for r in chunk])):
                owners.append((len(buf), row["id"]))
                buf.extend(toks)
                buf.append(self.specials.eos)
            pos, k = 0, 0
            while len(buf) - pos >= width:
                while k + 1 < len(owners) and owners[k + 1][0] <= pos:
                    k += 1
                yield owners[k][1], Encoded([self.specials.bos, *buf[pos : pos + width]], cond)
                pos += width
            while k + 1 < len(owners) and owners[k + 1][0] <= pos:
                k += 1
            buf = buf[pos:]
            owners = [(off - pos, rid) for off, rid in owners[k:]]
        if buf:
            yield owners[0][1], self._finish([self.specials.bos, *buf], cond[: len(buf) + 1], 0, False)

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        return self._generated_until_eos(*self._rows_of(ids, cond))

    def source_text(self, row: dict) -> str:
        return ""

    def reference_text(self, row: dict) -> str:
        return row["text"]


# ----------------------------------------------------------------------------------- registry

# the other kinds subclass Layout above: imported once it exists
from .code_layouts import Infill, InfillAR  # noqa: E402
from .seq2seq_layouts import Conditional, DiffuSeqLayout, Halves  # noqa: E402

LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (Halves, DiffuSeqLayout, LM, Conditional, Infill, InfillAR)
}


def layouts_for(kind: str) -> list[str]:
    return [name for name, cls in LAYOUTS.items() if kind in cls.kinds]


def get_layout(
    name: str,
    seq_len: int,
    tokenizer: Tokenizer,
    specials: Specials | None = None,
    **options: Any,
) -> Layout:
    """Build the layout ``name`` (``specials`` default: :func:`specials_of` the tokenizer)."""
    try:
        cls = LAYOUTS[name]
    except KeyError:
        raise InputError(f"unknown layout {name!r}; choose one of {sorted(LAYOUTS)}") from None
    return cls(seq_len, tokenizer, specials, **options)




def load_layout_from_meta(
    directory: str | os.PathLike, tokenizer_path: str | os.PathLike, meta: dict | None = None
) -> Layout:
    """Rebuild the Layout a tokenized directory was written with (checks the tokenizer matches);
    ``meta`` is the directory's :func:`read_meta`, read here when not given."""
    meta = read_meta(directory) if meta is None else meta
    tok = load_tokenizer(tokenizer_path)
    if tokenizer_sha256(tok) != meta["tokenizer_sha256"]:
        raise InputError(
            f"{tokenizer_path}: not the tokenizer {directory}/meta.json was encoded with "
            f"(sha256 differs) — re-run the tokenize stage"
        )
    specials = specials_of(tok)
    if specials.as_dict() != meta["specials"]:
        raise InputError(f"{directory}/meta.json: specials {meta['specials']} differ from the "
                         f"tokenizer's {specials.as_dict()}")
    return get_layout(meta["layout"], meta["seq_len"], tok, specials, **meta["options"])
