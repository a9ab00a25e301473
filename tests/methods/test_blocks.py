"""Tests of repro.methods.blocks: the block cover of the free positions."""

import torch

from repro.methods.blocks import position_blocks


def test_position_blocks_cover_the_free_positions_in_order():
    free = torch.tensor([1, 2, 3, 4, 5, 7, 8, 10, *range(20, 30)])
    blocks = position_blocks(free, 4)
    # runs 1–5, 7–8, 10, 20–29 cut at 4; the short pieces 5 | 7 8 | 10 merged (not contiguous)
    assert blocks == [(0, 4, 1), (4, 8, None), (8, 12, 20), (12, 16, 24), (16, 18, 28)]
    for rows in (1, 3, 7, 100):
        got = position_blocks(free, rows)
        assert [lo for lo, _, _ in got] == [0] + [hi for _, hi, _ in got[:-1]]
        assert got[-1][1] == len(free) and all(0 < hi - lo <= rows for lo, hi, _ in got)
        for lo, hi, start in got:
            span = free[lo:hi]
            contiguous = bool((span == torch.arange(span[0], span[0] + len(span))).all())
            assert start == (int(span[0]) if contiguous else None)
