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

The arrays are written by :func:`write_tokenized` and read back by :func:`load_tokenized`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer

from repro.io import InputError, OptionError, atomic_path, atomic_write_json, read_json

from .shards import ShardedArray, ShardedSplit, open_shards
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


# ------------------------------------------------------------------------------------ seq2seq


class Halves(Layout):
    """FM-seq2seq: source in positions [0, L/2), target in [L/2, L) (methods.md §2.1, FMS code).

    Per side: ``[CLS] tokens [SEP]``, keep the first L/2−1, append the side's last token
    (``[SEP]``), right-pad to L/2. Untruncated sides therefore end ``[SEP] [SEP]``; only a side
    with more than L/2−2 tokens ends with a single ``[SEP]`` (and counts as truncated).
    decode: FMS decodes all L/2 target ids and removes ``[SEP]``/``[CLS]``/``[PAD]``; here every
    special id is dropped before detokenising. The reference, as in both papers' code, is the same
    decode of the (possibly truncated) tokenised target, not the raw string.
    """

    name = "halves"
    kinds = ("seq2seq",)
    min_seq_len = 4

    def _check_options(self) -> None:
        if self.seq_len % 2:
            raise InputError(f"layout 'halves': seq_len must be even, got {self.seq_len}")

    def _texts(self, row: dict) -> list[str]:
        return [row["src"], row["trg"]]

    def _side(self, toks: list[int]) -> tuple[list[int], bool]:
        half = self.seq_len // 2
        full = [self.specials.cls, *toks, self.specials.sep]
        kept = full[: half - 1] + [full[-1]]
        return kept + [self.specials.pad] * (half - len(kept)), len(toks) > half - 2

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded:
        src, src_cut = self._side(toks[0])
        trg, trg_cut = self._side(toks[1])
        half = self.seq_len // 2
        return Encoded(src + trg, [1] * half + [0] * half, src_cut or trg_cut)

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        ids, cond = self._rows_of(ids, cond)
        return self._detok(i for i, c in zip(ids, cond) if not c).strip()

    def source_text(self, row: dict) -> str:
        enc = self.encode(row)
        assert enc is not None  # halves never drops
        return self._detok(i for i, c in zip(enc.ids, enc.cond) if c).strip()

    def reference_text(self, row: dict) -> str:
        enc = self.encode(row)
        assert enc is not None
        return self.decode(enc.ids, enc.cond)


class DiffuSeqLayout(Halves):
    """DiffuSeq packing (methods.md §1.1, DSQ code).

    Both sides are tokenised as ``[CLS] … [SEP]``; the trailing ``[SEP]`` is removed, then the
    longer side loses its last token (ties: both) until ``len(src) + len(trg) <= L − 3``; ``[SEP]``
    is re-appended to each and the row is ``src [SEP] trg [PAD]…``. DiffuSeq's input_mask is 0 on
    the first ``len(src) + 1`` positions (``[CLS] s [SEP] [SEP]``); cond is its complement, so the
    target ``[CLS]``/``[SEP]`` and every ``[PAD]`` are generated.
    decode: DiffuSeq takes the positions from the target start, strips trailing ``[PAD]`` ids and
    detokenises (no cut at ``[SEP]``); here every special id is dropped. Reference = the same
    decode of the tokenised (possibly truncated) target.
    """

    name = "diffuseq"
    min_seq_len = 5

    def _check_options(self) -> None:
        pass

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded:
        sp = self.specials
        src, trg = [sp.cls, *toks[0]], [sp.cls, *toks[1]]
        truncated = False
        while len(src) + len(trg) > self.seq_len - 3:
            truncated = True
            if len(src) > len(trg):
                src.pop()
            elif len(src) < len(trg):
                trg.pop()
            else:
                src.pop()
                trg.pop()
        src.append(sp.sep)
        trg.append(sp.sep)
        ids = src + [sp.sep] + trg
        return self._finish(ids, [1] * (len(src) + 1) + [0] * len(trg), 0, truncated)


