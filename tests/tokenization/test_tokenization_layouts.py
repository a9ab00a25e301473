"""Layouts (repro.tokenization.layouts, seq2seq_layouts): exact ids/cond on hand-built rows, decoding,
option and row errors, real samples."""

from __future__ import annotations

import numpy as np
import pytest
from tok_samples import (
    BOS,
    CLS,
    EOS,
    MASK,
    PAD,
    SEP,
    code_row,
    s2s,
    shared_data_dir,
)

from repro.io import InputError, read_jsonl
from repro.tokenization import (
    LAYOUTS,
    encode_split,
    get_layout,
    train_tokenizer,
)

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
