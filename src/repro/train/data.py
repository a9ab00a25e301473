"""Training data: which rows each micro-batch reads, on every rank, resumably.

The index stream of a run is the concatenation of per-epoch permutations of ``range(N)`` (N rows
of the train split), permutation ``e`` drawn from ``numpy.random.default_rng([seed, e])``; global
micro-batch ``m`` is its slice ``[m * B * W, (m + 1) * B * W)`` (``B`` rows per rank, ``W`` ranks)
and rank ``r`` reads rows ``[r * B, (r + 1) * B)`` of it, sorted. A pure function of ``(seed, m)``:
a resumed run reads exactly the batches an uninterrupted one would (no sampler state to save).
Validation reads a fixed set of batches, the first rows of the split. The arrays are those of
:func:`repro.tokenization.arrays.load_tokenized`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from repro.tokenization.arrays import TokenizedSplit


def batch_rows(seed: int, m: int, n: int, size: int, _cache: dict | None = None) -> np.ndarray:
    """Row indices of global micro-batch ``m`` (``size`` rows, over all ranks).

    The index stream is the concatenation of per-epoch permutations of ``range(n)``, permutation
    ``e`` drawn from ``numpy.random.default_rng([seed, e])``; micro-batch ``m`` is the slice
    ``[m * size, (m + 1) * size)`` of that stream. A pure function of ``(seed, m)``.
    """
    start = m * size
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        epoch, offset = divmod(start + filled, n)
        perm = None if _cache is None else _cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([seed, epoch]).permutation(n)
            if _cache is not None:
                _cache.clear()
                _cache[epoch] = perm
        take = min(size - filled, n - offset)
        out[filled : filled + take] = perm[offset : offset + take]
        filled += take
    return out


class TrainStream(torch.utils.data.IterableDataset):
    """Endless micro-batches ``(ids, cond, m)`` for one rank, starting at micro-batch ``start``."""

    def __init__(
        self, arrays: TokenizedSplit, seed: int, batch_size: int, rank: int, world: int, start: int
    ) -> None:
        super().__init__()
        self.arrays, self.seed, self.batch_size = arrays, seed, batch_size
        self.rank, self.world, self.start = rank, world, start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        wid, nworkers = (0, 1) if info is None else (info.id, info.num_workers)
        cache: dict = {}
        size = self.batch_size * self.world
        m = self.start + wid  # DataLoader interleaves workers round-robin, so order is preserved
        while True:
            rows = batch_rows(self.seed, m, len(self.arrays), size, cache)
            mine = np.sort(rows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size])
            ids, cond = self.arrays.batch(mine)  # sorted rows: sequential memmap reads
            yield ids, cond, m
            m += nworkers


class ValBatches(torch.utils.data.Dataset):
    """A fixed set of validation batches (the first rows of the split), sharded over ranks."""

    def __init__(
        self, arrays: TokenizedSplit, batch_size: int, n_batches: int, rank: int, world: int
    ) -> None:
        self.arrays, self.batch_size, self.rank, self.world = arrays, batch_size, rank, world
        per_batch = batch_size * world
        self.n = min(n_batches, max(len(arrays) // per_batch, 1))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        n = len(self.arrays)
        lo = (k * self.world + self.rank) * self.batch_size
        rows = np.arange(lo, lo + self.batch_size) % n  # wraps only for splits smaller than a batch
        ids, cond = self.arrays.batch(rows)
        return ids, cond, k


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SeedSequence: well spread, stable across versions)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])