class Conditional(Layout):
    """KL-flow conditional generation (methods.md §3.5, snapshot code).

    ``[BOS] src [SEP] trg [EOS] [PAD]…``: the source keeps its first ``max_src_len`` tokens
    (default L//2; KL-flow: prompt ≤ 256 of 512), the target is cut to fit (then without EOS).
    cond = 1 on ``[BOS] src [SEP]``; target, EOS and pads are generated. decode: the generated
    region up to the first EOS, specials dropped. Source/reference are the raw row strings
    (KL-flow scores against the dataset text).
    """

    name = "conditional"
    kinds = ("seq2seq",)
    defaults: ClassVar[dict[str, Any]] = {"max_src_len": None}
    min_seq_len = 4

    def _check_options(self) -> None:
        if self.options["max_src_len"] is None:
            self.options["max_src_len"] = self.seq_len // 2
        self._opt_int("max_src_len", 1)
        if self.options["max_src_len"] > self.seq_len - 3:
            raise InputError(
                f"layout 'conditional': max_src_len {self.options['max_src_len']} leaves no room "
                f"for the target in seq_len {self.seq_len}; use at most seq_len − 3"
            )

    def _texts(self, row: dict) -> list[str]:
        return [row["src"], row["trg"]]

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded:
        sp, m = self.specials, self.options["max_src_len"]
        src, trg = toks[0][:m], toks[1]
        truncated = len(toks[0]) > m
        room = self.seq_len - len(src) - 2
        if len(trg) + 1 <= room:
            trg = [*trg, sp.eos]
        else:
            trg, truncated = trg[:room], True
        given = [sp.bos, *src, sp.sep]
        return self._finish(given + trg, [1] * len(given) + [0] * len(trg), 0, truncated)

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        return self._generated_until_eos(*self._rows_of(ids, cond))

    def source_text(self, row: dict) -> str:
        return row["src"]

    def reference_text(self, row: dict) -> str:
        return row["trg"]


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


# --------------------------------------------------------------------------------------- code


@dataclass
class _CodePlan:
    prefix: list[int]  # [BOS] (+ prompt tokens [SEP])
    lines: list[str]
    toks: list[list[int]]
    masked: list[int]  # masked line indices (unit "lines") or code-token indices ("tokens")
    unit: str = "lines"


