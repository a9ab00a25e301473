"""Tests of :mod:`repro.methods.base`: the shared checks every method's sampler and loss_at_t use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from repro.io import InputError
from repro.methods.base import Batch, Method, batch_on, eval_mode


class _Toy(Method):
    name = "toy"
    samplers = ("euler",)


def test_eval_mode_restores_the_training_flag_even_after_an_error():
    model = nn.Dropout(0.5).train()
    with eval_mode(model) as m:
        assert m is model and not model.training
    assert model.training
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        model.train()
        raise RuntimeError
    assert not model.training


def test_check_times():
    ids = torch.zeros(3, 5, dtype=torch.long)
    t = _Toy().check_times([0.0, 0.5, 1.0], ids, torch.float64)
    assert t.dtype == torch.float64 and t.tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(3,\)"):
        _Toy().check_times(torch.zeros(2), ids)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        _Toy().check_times(torch.tensor([0.0, 1.5, 0.0]), ids)


def test_check_generator_and_batch_on():
    _Toy().check_generator(torch.Generator(), torch.device("cpu"))
    on_cuda = SimpleNamespace(device=torch.device("cuda", 0))  # a generator's device, no GPU needed
    with pytest.raises(InputError, match=r"lives on cuda:0 but the model on cpu"):
        _Toy().check_generator(on_cuda, torch.device("cpu"))
    batch = Batch(torch.zeros(2, 4, dtype=torch.int32), torch.ones(2, 4, dtype=torch.int32))
    ids, cond = batch_on(batch, torch.device("cpu"), seq_len=4)
    assert ids.dtype == torch.int64 and cond.dtype == torch.bool
    with pytest.raises(InputError, match="seq_len 3"):
        batch_on(batch, torch.device("cpu"), seq_len=3)
