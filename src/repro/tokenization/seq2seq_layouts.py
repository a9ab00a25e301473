"""Seq2seq layouts: ``halves`` (FM-seq2seq), ``diffuseq`` (DiffuSeq) and ``conditional`` (KL-flow).

Each turns a ``{src, trg}`` row into one fixed-length ``(ids, cond)`` pair of length ``seq_len``,
``cond = 1`` on the given source positions (docs/architecture.md, "Layouts"); the registry is
:data:`repro.tokenization.layouts.LAYOUTS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from repro.io import InputError

from .layouts import Encoded, Layout


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