class Infill(Layout):
    """KL-flow code infilling (methods.md §3.5): each masked line gets ``line_budget`` slots.

    The code is tokenised line by line (each line with its trailing newline). Masked lines are
    chosen by :func:`choose_masked_lines` from ``(seed, row id)``. Sequence: ``[BOS]``, then, with
    ``include_prompt``, the tokens of the prompt (plus a newline) and a ``[SEP]`` that marks where
    the code starts (our addition: it lets decode drop the prompt), then the code lines — a masked
    line as its tokens followed by ``[PAD]`` up to ``line_budget`` slots — then ``[PAD]`` to L.
    cond = 0 exactly on the masked-line slots (trailing pads are given).

    A row is dropped when it has no maskable line, or when its ``infill_ar`` form (2 more tokens
    per masked line) exceeds L: both layouts keep exactly the same rows, so KL-flow/DFM and the AR
    baseline are scored on the same problems.

    ``mask_unit`` (KL-flow App. A, the HumanEval infilling experiment): ``lines`` (the above,
    Table 4), ``tokens`` (a fraction f ~ U[mask_min, mask_max] of the code's tokens, each masked
    token generated in its own position: cond = 0 there, nothing moves; App. A's evaluation masks
    "a proportion p of arbitrary tokens" of the canonical solution, i.e. mask_min = mask_max = p),
    or ``lines_or_tokens`` (App. A's training: each row draws lines or tokens with a fair coin).
    ``mask_fraction: p`` fixes the fraction (mask_min = mask_max = p; a figure sweeps it).
    ``prompt_in_program``: the decoded program starts with the prompt (HumanEval, whose prompt is
    the function's signature and docstring; MBPP's prompt is prose and stays out).

    decode: the full program (``row["code"]`` re-assembled, prompt excluded unless
    ``prompt_in_program``): visible lines as given, each masked slot cut at its first
    ``[PAD]``/``[EOS]``, specials dropped. With token units (``tokens``, ``lines_or_tokens``) a
    generated position holds one token: special tokens are dropped, the others kept in place.
    """

    name = "infill"
    kinds = ("code",)
    defaults: ClassVar[dict[str, Any]] = {
        "line_budget": 24,
        "mask_min": 0.1,
        "mask_max": 0.2,
        "seed": 0,
        "include_prompt": False,
        "mask_unit": "lines",
        "mask_fraction": None,
        "prompt_in_program": False,
    }
    #: options that only choose which positions are masked (or how a program is assembled), not
    #: the sequence format a model is trained on: an evaluation-only dataset (``train_on``) may set
    #: them differently from its training dataset (KL-flow App. A: train on 0–80 % lines or
    #: tokens, evaluate at a fixed proportion p of tokens)
    eval_options: ClassVar[tuple[str, ...]] = (
        "mask_min", "mask_max", "mask_fraction", "seed", "mask_unit", "prompt_in_program",
    )
    mask_units: ClassVar[tuple[str, ...]] = ("lines", "tokens", "lines_or_tokens")

    def _check_options(self) -> None:
        self._opt_int("line_budget", 1)
        if self.options["line_budget"] > self.seq_len - 1:
            raise InputError(
                f"layout {self.name!r}: line_budget {self.options['line_budget']} does not fit "
                f"in seq_len {self.seq_len}"
            )
        lo, hi = self.options["mask_min"], self.options["mask_max"]
        for key, value in (("mask_min", lo), ("mask_max", hi)):
            # 0 is allowed (App. A trains on "0%–80%"); at least one unit is always masked
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise InputError(
                    f"layout {self.name!r}: option {key} must be a number in [0, 1], got {value!r}"
                )
        if hi <= 0:
            raise InputError(f"layout {self.name!r}: mask_max must be > 0, got {hi!r}")
        mf = self.options["mask_fraction"]
        if mf is not None and (
            not isinstance(mf, int | float) or isinstance(mf, bool) or not 0 < mf <= 1
        ):
            raise InputError(
                f"layout {self.name!r}: option mask_fraction must be null or a number in (0, 1], "
                f"got {mf!r}"
            )
        if lo > hi:
            raise InputError(f"layout {self.name!r}: mask_min {lo} is larger than mask_max {hi}")
        if not isinstance(self.options["seed"], int) or isinstance(self.options["seed"], bool):
            raise InputError(f"layout {self.name!r}: option seed must be an integer")
        for key in ("include_prompt", "prompt_in_program"):
            if not isinstance(self.options[key], bool):
                raise InputError(f"layout {self.name!r}: option {key} must be true/false")
        if self.options["prompt_in_program"] and not self.options["include_prompt"]:
            raise InputError(
                f"layout {self.name!r}: prompt_in_program needs include_prompt: true (the prompt "
                "must be in the sequence to be put back in front of the program)"
            )
        if self.options["mask_unit"] not in self.mask_units:
            raise InputError(
                f"layout {self.name!r}: option mask_unit must be one of {list(self.mask_units)}, "
                f"got {self.options['mask_unit']!r}"
            )

    def _mask_range(self) -> tuple[float, float]:
        """(mask_min, mask_max), or (p, p) with ``mask_fraction: p`` (App. A's fixed proportion)."""
        mf = self.options["mask_fraction"]
        return (self.options["mask_min"], self.options["mask_max"]) if mf is None else (mf, mf)

    def _prompt(self, row: dict) -> list[str]:
        if not self.options["include_prompt"]:
            return []
        prompt = row.get("prompt", "")
        return [prompt if not prompt or prompt.endswith("\n") else prompt + "\n"]

    def _texts(self, row: dict) -> list[str]:
        return self._prompt(row) + split_lines(row["code"])

    def _plan(self, row: dict, toks: list[list[int]]) -> _CodePlan | str:
        prefix = [self.specials.bos]
        if self.options["include_prompt"]:
            prefix += [*toks[0], self.specials.sep]
            toks = toks[1:]
        lines = split_lines(row["code"])
        if not any(line.strip() for line in lines):
            return "no non-blank code line"
        o = self.options
        lo, hi = self._mask_range()
        if choose_mask_unit(row["id"], o["mask_unit"], o["seed"]) == "tokens":
            n_code = sum(len(t) for t in toks)
            masked = choose_masked_tokens(row["id"], n_code, mask_min=lo, mask_max=hi,
                                          seed=o["seed"])
            if not masked:
                return "no code token"
            if len(prefix) + n_code > self.seq_len:
                return "longer than seq_len"
            return _CodePlan(prefix, lines, toks, masked, "tokens")
        # One slot of the budget is kept free for the [EOS] that ends each line in infill_ar, and
        # both layouts apply the same rule, so they mask the same lines of the same row.
        masked = choose_masked_lines(
            row["id"], lines, [len(t) for t in toks], line_budget=o["line_budget"] - 1,
            mask_min=lo, mask_max=hi, seed=o["seed"],
        )
        if not masked:
            return f"no non-blank line of at most line_budget-1={o['line_budget'] - 1} tokens"
        n_infill = len(prefix) + sum(
            o["line_budget"] if i in masked else len(t) for i, t in enumerate(toks)
        )
        if n_infill + 2 * len(masked) > self.seq_len:
            return "longer than seq_len (in the infill_ar form)"
        return _CodePlan(prefix, lines, toks, masked)

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded | str:
        plan = self._plan(row, toks)
        if isinstance(plan, str):
            return plan
        budget, pad = self.options["line_budget"], self.specials.pad
        ids, cond = list(plan.prefix), [1] * len(plan.prefix)
        masked = set(plan.masked)
        if plan.unit == "tokens":
            code = [i for t in plan.toks for i in t]
            ids += code
            cond += [0 if k in masked else 1 for k in range(len(code))]
            return self._finish(ids, cond, 1, False)
        for i, t in enumerate(plan.toks):
            if i in masked:
                ids += t + [pad] * (budget - len(t))
                cond += [0] * budget
            else:
                ids += t
                cond += [1] * len(t)
        return self._finish(ids, cond, 1, False)

    def _code_start(self, ids: list[int], cond: list[int]) -> int:
        if not self.options["include_prompt"]:
            return 1
        for j in range(1, len(ids)):
            if ids[j] == self.specials.sep and cond[j]:
                return j + 1
        raise ValueError(f"layout {self.name!r}: no given [SEP] ends the prompt")

    def _slot_tokens(self, slot: list[int]) -> list[int]:
        stop = {self.specials.pad, self.specials.eos}
        for k, i in enumerate(slot):
            if i in stop:
                slot = slot[:k]
                break
        return [i for i in slot if i not in self._strip]

    def _decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _prompt_ids(self, ids: list[int], start: int) -> list[int]:
        """The prompt's tokens in front of the program (``prompt_in_program``), else none."""
        if not self.options["prompt_in_program"]:
            return []
        return [i for i in ids[1 : start - 1] if i not in self._strip]

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        ids, cond = self._rows_of(ids, cond)
        budget = self.options["line_budget"]
        j = self._code_start(ids, cond)
        out: list[int] = self._prompt_ids(ids, j)
        if self.options["mask_unit"] != "lines":  # one token per generated position
            return self._decode_ids(out + [i for i in ids[j:] if i not in self._strip])
        while j < self.seq_len:
            if cond[j]:
                if ids[j] not in self._strip:
                    out.append(ids[j])
                j += 1
                continue
            if j + budget > self.seq_len or any(cond[j : j + budget]):
                raise ValueError(
                    f"layout 'infill': generated run at position {j} is not a whole number of "
                    f"line_budget={budget} slots — cond does not come from this layout"
                )
            out += self._slot_tokens(ids[j : j + budget])
            j += budget
        return self._decode_ids(out)

    def _masked_view(self, row: dict) -> str:
        self.check_rows([row])
        toks = self._tokenize(self._texts(row))
        plan = self._plan(row, toks)
        prompt = self._prompt(row)
        head = prompt[0] if prompt else ""
        if isinstance(plan, str):
            return head + row["code"]
        mask = self.tokenizer.id_to_token(self.specials.mask)
        masked = set(plan.masked)
        if plan.unit == "tokens":  # each masked token shown as [MASK] in place
            code = [i for t in plan.toks for i in t]
            pieces, run = [], []
            for k, i in enumerate(code):
                if k in masked:
                    if run:
                        pieces.append(self._decode_ids(run))
                        run = []
                    pieces.append(mask)
                else:
                    run.append(i)
            if run:
                pieces.append(self._decode_ids(run))
            return head + "".join(pieces)
        body = "".join(
            mask + line[len(line.rstrip("\r\n")) :] if i in masked else line
            for i, line in enumerate(plan.lines)
        )
        return head + body

    def source_text(self, row: dict) -> str:
        """The prompt (with include_prompt) and the code with each masked line shown as [MASK]."""
        return self._masked_view(row)

    def reference_text(self, row: dict) -> str:
        return row["code"]


