"""Tests of the train_model stage (:mod:`repro.train.run`, :mod:`repro.train.cli`).

A tiny self-contained method (embedding + linear next-token model whose loss draws random
corruption from the global torch RNG) and a tokenized directory written with numpy stand in for
the real methods and tokenizer, so these tests exercise only the training machinery: checkpoint
format, exact resume (kill and time-budget paths), EMA, config validation, cluster plugins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.io import InputError
from repro.methods.base import Batch
from repro.tokenization.arrays import load_tokenized
from repro.train import checkpoint, cli, config, data
from repro.train import run as train_run

from .toy import (
    SEQ,
    SPECIALS,
    VOCAB,
    FakeMethod,
    csv_rows,
    final_weights,
    run_cfg,
    weight_recorder,
    write_tokenized,
)


def test_train_writes_documented_checkpoint(reference, fake_method):
    out, summary = reference
    assert summary["completed"] and summary["steps"] == 6 and summary["target_steps"] == 6
    assert summary["resumed_from"] == 0
    assert math.isfinite(summary["train_loss"]) and math.isfinite(summary["val_loss"])
    assert summary["world_size"] == 1 and summary["parameters"] > 0
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {
        "format",
        "method",
        "model",
        "train",
        "vocab_size",
        "seq_len",
        "layout",
        "state_dict",
        "weights",
        "step",
        "val_loss",
        "specials",
        "tokenizer_sha256",
    }
    assert ckpt["format"] == "repro.ckpt.v1" and ckpt["method"] == "fake"
    assert ckpt["weights"] == "ema" and ckpt["step"] == 6 and ckpt["layout"] == "conditional"
    assert (ckpt["vocab_size"], ckpt["seq_len"]) == (VOCAB, SEQ)
    assert ckpt["specials"] == SPECIALS
    # specials are injected into the model cfg; defaults filled into the train cfg
    injected = {k: ckpt["model"][f"{k}_id"] for k in ("pad", "bos", "eos", "sep", "mask")}
    assert injected == {k: SPECIALS[k] for k in injected}
    assert ckpt["train"]["schedule"] == "cosine" and ckpt["train"]["betas"] == [0.9, 0.95]
    assert ckpt["val_loss"] == summary["val_loss"]
    method, model, loaded = checkpoint.load_model(out)
    assert isinstance(method, FakeMethod) and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    # Lightning state for resume, CSV logs, config stamp
    work = out.parent / "_work"
    assert (work / "last.ckpt").exists() and (work / "config.json").exists()
    assert list(work.glob("logs/*/metrics.csv"))


def make_killer(step: int):
    import lightning.pytorch as pl

    class Killer(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == step:
                raise RuntimeError("simulated job kill")

    return Killer()


def test_resume_after_kill_is_exact(reference, data_dir, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed" / "model.ckpt"
    # killed at step 5: the last checkpoint (ckpt_every=2) is step 4, so step 5 is replayed
    with pytest.raises(RuntimeError, match="simulated job kill"):
        train_run.train(data_dir, out, run_cfg(), callbacks=[make_killer(5)])
    assert not out.exists()
    assert torch.load(out.parent / "_work" / "last.ckpt", weights_only=False)["global_step"] == 4
    summary = train_run.train(data_dir, out, run_cfg())
    assert summary["completed"] and summary["steps"] == 6 and summary["resumed_from"] == 4
    a, b = final_weights(ref), final_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished _work/ (model.ckpt deleted, e.g. by Snakemake) rewrites it without training
    out.unlink()
    again = train_run.train(data_dir, out, run_cfg())
    assert again["resumed_from"] == again["steps"] == 6
    assert again["val_loss"] == summary["val_loss"]
    c = final_weights(out)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_resume_after_kill_keeps_every_ema(fake_method, data_dir, tmp_path):
    cfg = run_cfg(ema=[0.5, 0.8])
    ref = tmp_path / "ref2" / "model.ckpt"
    train_run.train(data_dir, ref, cfg)
    out = tmp_path / "killed2" / "model.ckpt"
    with pytest.raises(RuntimeError, match="simulated job kill"):
        train_run.train(data_dir, out, cfg, callbacks=[make_killer(5)])
    last = torch.load(out.parent / "_work" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4
    assert last["repro"]["ema"] is None and set(last["repro"]["emas"]) == {"0.5", "0.8"}
    summary = train_run.train(data_dir, out, cfg)
    assert summary["completed"] and summary["resumed_from"] == 4
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    assert a["weights"] == b["weights"] == "ema0.8" and a["val_loss"] == b["val_loss"]
    assert list(a["alt_state_dicts"]) == list(b["alt_state_dicts"]) == ["raw", "ema0.5", "ema0.8"]
    for key, sd in a["alt_state_dicts"].items():
        other = b["alt_state_dicts"][key]
        assert sd.keys() == other.keys() and all(torch.equal(sd[k], other[k]) for k in sd), key
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_time_budget_exit_75_then_resume_is_exact(
    reference, data_dir, tmp_path, monkeypatch, caplog
):
    ref, _ = reference
    out = tmp_path / "budget" / "model.ckpt"
    args = f"--data {data_dir} --out {out} --threads 1 --max-minutes 30".split()
    args += ["--config-json", json.dumps(run_cfg())]
    with monkeypatch.context() as mp, caplog.at_level("WARNING", logger="repro.train"):
        mp.setattr(train_run, "time_budget_seconds", lambda minutes: 0.0)
        assert cli.main(args) == 75
    assert "rerun the same command to continue" in caplog.text
    assert not out.exists()
    last = torch.load(out.parent / "_work" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 1  # stopped on the first optimizer-step boundary
    with caplog.at_level("INFO", logger="repro.train"):
        assert cli.main(args) == 0
    assert "steps=6/6 (from 1)" in caplog.text
    a, b = final_weights(ref), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def make_signaller(step: int, signum: int):
    import lightning.pytorch as pl

    class Signaller(pl.Callback):
        """Send ``signum`` once, at the end of optimizer step ``step``, to this process and its
        DataLoader workers (as SLURM and the warm worker signal the whole process group)."""

        sent = False

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == step and not self.sent:
                self.sent = True
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signum)
                os.kill(os.getpid(), signum)

    return Signaller()


@pytest.fixture
def signal_net():
    """Recording handlers for SIGTERM / SIGUSR1 during the test (had training not handled a
    signal, pytest would die of it); the original handlers are restored afterwards."""
    seen: list[int] = []

    def fallback(sig, frame):
        seen.append(sig)

    old = {sig: signal.signal(sig, fallback) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    yield seen, fallback
    for sig, handler in old.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGTERM, 1), (signal.SIGUSR1, 0)])
def test_stop_signal_saves_exits_75_then_resume_is_exact(
    reference, data_dir, tmp_path, monkeypatch, caplog, signal_net, signum, workers
):
    """scancel / preemption (SIGTERM) or SLURM's warning signal (SIGUSR1): like the time budget,
    save last.ckpt on the next optimizer step and exit 75 (Lightning alone exits 0, no save)."""
    ref, _ = reference
    out = tmp_path / "signalled" / "model.ckpt"
    args = f"--data {data_dir} --out {out} --threads 1".split()
    args += ["--config-json", json.dumps(run_cfg(num_workers=workers))]
    seen, fallback = signal_net
    real_train = train_run.train

    def train_with_signal(*a, **kw):
        return real_train(*a, **kw, callbacks=[make_signaller(2, signum)])

    with monkeypatch.context() as mp, caplog.at_level("WARNING", logger="repro.train"):
        mp.setattr(cli, "train", train_with_signal)
        assert cli.main(args) == 75
    assert seen == []
    assert signal.getsignal(signum) is fallback  # the previous handlers are back
    name = signal.Signals(signum).name
    assert f"stopped at step 3 of 6 ({name})" in caplog.text
    assert not out.exists()
    # step 3 is not a ckpt_every=2 multiple: saved by the stop itself, on the optimizer step after
    # the signal
    last = torch.load(out.parent / "_work" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3
    with caplog.at_level("INFO", logger="repro.train"):
        assert cli.main(args) == 0
    assert "steps=6/6 (from 3)" in caplog.text
    a, b = final_weights(ref), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


class Killed(BaseException):
    """A kill -9 in the middle of a checkpoint write, as far as the process can tell."""


def test_periodic_last_ckpt_is_atomic_and_kept_until_the_new_one_is_complete(
    reference, data_dir, tmp_path, monkeypatch
):
    ref, _ = reference
    out = tmp_path / "torn" / "model.ckpt"
    real_save = torch.save
    written = []

    def dies_mid_write(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("global_step") == 4:  # the second periodic save
            written.append(Path(f.name))
            real_save(obj, f, *a, **kw)
            f.truncate(f.tell() // 2)
            raise Killed
        return real_save(obj, f, *a, **kw)

    old_umask = os.umask(0o002)
    try:
        with monkeypatch.context() as mp, pytest.raises(Killed):
            mp.setattr(torch, "save", dies_mid_write)
            train_run.train(data_dir, out, run_cfg())
    finally:
        os.umask(old_umask)
    work = out.parent / "_work"
    (tmp,) = written  # the new one was written beside it, under a temporary name
    assert tmp.parent == work and tmp.name.startswith(".last.ckpt.") and tmp.name.endswith(".tmp")
    last = torch.load(work / "last.ckpt", weights_only=False)  # whole, the previous one
    assert last["global_step"] == 2
    assert stat.S_IMODE((work / "last.ckpt").stat().st_mode) == 0o664  # not a 0600 temporary
    assert not list(work.glob(".*.tmp"))
    summary = train_run.train(data_dir, out, run_cfg())
    assert summary["completed"] and summary["resumed_from"] == 2
    a, b = final_weights(ref), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_ckpt_is_byte_reproducible(reference, data_dir, tmp_path):
    """Identical training gives an identical model.ckpt: users compare checkpoints by sha256."""
    ref, _ = reference
    again = tmp_path / "elsewhere" / "model.ckpt"
    train_run.train(data_dir, again, run_cfg())

    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert sha(again) == sha(ref)


def test_changed_config_discards_stale_resume_state(fake_method, data_dir, tmp_path, monkeypatch):
    out = tmp_path / "stale" / "model.ckpt"
    monkeypatch.setattr(train_run, "time_budget_seconds", lambda minutes: 0.0)
    assert not train_run.train(data_dir, out, run_cfg(), max_minutes=1)["completed"]
    monkeypatch.setattr(train_run, "time_budget_seconds", lambda minutes: 1e9)
    fresh = tmp_path / "fresh" / "model.ckpt"
    # val_every=4 does not divide steps=6: the final val loss comes from an extra validation
    new_cfg = run_cfg(lr=1.0e-2, val_every=4)
    train_run.train(data_dir, fresh, new_cfg, max_minutes=1)
    summary = train_run.train(data_dir, out, new_cfg, max_minutes=1)  # must not resume the old run
    a, b = final_weights(fresh), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(out, weights_only=True)["val_loss"] == summary["val_loss"]
    (metrics,) = (fresh.parent / "_work").glob("logs/*/metrics.csv")
    val = [float(r["val_loss"]) for r in csv_rows(metrics) if r["val_loss"]]
    assert len(val) == 2 and val[-1] == pytest.approx(summary["val_loss"])  # steps 4 and 6


def test_ema_matches_closed_form(fake_method, data_dir, tmp_path):

    decay = 0.5
    history: list[dict[str, torch.Tensor]] = []

    cfg = {
        "method": "fake",
        "model": {"d": 4},
        "train": {"steps": 3, "batch_size": 4, "lr": 0.1, "ema": decay, "val_batches": 0},
    }
    out = tmp_path / "ema" / "model.ckpt"
    train_run.train(data_dir, out, cfg, callbacks=[weight_recorder(history)])
    assert len(history) == 4  # initial weights + one per optimizer step
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["weights"] == "ema" and ckpt["val_loss"] is None
    for name in history[0]:
        expected = history[0][name].double()
        for w in history[1:]:
            expected = decay * expected + (1 - decay) * w[name].double()
        assert torch.allclose(ckpt["state_dict"][name].double(), expected, atol=1e-6), name
        assert not torch.allclose(history[-1][name], ckpt["state_dict"][name])  # EMA != raw

    # validating the EMA weights after every step swaps them in and out: training is unchanged
    validated = tmp_path / "ema_val" / "model.ckpt"
    with_val = {**cfg, "train": {**cfg["train"], "val_batches": 1, "val_every": 1}}
    assert train_run.train(data_dir, validated, with_val)["val_loss"] is not None
    a, b = final_weights(out), final_weights(validated)
    assert all(torch.equal(a[k], b[k]) for k in a)

    cfg["train"]["ema"] = 0.0
    history.clear()
    out_raw = tmp_path / "raw" / "model.ckpt"
    train_run.train(data_dir, out_raw, cfg, callbacks=[weight_recorder(history)])
    raw = torch.load(out_raw, weights_only=True)
    assert raw["weights"] == "raw"
    for name, w in history[-1].items():
        assert torch.equal(raw["state_dict"][name], w)


def val_loss_of(model: nn.Module, data_dir: Path, batch_size: int, n_batches: int) -> float:
    """The validation loss as TrainModule computes it (same batches, same per-batch seeds)."""
    ds = data.ValBatches(
        load_tokenized(data_dir, "validation"), batch_size, n_batches, 0, 1
    )
    total = count = 0.0
    with torch.no_grad():
        for k in range(len(ds)):
            ids, cond, _ = ds[k]
            torch.manual_seed(data.derive_seed(0, 1, k, 0))
            loss = float(FakeMethod().loss(model, Batch(ids, cond)))
            total, count = total + loss * ids.shape[0], count + ids.shape[0]
    return total / count


def test_several_emas_match_closed_form(fake_method, data_dir, tmp_path):
    """FM-seq2seq: EMAs 0.999 and 0.9999 side by side, from step 0; here 0.5 and 0.8."""

    history: list[dict[str, torch.Tensor]] = []

    train_cfg = {"steps": 3, "batch_size": 4, "lr": 0.1, "ema": [0.5, 0.8], "val_batches": 2}
    cfg = {"method": "fake", "model": {"d": 4}, "train": train_cfg}
    out = tmp_path / "two" / "model.ckpt"
    summary = train_run.train(data_dir, out, cfg, callbacks=[weight_recorder(history)])
    assert len(history) == 4  # initial weights + one per optimizer step
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["weights"] == "ema0.8" and ckpt["train"]["ema"] == [0.5, 0.8]
    assert ckpt["train"]["ema_eval"] == 0.8
    alt = ckpt["alt_state_dicts"]
    assert list(alt) == ["raw", "ema0.5", "ema0.8"]
    for name in history[0]:
        assert torch.equal(alt["raw"][name], history[-1][name])
        for decay in (0.5, 0.8):
            expected = history[0][name].double()
            for w in history[1:]:
                expected = decay * expected + (1 - decay) * w[name].double()
            got = alt[f"ema{decay}"][name]
            assert got.device.type == "cpu"
            assert torch.allclose(got.double(), expected, atol=1e-6), (decay, name)
        assert not torch.allclose(alt["ema0.5"][name], alt["ema0.8"][name])
        assert not torch.allclose(alt["raw"][name], alt["ema0.8"][name])
    sd = ckpt["state_dict"]
    assert sd.keys() == alt["ema0.8"].keys() and all(
        torch.equal(sd[k], alt["ema0.8"][k]) for k in sd
    )
    # the main state_dict shares storage with its alternate: stored once in the file
    assert all(
        sd[k].untyped_storage().data_ptr() == alt["ema0.8"][k].untyped_storage().data_ptr()
        for k in sd
    )
    # the validation loss is that of the ema_eval weights
    _, model, _ = checkpoint.load_model(out)
    assert summary["val_loss"] == pytest.approx(val_loss_of(model, data_dir, 4, 2), rel=1e-5)

    # ema_eval picks the validated / main weights; the trajectory and every EMA are unchanged
    other = tmp_path / "two_eval" / "model.ckpt"
    cfg["train"] = {**train_cfg, "ema_eval": 0.5}
    summary2 = train_run.train(data_dir, other, cfg)
    ck2 = torch.load(other, weights_only=True)
    assert ck2["weights"] == "ema0.5"
    for key in alt:
        assert all(torch.equal(alt[key][k], ck2["alt_state_dicts"][key][k]) for k in sd)
    assert all(torch.equal(ck2["state_dict"][k], alt["ema0.5"][k]) for k in sd)
    _, model, _ = checkpoint.load_model(other)
    assert summary2["val_loss"] == pytest.approx(val_loss_of(model, data_dir, 4, 2), rel=1e-5)
    assert summary2["val_loss"] != pytest.approx(summary["val_loss"], rel=1e-6)

    # the alternates equal separate runs: ema 0 (raw) and a single float ema 0.5
    for ema, key in ((0.0, "raw"), (0.5, "ema0.5")):
        sep = tmp_path / f"sep{ema}" / "model.ckpt"
        cfg["train"] = {**train_cfg, "ema": ema}
        train_run.train(data_dir, sep, cfg)
        w = final_weights(sep)
        assert all(torch.equal(w[k], alt[key][k]) for k in w), key
        assert "alt_state_dicts" not in torch.load(sep, weights_only=True)


def test_new_train_keys_at_defaults_keep_the_resume_identity():
    """A config without the new keys keeps the _work/config.json identity it had before them."""
    meta = {"layout": "conditional", "seq_len": SEQ, "vocab_size": VOCAB, "splits": {}}
    old_keys = {
        "steps", "seed", "batch_size", "lr", "min_lr_ratio", "schedule", "warmup_steps",
        "weight_decay", "betas", "eps", "grad_clip", "ema", "precision", "accumulate",
    }  # fmt: skip

    def identity(**train_cfg):
        run = config.RunConfig.from_dict({"method": "ar", "train": {"steps": 4, **train_cfg}})
        return train_run.run_identity(run, {}, meta, 1)["train"]

    assert set(identity()) == old_keys
    assert set(identity(ema=0.9, ema_eval=0.9)) == old_keys
    listed = identity(ema=[0.9, 0.99])
    assert set(listed) == old_keys and listed["ema"] == [0.9, 0.99]
    assert identity(ema=[0.9, 0.99], ema_eval=0.9)["ema_eval"] == 0.9
    expo = identity(schedule="exponential", decay_rate=0.5, decay_steps=3, warmup_init_lr=0.0)
    assert set(expo) == old_keys | {"decay_rate", "decay_steps"}


def test_specials_conflict_is_reported():
    with pytest.raises(InputError, match="model.pad_id=1 contradicts the tokenizer"):
        train_run.inject_specials({"pad_id": 1}, SPECIALS, "meta.json")
    assert train_run.inject_specials({}, SPECIALS, "m")["mask_id"] == 4


def test_exponential_schedule_drives_the_optimizer(fake_method, data_dir, tmp_path):
    import lightning.pytorch as pl

    seen: list[tuple[int, float]] = []

    class RecordLR(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))

    train_cfg = {
        "steps": 7,
        "batch_size": 4,
        "lr": 1.0e-2,
        "schedule": "exponential",
        "warmup_steps": 2,
        "warmup_init_lr": 1.0e-3,
        "decay_begin": 1,
        "decay_rate": 0.5,
        "decay_steps": 2,
        "val_batches": 0,
    }
    cfg = {"method": "fake", "model": {"d": 4}, "train": train_cfg}
    train_run.train(data_dir, tmp_path / "exp" / "model.ckpt", cfg, callbacks=[RecordLR()])
    expected = [1.0e-3, 5.5e-3, 1.0e-2, 1.0e-2, 1.0e-2 * 0.5**0.5, 5.0e-3, 1.0e-2 * 0.5**1.5]
    assert [s for s, _ in seen] == list(range(7))
    assert [lr for _, lr in seen] == pytest.approx(expected, rel=1e-12)


def test_missing_data_is_reported(fake_method, tmp_path):
    with pytest.raises(InputError, match=r"meta\.json: file not found"):
        train_run.train(tmp_path / "nope", tmp_path / "m.ckpt", run_cfg())
    d = write_tokenized(tmp_path / "tok")
    (d / "validation.cond.npy").unlink()
    with pytest.raises(
        InputError, match=r"validation\.cond\.npy: file not found; run the tokenize"
    ):
        train_run.train(d, tmp_path / "m.ckpt", run_cfg())


def test_training_logs_progress_lines_and_no_tips(fake_method, data_dir, tmp_path, caplog, capfd):
    with caplog.at_level(logging.INFO, logger="repro.train"):
        summary = train_run.train(data_dir, tmp_path / "m" / "model.ckpt", run_cfg(),
                              progress_every_s=0.0, progress_bar=False)
    assert summary["completed"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    # one line per optimizer step (accumulate 2: never twice for one step), the last at 6/6
    steps = [int(re.search(r"step (\d+)/6 ", line).group(1)) for line in lines]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert re.search(r"loss=\d+\.\d{4} tokens/s=[\d,]+ elapsed \d+:\d\d:\d\d eta", lines[0])
    err = capfd.readouterr().err
    assert "Tip:" not in err and "deprecated" not in err


def test_a_missing_logger_package_fails_before_training(fake_method, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_run.progress.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(train_run.progress.LoggerUnavailable, match="tensorboard"):
        train_run.train(data_dir, tmp_path / "m" / "model.ckpt", run_cfg(), loggers=["tensorboard"])
    assert not (tmp_path / "m" / "_work").exists()
