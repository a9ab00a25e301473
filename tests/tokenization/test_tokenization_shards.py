"""Sharded ``lm``/``stream`` splits: same windows as the in-memory encoding, resumable, bounded."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from tok_samples import WORDS

from repro.io import InputError
from repro.tokenization import encode_split, get_layout, load_tokenized
from repro.tokenization import shards as shards_mod
from repro.tokenization.__main__ import main
from repro.tokenization.shards import shard_path, write_stream_shards

L = 8


def _rows(n: int, seed: int = 0) -> list[dict]:
    words = WORDS.split()
    rng = np.random.default_rng(seed)
    # lengths 0..24 tokens: empty texts and texts longer than a window (L - 1 = 7) included
    return [
        {"id": f"toy/train/{i}", "text": " ".join(rng.choice(words, int(rng.integers(0, 25))))}
        for i in range(n)
    ]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(out, split="train"):
    meta = json.loads((out / "meta.json").read_text())
    return load_tokenized(out, split), meta


def test_cli_sharded_split_reads_as_the_unsharded_one(tmp_path, word_tok):
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 50), ("validation", 3), ("test", 4)):
        _write(data / f"{split}.jsonl", _rows(n, seed=len(split)))
    (tmp_path / "tok.json").write_text(word_tok.to_str())
    base = ["encode", "--data-dir", str(data), "--tokenizer", str(tmp_path / "tok.json"),
            "--layout", "lm", "--seq-len", str(L)]
    assert main([*base, "--options-json", '{"packing": "stream"}', "--out-dir", str(tmp_path / "a")]) == 0
    assert main([*base, "--options-json", '{"packing": "stream", "shard_windows": 9}',
                 "--out-dir", str(tmp_path / "b")]) == 0
    for split in ("train", "validation", "test"):
        (ref, ref_meta), (got, meta) = _read(tmp_path / "a", split), _read(tmp_path / "b", split)
        assert got.ids.shape == ref.ids.shape and len(got.row_ids) == len(ref.row_ids)
        assert np.array_equal(got.ids[:], ref.ids) and np.array_equal(got.cond[:], ref.cond)
        assert got.row_ids[:] == ref.row_ids and got.row_ids[-1] == ref.row_ids[-1]
        assert "row_ids" not in meta["splits"][split]
        assert meta["options"] == {"packing": "stream", "shard_windows": 9}
        assert ref_meta["options"] == {"packing": "stream"}  # unsharded meta.json unchanged
    assert len(meta["splits"]["train"]["shards"]["files"]) > 3
    assert np.load(tmp_path / "b" / "train.ids.npy").shape == (0, L)  # placeholder for the DAG

    # one-array access: unsorted/negative fancy indices, slices across shards, bool masks, tuples
    train, ref = load_tokenized(tmp_path / "b", "train"), load_tokenized(tmp_path / "a", "train")
    n = len(ref.ids)
    idx = np.array([n - 1, 0, 17, 9, 8, 3, -2])
    assert np.array_equal(train.ids[idx], ref.ids[idx])
    assert np.array_equal(train.ids[5:30], ref.ids[5:30]) and np.array_equal(train.ids[::7], ref.ids[::7])
    assert np.array_equal(train.ids[10], ref.ids[10]) and np.array_equal(train.ids[-1], ref.ids[-1])
    assert np.array_equal(train.ids[ref.ids[:, 1] > 20], ref.ids[ref.ids[:, 1] > 20])
    assert np.array_equal(train.ids[3:12, 1:4], ref.ids[3:12, 1:4])
    assert np.array_equal(np.asarray(train.ids, dtype=np.int64), ref.ids.astype(np.int64))
    assert np.array_equal(pickle.loads(pickle.dumps(train.ids))[idx], ref.ids[idx])
    with pytest.raises(IndexError):
        train.ids[n]

    # the training/sampling reader sees the same batches and row ids
    sharded, plain = load_tokenized(tmp_path / "b", "train"), load_tokenized(tmp_path / "a", "train")
    assert len(sharded) == len(plain) and sharded.row_ids[:5] == plain.row_ids[:5]
    for got, want in zip(sharded.batch(np.array([0, 3, 21, n - 1])), plain.batch(np.array([0, 3, 21, n - 1]))):
        assert got.dtype == want.dtype and bool((got == want).all())


@pytest.mark.parametrize("windows,chunk", [(1, 3), (5, 2), (6, 100)])
def test_shards_match_encode_split(tmp_path, word_tok, windows, chunk):
    rows = _rows(40, seed=windows)
    layout = get_layout("lm", L, word_tok, packing="stream", shard_windows=windows)
    ref = encode_split(rows, layout)
    res = write_stream_shards(_write(tmp_path / "t.jsonl", rows), layout, tmp_path, "t",
                              chunk_rows=chunk)
    ids, cond, row_ids = shards_mod.open_shards(tmp_path, "t", {"n": res.n, "shards": res.manifest()}, L)
    assert res.n == len(ref.row_ids) and res.rows == len(rows)
    assert len(res.files) == -(-res.n // windows)
    assert np.array_equal(ids[:], ref.ids) and np.array_equal(cond[:], ref.cond)
    assert row_ids[:] == ref.row_ids


def test_killed_run_resumes_without_redoing_complete_shards(tmp_path, word_tok):
    rows = _rows(40)
    src = _write(tmp_path / "t.jsonl", rows)
    layout = get_layout("lm", L, word_tok, packing="stream", shard_windows=4)
    full = write_stream_shards(src, layout, tmp_path / "ref", "t", chunk_rows=3)

    def kill_after(k):
        def hook(i):
            if i == k:
                raise KeyboardInterrupt

        return hook

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_stream_shards(src, layout, out, "t", chunk_rows=3, on_shard=kill_after(4))
    assert shard_path(out, "t", "shard", 4).is_file() and not shard_path(out, "t", "ids", 5).exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # nothing half-written visible
    done: list[int] = []
    res = write_stream_shards(src, layout, out, "t", chunk_rows=5, on_shard=done.append)
    assert res.reused == 5 and done == list(range(5, len(full.files)))
    assert res.files == full.files and res.n == full.n  # same bytes (sha256) as one clean run

    # a damaged shard is redone from there on; a complete run is kept as is
    shard_path(out, "t", "rows", 2).write_bytes(b"junk")
    done.clear()
    assert write_stream_shards(src, layout, out, "t", on_shard=done.append).files == full.files
    assert done == list(range(2, len(full.files)))
    done.clear()
    assert write_stream_shards(src, layout, out, "t", on_shard=done.append).reused == len(full.files)
    assert done == []
    # another input (new key) starts over and removes the shards it no longer has
    _write(src, rows[:10])
    res = write_stream_shards(src, layout, out, "t")
    assert res.reused == 0 and not shard_path(out, "t", "ids", len(res.files)).exists()


def test_encoder_holds_one_shard_and_one_chunk(tmp_path, word_tok, monkeypatch):
    rows = _rows(60, seed=3)
    chunk, windows = 4, 3
    src = _write(tmp_path / "t.jsonl", rows)
    pulled = [0]
    real = shards_mod.iter_jsonl_at

    def counting(*args, **kwargs):
        for item in real(*args, **kwargs):
            pulled[0] += 1
            yield item

    monkeypatch.setattr(shards_mod, "iter_jsonl_at", counting)
    ahead: list[int] = []

    def on_shard(k):
        nxt = json.loads(shard_path(tmp_path, "t", "shard", k).read_text())["next"]
        ahead.append(pulled[0] - nxt["row"])  # rows read beyond where the next window starts

    layout = get_layout("lm", L, word_tok, packing="stream", shard_windows=windows)
    res = write_stream_shards(src, layout, tmp_path, "t", chunk_rows=chunk, on_shard=on_shard)
    lens = [len(word_tok.encode(r["text"], add_special_tokens=False).ids) + 1 for r in rows]
    most_chunk = max(sum(lens[i : i + chunk]) for i in range(len(lens)))
    assert len(ahead) == len(res.files) > 10
    assert max(ahead) <= chunk  # the input is streamed, not read ahead
    assert res.peak_docs <= chunk + (L - 2)  # the carried tokens belong to at most L - 2 rows
    assert res.peak_tokens <= (L - 2) + most_chunk  # < one window carried + one chunk of tokens


def test_shard_option_checks(word_tok, tmp_path):
    with pytest.raises(InputError, match="shard_windows needs packing 'stream'"):
        get_layout("lm", L, word_tok, shard_windows=4)
    with pytest.raises(InputError, match="shard_windows must be an integer >= 1"):
        get_layout("lm", L, word_tok, packing="stream", shard_windows=0)
    assert get_layout("lm", L, word_tok, packing="stream").stored_options() == {"packing": "stream"}
    src = _write(tmp_path / "t.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "src": "s", "trg": "t"}])
    layout = get_layout("lm", L, word_tok, packing="stream", shard_windows=2)
    with pytest.raises(InputError, match=r"t.jsonl: row 2: a seq2seq row"):
        write_stream_shards(src, layout, tmp_path, "t")