class InfillAR(Infill):
    """KL-flow's AR baseline for infilling (methods.md §3.5): masked lines moved to the end.

    Same masked lines as :class:`Infill` for the same row and options. Each masked line is replaced
    in place by one ``[MASK]`` placeholder (KL-flow: an EOT placeholder); after the code, for each
    masked line in order: ``[SEP]`` (KL-flow: EOT) then ``line_budget`` slots holding its tokens,
    ``[EOS]`` and ``[PAD]``; then ``[PAD]`` to L.

    cond = 0 exactly on the appended line slots. The ``[SEP]`` separators and the trailing pads are
    *given* (cond = 1): with fixed budgets the model generates each line's content and never has to
    place a separator, and decode can find the k-th slot at a fixed offset. Each line ends with
    ``[EOS]`` (a deviation from KL-flow's EOT padding, made so a causal model trained without loss on
    ``[PAD]`` targets learns where a line stops; the AR sampler pads a slot after its EOS). decode
    re-inserts slot k (cut at its first ``[PAD]``/``[EOS]``) at the k-th placeholder.
    """

    name = "infill_ar"

    def _check_options(self) -> None:
        super()._check_options()
        if self.options["mask_unit"] != "lines":
            raise InputError(
                f"layout {self.name!r}: mask_unit must be 'lines' (KL-flow's AR infilling baseline "
                f"moves whole masked lines to the end), got {self.options['mask_unit']!r}"
            )

    def _pack(self, row: dict, toks: list[list[int]]) -> Encoded | str:
        plan = self._plan(row, toks)
        if isinstance(plan, str):
            return plan
        budget, sp = self.options["line_budget"], self.specials
        ids, cond = list(plan.prefix), [1] * len(plan.prefix)
        masked = set(plan.masked)
        for i, t in enumerate(plan.toks):
            chunk = [sp.mask] if i in masked else t
            ids += chunk
            cond += [1] * len(chunk)
        for i in plan.masked:
            t = plan.toks[i]
            ids += [sp.sep, *t, sp.eos] + [sp.pad] * (budget - len(t) - 1)
            cond += [1] + [0] * budget
        return self._finish(ids, cond, 1, False)

    def decode(self, ids: Sequence[int], cond: Sequence[int]) -> str:
        ids, cond = self._rows_of(ids, cond)
        budget, sp = self.options["line_budget"], self.specials
        start = self._code_start(ids, cond)
        first_gen = next((j for j in range(start, self.seq_len) if not cond[j]), None)
        prompt = self._prompt_ids(ids, start)
        if first_gen is None:  # nothing was masked: the code is all given
            return self._decode_ids(prompt + [i for i in ids[start:] if i not in self._strip])
        end = first_gen - 1
        if ids[end] != sp.sep or not cond[end]:
            raise ValueError("layout 'infill_ar': the first generated slot is not after a given [SEP]")
        out: list[int] = prompt
        k = 0
        for i, c in zip(ids[start:end], cond[start:end]):
            if i == sp.mask and c:
                a = first_gen + k * (budget + 1)
                if a + budget > self.seq_len:
                    raise ValueError(f"layout 'infill_ar': placeholder {k + 1} has no slot")
                out += self._slot_tokens(ids[a : a + budget])
                k += 1
            elif i not in self._strip:
                out.append(i)
        return self._decode_ids(out)


