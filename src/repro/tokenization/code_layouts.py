"""Code-infilling layouts of KL-flow: ``infill`` and its autoregressive baseline ``infill_ar``.

Masked lines (or code tokens) of a ``{code}`` row are chosen from ``(seed, row id)``
(:func:`~.layouts.choose_masked_lines`); each gets ``line_budget`` generated slots in a
fixed-length ``(ids, cond)`` pair (methods.md §3.5; docs/architecture.md, "Layouts").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from repro.io import InputError

from .layouts import (
    Encoded,
    Layout,
    choose_mask_unit,
    choose_masked_lines,
    choose_masked_tokens,
    split_lines,
)


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


