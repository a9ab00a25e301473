"""export_embeddings: a DiffuSeq checkpoint's word embeddings -> the .npy FM-seq2seq freezes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repro.export_embeddings import export_embeddings, main
from repro.io import InputError
from repro.methods import get_method
from repro.train.checkpoint import CKPT_FORMAT

V, L, D = 30, 12, 8


def _ckpt(tmp_path, method: str, model_cfg: dict):
    m = get_method(method)
    model = m.build_model(dict(model_cfg), vocab_size=V, seq_len=L)
    path = tmp_path / f"{method}.ckpt"
    torch.save({"format": CKPT_FORMAT, "method": method, "model": model_cfg, "train": {"steps": 1},
                "vocab_size": V, "seq_len": L, "layout": m.layout("seq2seq"),
                "state_dict": model.state_dict(), "weights": "ema", "step": 7, "val_loss": None,
                "specials": {"pad": 0}, "tokenizer_sha256": "b" * 64}, path)
    return path, model


def test_diffuseq_embeddings_round_trip_into_embedding_fm(tmp_path):
    ckpt, model = _ckpt(tmp_path, "diffuseq", {
        "d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": D, "diffusion_steps": 10,
        "pad_id": 0})
    out = tmp_path / "emb" / "embeddings.npy"
    assert main(["--ckpt", str(ckpt), "--out", str(out)]) == 0
    matrix = np.load(out)
    assert matrix.dtype == np.float32 and matrix.shape == (V, D)
    np.testing.assert_array_equal(matrix, model.word_emb.weight.detach().numpy())
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["method"] == "diffuseq" and info["shape"] == [V, D] and info["step"] == 7
    # FM-seq2seq loads it frozen, as its `embeddings` path
    fm = get_method("embedding_fm").build_model(
        {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": D, "embeddings": str(out)},
        vocab_size=V, seq_len=L)
    torch.testing.assert_close(fm.embedding, torch.from_numpy(matrix))
    assert not any(p is fm.embedding for p in fm.parameters())  # frozen: a buffer
    fm_trained = get_method("embedding_fm").build_model(
        {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": D, "embeddings": str(out),
         "embeddings_trainable": True}, vocab_size=V, seq_len=L)
    assert any(p is fm_trained.embedding for p in fm_trained.parameters())
    torch.testing.assert_close(fm_trained.embedding.detach(), torch.from_numpy(matrix))


def test_methods_without_embeddings_and_bad_outputs_are_refused(tmp_path, caplog):
    ckpt, _ = _ckpt(tmp_path, "ar", {"d_model": 16, "n_layers": 1, "n_heads": 2, "pad_id": 0,
                                     "eos_id": 1})
    with pytest.raises(InputError, match="method 'ar' has no word-embedding matrix"):
        export_embeddings(ckpt, tmp_path / "x.npy")
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "y.npy")]) == 2
    assert "checkpoint not found" in caplog.text
    with pytest.raises(InputError, match=r"\.npy file"):
        export_embeddings(ckpt, tmp_path / "x.txt")
    assert not (tmp_path / "x.npy").exists()
