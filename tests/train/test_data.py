"""Which rows each micro-batch reads (:mod:`repro.train.data`): a pure function of (seed, step)."""


from __future__ import annotations

import numpy as np
import torch

from repro.tokenization.arrays import load_tokenized
from repro.train import data


def test_train_stream_order_with_workers(data_dir):
    arrays = load_tokenized(data_dir, "train")
    stream = data.TrainStream(arrays, seed=1, batch_size=4, rank=0, world=1, start=3)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    got = []
    for ids, _cond, m in loader:
        got.append((m, ids))
        if len(got) == 6:
            break
    assert [m for m, _ in got] == [3, 4, 5, 6, 7, 8]  # workers interleave in micro-batch order
    for m, ids in got:
        rows = np.sort(data.batch_rows(1, m, len(arrays), 4))
        assert torch.equal(ids, torch.from_numpy(np.asarray(arrays.ids[rows], dtype=np.int64)))


def test_batch_rows_are_a_pure_function_of_seed_and_step():
    n, size = 10, 4
    stream = np.concatenate([data.batch_rows(3, m, n, size, {}) for m in range(5)])
    # each epoch of the stream is a permutation of the rows
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    for m in range(5):  # computed alone, without the cache, the same rows
        assert np.array_equal(data.batch_rows(3, m, n, size), stream[m * size : (m + 1) * size])
    assert not np.array_equal(data.batch_rows(4, 0, n, size), stream[:size])
    assert len(data.batch_rows(0, 0, 3, 8)) == 8  # batches larger than the split wrap
