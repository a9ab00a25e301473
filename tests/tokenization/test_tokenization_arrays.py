"""Tokenized splits on disk (repro.tokenization.arrays): write, read back, and the reader's checks."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from tok_samples import (
    s2s,
)

from repro.io import InputError
from repro.tokenization import (
    encode_split,
    get_layout,
    load_layout_from_meta,
    load_tokenized,
    read_meta,
    train_tokenizer,
    write_tokenized,
)

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
    with pytest.raises(InputError, match="test.cond.npy: file not found"):
        load_tokenized(tmp_path / "tok", "test")
    with pytest.raises(InputError, match="meta.json: file not found"):
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


def _toy_dir(tmp_path, n: int = 3, seq_len: int = 4, **split_over) -> tuple:
    """A tokenized directory written by hand: split ``train`` of ``n`` rows."""
    root = tmp_path / "tok"
    root.mkdir(parents=True)
    np.save(root / "train.ids.npy", np.zeros((n, seq_len), np.int32))
    np.save(root / "train.cond.npy", np.zeros((n, seq_len), np.uint8))
    split = {"n": n, "row_ids": [f"t/{i}" for i in range(n)], **split_over}
    meta = {"layout": "lm", "options": {}, "seq_len": seq_len, "vocab_size": 9, "specials": {},
            "tokenizer_sha256": "0" * 64, "splits": {"train": split}}
    (root / "meta.json").write_text(json.dumps(meta))
    return root, meta


def test_the_reader_checks_meta_and_arrays(tmp_path):
    root, meta = _toy_dir(tmp_path)
    loaded = load_tokenized(root, "train")
    assert len(loaded) == 3 and loaded.row_ids == ["t/0", "t/1", "t/2"]
    ids, cond = loaded.batch(np.array([2, 0]))
    assert ids.dtype == torch.int64 and cond.dtype == torch.bool and tuple(ids.shape) == (2, 4)
    with pytest.raises(InputError, match=r"no split 'dev'.*dev\.ids\.npy: file not found"):
        load_tokenized(root, "dev")
    np.save(root / "train.ids.npy", np.zeros((3, 4), np.int64))
    with pytest.raises(InputError, match=r"train\.ids\.npy: int64 \(3, 4\), expected int32"):
        load_tokenized(root, "train")
    np.save(root / "train.ids.npy", np.zeros((3, 5), np.int32))
    with pytest.raises(InputError, match=r"expected int32 \(3, 4\) per meta.json"):
        load_tokenized(root, "train")
    del meta["vocab_size"]
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="missing key 'vocab_size'"):
        read_meta(root)


def test_the_reader_rejects_empty_splits_and_short_row_ids(tmp_path):
    root, _ = _toy_dir(tmp_path / "a", n=0)
    with pytest.raises(InputError, match="the split is empty"):
        load_tokenized(root, "train")
    root, _ = _toy_dir(tmp_path / "b", row_ids=["t/0"])
    with pytest.raises(InputError, match="row_ids has 1 entries but train.ids.npy has 3 rows"):
        load_tokenized(root, "train")