# ----------------------------------------------------------------------------------- registry

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


# ----------------------------------------------------------------------------------- on disk


@dataclass
class EncodedSplit:
    ids: np.ndarray  # int32 (N, L)
    cond: np.ndarray  # uint8 (N, L)
    row_ids: list[str]
    dropped: int
    truncated: int
    drop_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class TokenizedSplit:
    ids: np.ndarray | ShardedArray  # int32 (N, L), memory-mapped read-only
    cond: np.ndarray | ShardedArray  # uint8 (N, L), memory-mapped read-only
    row_ids: Sequence[str]  # a list, or ShardedRowIds for a sharded split
    meta: dict


def encode_split(rows: Sequence[dict], layout: Layout, where: str = "rows") -> EncodedSplit:
    """Encode all rows of a split; ``where`` (e.g. the jsonl path) prefixes error messages."""
    rows = list(rows)
    layout.check_rows(rows, where)
    length = layout.seq_len
    ids_blocks, cond_blocks = [], []
    ids_buf: list[list[int]] = []
    cond_buf: list[list[int]] = []
    row_ids: list[str] = []
    reasons: Counter[str] = Counter()
    truncated = 0

    def flush() -> None:
        if ids_buf:
            ids_blocks.append(np.asarray(ids_buf, dtype=np.int32))
            cond_blocks.append(np.asarray(cond_buf, dtype=np.uint8))
            ids_buf.clear()
            cond_buf.clear()

    for row_id, enc in layout.iter_encoded(rows):
        if isinstance(enc, str):
            reasons[enc] += 1
            continue
        ids_buf.append(enc.ids)
        cond_buf.append(enc.cond)
        row_ids.append(row_id)
        truncated += enc.truncated
        if len(ids_buf) >= 4096:
            flush()
    flush()
    ids = np.concatenate(ids_blocks) if ids_blocks else np.zeros((0, length), np.int32)
    cond = np.concatenate(cond_blocks) if cond_blocks else np.zeros((0, length), np.uint8)
    return EncodedSplit(ids, cond, row_ids, sum(reasons.values()), truncated, dict(reasons))


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """sha256 of ``Tokenizer.to_str()`` (the train stage writes exactly these bytes)."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_tokenized(
    out_dir: str | os.PathLike,
    layout: Layout,
    splits: dict[str, EncodedSplit | ShardedSplit],
    meta_extra: dict | None = None,
) -> dict:
    """Write ``{split}.ids.npy``, ``{split}.cond.npy`` and ``meta.json`` (last), atomically.

    A :class:`ShardedSplit` (its shards already written by
    :func:`~repro.tokenization.shards.write_stream_shards`) gets ``(0, L)`` placeholder arrays and
    its shard manifest in meta.json instead of ``row_ids``.
    """
    out = Path(out_dir)
    meta = {
        "layout": layout.name,
        "options": layout.stored_options(),
        "seq_len": layout.seq_len,
        "vocab_size": layout.tokenizer.get_vocab_size(with_added_tokens=True),
        "specials": layout.specials.as_dict(),
        "tokenizer_sha256": tokenizer_sha256(layout.tokenizer),
        "splits": {},
    }
    clash = set(meta_extra or {}) & set(meta)
    if clash:
        raise ValueError(f"meta_extra may not override {sorted(clash)}")
    meta.update(meta_extra or {})
    for split, enc in splits.items():
        if isinstance(enc, ShardedSplit):
            for part, dtype in (("ids", np.int32), ("cond", np.uint8)):
                _save_npy(out / f"{split}.{part}.npy", np.zeros((0, layout.seq_len), dtype))
            meta["splits"][split] = {
                "n": enc.n, "dropped": 0, "truncated": 0, "shards": enc.manifest(),
            }
            continue
        n = len(enc.row_ids)
        if enc.ids.shape != (n, layout.seq_len) or enc.cond.shape != (n, layout.seq_len):
            raise ValueError(f"split {split}: arrays of shape {enc.ids.shape}/{enc.cond.shape} do "
                             f"not match {n} row ids and seq_len {layout.seq_len}")
        _save_npy(out / f"{split}.ids.npy", enc.ids.astype(np.int32, copy=False))
        _save_npy(out / f"{split}.cond.npy", enc.cond.astype(np.uint8, copy=False))
        meta["splits"][split] = {
            "n": n, "row_ids": list(enc.row_ids), "dropped": int(enc.dropped),
            "truncated": int(enc.truncated),
        }
    atomic_write_json(out / "meta.json", meta, indent=None)
    return meta


def read_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise InputError(f"{path}: not found — run the tokenize stage for this layout first")
    meta = read_json(path)
    for key in ("layout", "options", "seq_len", "specials", "tokenizer_sha256", "splits"):
        if key not in meta:
            raise InputError(f"{path}: missing key {key!r} (written by an older version? re-run tokenize)")
    return meta


def load_tokenized(directory: str | os.PathLike, split: str) -> TokenizedSplit:
    """Memory-map one split's arrays (read-only) with its row ids and the layout's meta."""
    directory = Path(directory)
    meta = read_meta(directory)
    if split not in meta["splits"]:
        raise InputError(
            f"{directory}/meta.json: no split {split!r}; it has {sorted(meta['splits'])}"
        )
    info = meta["splits"][split]
    if "shards" in info:
        ids, cond, row_ids = open_shards(directory, split, info, meta["seq_len"])
        return TokenizedSplit(ids, cond, row_ids, meta)
    arrays = {}
    for part, dtype in (("ids", np.int32), ("cond", np.uint8)):
        path = directory / f"{split}.{part}.npy"
        if not path.is_file():
            raise InputError(f"{path}: not found (meta.json lists it) — re-run the tokenize stage")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.dtype != dtype or arr.shape != (info["n"], meta["seq_len"]):
            raise InputError(
                f"{path}: {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} "
                f"({info['n']}, {meta['seq_len']}) per meta.json — re-run the tokenize stage"
            )
        arrays[part] = arr
    return TokenizedSplit(arrays["ids"], arrays["cond"], list(info["row_ids"]), meta)


def load_layout_from_meta(directory: str | os.PathLike, tokenizer_path: str | os.PathLike) -> Layout:
    """Rebuild the Layout a tokenized directory was written with (checks the tokenizer matches)."""
    meta = read_meta(directory)
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
