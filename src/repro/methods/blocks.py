"""Block-wise work on the V-wide state of a simplex sampler (KL-flow's).

A sampler state holds one V-wide row per position, flattened to (B·L, V). Only the free (generated)
positions change; their flat indices ``free`` (n_free,) are cut into :class:`Block` s of at most
``rows`` entries (:func:`position_blocks`), so every V-wide temporary is at most (rows, V). A block
of consecutive positions works on views of the flat tensors; a block of scattered positions gathers
its rows and computes in a shared :class:`Scratch` buffer before scattering them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def position_blocks(free: torch.Tensor, rows: int) -> list[tuple[int, int, int | None]]:
    """Blocks ``(lo, hi, start)`` of at most ``rows`` entries of the free-position list ``free``.

    Each maximal run of consecutive positions is cut into pieces of at most ``rows``; consecutive
    pieces are merged while the block stays within ``rows`` (short runs, e.g. infilled lines).
    ``start`` is the flat position of ``free[lo]`` when the block is one contiguous range of
    positions (its rows are then views: no gather, no scatter), else None. Blocks cover ``free``
    in order, so the generator's draws come in position order whatever ``rows`` is.
    """
    pos = free.tolist()
    breaks = [i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1]
    pieces = []
    for lo, hi in zip([0, *breaks], [*breaks, len(pos)]):  # runs
        pieces += [(a, min(a + rows, hi)) for a in range(lo, hi, rows)]
    blocks = [list(pieces[0])]
    for lo, hi in pieces[1:]:
        if hi - blocks[-1][0] <= rows:
            blocks[-1][1] = hi
        else:
            blocks.append([lo, hi])
    return [
        (lo, hi, pos[lo] if pos[hi - 1] - pos[lo] == hi - lo - 1 else None) for lo, hi in blocks
    ]


class Scratch:
    """One (rows, V) fp32 buffer for the blocks that are not contiguous, allocated on first use."""

    def __init__(self, rows: int, vocab: int, device: torch.device) -> None:
        self.shape, self.device, self.buf = (rows, vocab), device, None

    def get(self, n: int) -> torch.Tensor:
        if self.buf is None:
            self.buf = torch.empty(self.shape, device=self.device)
        return self.buf[:n]


@dataclass
class Block:
    """Entries ``lo:hi`` of the free-position list; ``start``: their first flat position when
    they are contiguous (then rows are views of the flat (B·L, V) tensors), else None."""

    lo: int
    hi: int
    start: int | None
    free: torch.Tensor  # (n_free,) flat positions

    def rows(self, flat: torch.Tensor) -> torch.Tensor:
        """(hi − lo, V) rows of a flat (B·L, V) tensor at this block's positions."""
        if self.start is not None:
            return flat[self.start : self.start + self.hi - self.lo]
        return flat.index_select(0, self.free[self.lo : self.hi])

    def target(self, x: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """Where to compute this block's new x rows in place: x itself when contiguous."""
        return self.rows(x) if self.start is not None else scratch.get(self.hi - self.lo)

    def write(self, x: torch.Tensor, value: torch.Tensor) -> None:
        """x[positions] = value (nothing to do when ``value`` is already x's own rows)."""
        if self.start is None:
            x.index_copy_(0, self.free[self.lo : self.hi], value)
        elif value.data_ptr() != x[self.start].data_ptr():
            x[self.start : self.start + self.hi - self.lo].copy_(value)
