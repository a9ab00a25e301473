"""``model.ckpt`` loading (:func:`repro.train.checkpoint.load_model`): weights sets, foreign files."""


from __future__ import annotations

import pytest
import torch

from repro.io import InputError
from repro.train import checkpoint
from repro.train import run as train_run


def test_load_model_picks_alternate_weights(fake_method, data_dir, tmp_path, reference):
    out = tmp_path / "alt" / "model.ckpt"
    train_cfg = {"steps": 2, "batch_size": 4, "lr": 0.1, "ema": [0.5, 0.8], "val_batches": 0}
    train_run.train(data_dir, out, {"method": "fake", "model": {"d": 4}, "train": train_cfg})
    ckpt = torch.load(out, weights_only=True)

    def loaded(weights):
        _, model, ck = checkpoint.load_model(out, weights=weights)
        assert not model.training and ck["weights"] == "ema0.8"
        return model.state_dict()

    for name in ("raw", "ema0.5", "ema0.8"):
        sd = loaded(name)
        assert all(torch.equal(sd[k], ckpt["alt_state_dicts"][name][k]) for k in sd), name
    for main in (None, "ema0.8"):
        sd = loaded(main)
        assert all(torch.equal(sd[k], ckpt["state_dict"][k]) for k in sd)
    assert not torch.equal(loaded("raw")["out.weight"], loaded("ema0.5")["out.weight"])
    with pytest.raises(
        InputError,
        match=r"model\.ckpt: no weights 'ema0\.9'; available: \['ema0\.5', 'ema0\.8', 'raw'\]",
    ):
        checkpoint.load_model(out, weights="ema0.9")
    # a single-float EMA run has its main weights only
    ref, _ = reference
    assert checkpoint.load_model(ref, weights="ema")[2]["weights"] == "ema"
    with pytest.raises(
        InputError,
        match=r"no weights 'raw'; available: \['ema'\]; alternate weights .* train\.ema as a list",
    ):
        checkpoint.load_model(ref, weights="raw")


def test_load_model_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.ckpt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(InputError, match="expected format 'repro.ckpt.v1'"):
        checkpoint.load_model(bad)
    with pytest.raises(InputError, match="checkpoint not found"):
        checkpoint.load_model(tmp_path / "missing.ckpt")


# --- progress lines and quiet logs (repro.progress) ----------------------------------------
