"""Stage ``train_model``: train one method on one tokenized layout (``python -m repro.train``).

One module per concern; importing this package imports nothing heavy:

* :mod:`.config` — ``train`` options (:class:`~.config.TrainConfig`), the run's ``--config-json``,
  the lr schedule and the time budget (standard library only);
* :mod:`.data` — which rows each micro-batch reads (a pure function of ``(seed, m)``);
* :mod:`.ema` — exponential moving averages of the weights;
* :mod:`.world` — Lightning's cluster environment and checks of the distributed world;
* :mod:`.signals` — SIGTERM / SIGUSR1 stop a run like its time budget;
* :mod:`.module` — the Lightning data module, training module and time-budget callback (imports
  Lightning);
* :mod:`.checkpoint` — atomic saves, the ``model.ckpt`` format and :func:`~.checkpoint.load_model`,
  the one loader used by sampling, analysis and export;
* :mod:`.run` — :func:`~.run.train`, one run start to finish;
* :mod:`.cli` — the command line (:mod:`.__main__` runs it); :mod:`.logs` — its log lines.
"""
