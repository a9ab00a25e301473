"""Unit tests of the catalogue (:mod:`repro.workflow.catalogue`): expansion, cross-checks and
per-rule params."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from repro.config_file import load_config_file
from repro.workflow import spec
from repro.workflow.catalogue import Catalogue
from repro.workflow.spec import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke() -> dict:
    return load_config_file(REPO / "config" / "smoke.yaml")


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_config_file(REPO / "config" / "config.yaml")


def test_extends_deep_merges_and_detects_cycles():
    exps = {
        "base": {"method": "ar", "model": {"d_model": 8, "n_layers": 2}, "train": {"lr": 1.0}},
        "child": {"extends": "base", "model": {"n_layers": 4}},
        "grandchild": {"extends": "child", "train": {"lr": 2.0}},
    }
    out = spec.resolve_experiments(exps)
    assert out["child"]["model"] == {"d_model": 8, "n_layers": 4}
    assert out["grandchild"] == {
        "method": "ar", "model": {"d_model": 8, "n_layers": 4}, "train": {"lr": 2.0}
    }
    assert "extends" not in out["child"]
    with pytest.raises(ConfigError, match="cycle"):
        spec.resolve_experiments({"a": {"extends": "b"}, "b": {"extends": "a"}})
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        spec.resolve_experiments({"a": {"extends": "nope"}})


def test_smoke_targets_and_cells(smoke):
    c = Catalogue(smoke)
    assert set(c.targets()) == {
        *(f"results/tables/{t}.csv" for t in smoke["tables"]),
        *(f"results/figures/{f}.png" for f in smoke["figures"]),
    }
    inputs = c.table_inputs("table3")
    assert len(inputs) == 40  # 8 rows x 5 seeds
    assert "results/scores/syn_translation/ar/ancestral/nfe32/seed4.json" in inputs
    assert "results/scores/syn_translation/klflow/hybrid/nfe33/seed4.json" in inputs
    spec = json.loads(c.table_spec("table3"))
    assert [r["label"] for r in spec["rows"]] == [
        f"{d} / {m}" for d in ("Lamini Instruction", "WMT14 De-En")
        for m in ("Autoregressive", "DFM", "KL-flow (hybrid)", "KL-flow (sampling)")]
    assert [r["method"] for r in spec["rows"][:4]] == ["ar", "dfm", "klflow", "klflow"]


def test_an_unknown_method_is_an_error_naming_the_key_and_the_methods(paper):
    cfg = copy.deepcopy(paper)
    cfg["experiments"]["klflow_150m"]["method"] = "klfow"  # a typo: its rows must not vanish
    with pytest.raises(ConfigError) as err:
        Catalogue(cfg)
    assert "experiments.klflow_150m.method: unknown method 'klfow'" in str(err.value)
    assert "['ar', 'dfm', 'diffuseq', 'embedding_fm', 'klflow']" in str(err.value)
    # spelled right, every row of the paper's Table 3 is built
    c = Catalogue(paper)
    full = [r["label"] for r in json.loads(c.table_spec("table3"))["rows"]]
    assert len(full) == 8 and "WMT14 De-En / KL-flow (hybrid)" in full
    assert c.table_inputs("table4")[0].startswith("results/scores/mbpp/ar_150m/ancestral/nfe512/")
    # evaluation-only datasets borrow tokenizer and models
    assert c.source("mbpp") == "python_code" and c.source("qqp") == "qqp"


def test_multi_nfe_rows_expand(paper):
    c = Catalogue(paper)
    spec = json.loads(c.figure_spec("fig_qqp_nfe"))
    series = {s["label"]: [p["nfe"] for p in s["points"]] for s in spec["series"]}
    assert series["FM-seq2seq"] == [1, 2, 4, 8, 16, 32, 64, 100, 200, 500, 1000, 2000]
    assert series["DiffuSeq (gap-DDIM)"][-1] == 2000
    cfg = copy.deepcopy(paper)
    cfg["tables"]["table1"]["rows"][0]["nfe"] = [32, 128]
    rows = json.loads(Catalogue(cfg).table_spec("table1"))["rows"]
    assert [(r["label"], r["nfe"]) for r in rows][:3] == [
        ("Autoregressive", 32), ("Autoregressive", 128), ("DFM", 32)]
    assert len(rows) == 2 + 4 * 3  # AR at 2 NFEs, DFM and 3 KL-flow samplers at 3 NFEs


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["tables"]["table3"]["rows"][0].update(experiment="nope"),
         r"tables.table3.rows\[0\].experiment: unknown experiment 'nope'"),
        (lambda c: c["tables"]["table3"]["rows"][0].update(sampler="euler"),
         "defines no sampler 'euler'"),
        (lambda c: c["tables"]["table3"]["rows"][0].update(dataset="nope"),
         "unknown dataset 'nope'"),
        (lambda c: c["experiments"]["ar"]["samplers"].update(bad={"kind": "euler"}),
         "experiments.ar.samplers.bad.kind: 'euler' is not a sampler of method 'ar'"),
        (lambda c: c["experiments"]["ar"]["model"].update(d_modle=3),
         r"experiments.ar.model: unknown key\(s\) \['d_modle'\]"),
        (lambda c: c["tables"]["table3"]["columns"][0].update(metric="blue"),
         "unknown metric 'blue'"),
        (lambda c: c["datasets"]["syn_code"].update(train_on="syn_stories"),
         "must share kind, seq_len and layouts"),
        (lambda c: c["datasets"]["syn_code"].pop("tokenizer"), "missing 'tokenizer'"),
    ],
)
def test_inconsistent_config_names_the_key(smoke, mutate, message):
    cfg = copy.deepcopy(smoke)
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        Catalogue(cfg)


def test_params_carry_only_their_sub_config(smoke):
    base = Catalogue(smoke)
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["ar"]["samplers"]["ancestral"]["temperature"] = 0.7
    changed = Catalogue(cfg)
    # a sampler option changes the sampler params only, not training
    assert base.train_params("syn_paraphrase", "ar") == changed.train_params("syn_paraphrase", "ar")
    assert base.sampler_params("ar", "ancestral") != changed.sampler_params("ar", "ancestral")
    assert base.sampler_params("ar", "greedy") == changed.sampler_params("ar", "greedy")
    # a training option changes training params, not sampling
    cfg2 = copy.deepcopy(smoke)
    cfg2["experiments"]["ar"]["train"]["lr"] = 1.0e-3
    assert Catalogue(cfg2).train_params("syn_paraphrase", "ar") != base.train_params(
        "syn_paraphrase", "ar")
    assert Catalogue(cfg2).sampler_params("ar", "ancestral") == base.sampler_params("ar", "ancestral")
    # params are canonical JSON: key order in YAML does not matter
    assert spec.canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'


def test_metrics_for_a_cell_are_those_its_tables_read(smoke):
    c = Catalogue(smoke)
    from repro.metrics import METRICS

    m = json.loads(c.metrics_for("syn_translation", "ar", "ancestral", 32))
    wanted = {"bleu_klflow", "rouge_l_klflow", "bertscore_klflow"}
    assert set(m) == {n for n in wanted if smoke["metrics"][n]["kind"] in METRICS}
    assert {"bleu_klflow", "rouge_l_klflow"} <= set(m)
    m = json.loads(c.metrics_for("syn_paraphrase", "ar", "greedy", 8))  # figure only
    assert set(m) == {"bleu", "rouge_l"}
    assert c.metrics_for("syn_paraphrase", "ar", "ancestral", 8) == "{}"


def test_wildcard_patterns_escape_names(paper):
    pat = Catalogue(paper).wildcard_pattern("experiment")
    assert r"ar_1\.5b" in pat.split("|")


def test_paper_values_are_optional_unless_configured(smoke, tmp_path, monkeypatch):
    cfg = copy.deepcopy(smoke)
    cfg["tables"]["mine"] = copy.deepcopy(cfg["tables"]["table3"])
    cfg["tables"]["table1"]["paper_values"] = "elsewhere/t1.csv"
    monkeypatch.chdir(REPO)
    c = Catalogue(cfg)
    assert c.paper_values("tables", "table3") == ["config/paper_values/table3.csv"]
    assert c.paper_values("tables", "mine") == []  # our own table: no paper column
    assert c.paper_values("tables", "table1") == ["elsewhere/t1.csv"]  # configured: must exist


def test_schema_train_keys_are_exactly_what_the_train_stage_accepts(smoke, paper):
    import dataclasses

    from repro.train.config import TrainConfig

    accepted = {f.name for f in dataclasses.fields(TrainConfig)}
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["$defs"]["experiment"]["properties"]["train"]["properties"]) == accepted
    for cfg in (smoke, paper):
        for name, exp in spec.resolve_experiments(cfg["experiments"]).items():
            assert set(exp.get("train", {})) <= accepted, name


@pytest.fixture
def kinds(monkeypatch):
    """Pretend these kinds are implemented: per-file BLEU/BERTScore, group self-BLEU/div-4."""
    per_file = {"sentence_bleu_nltk", "rouge_l_torchmetrics", "bertscore", "dist_1",
                "length_diffuseq", "bleu_klflow", "rouge_l_rouge_score", "gen_ppl",
                "judge_entropy", "unigram_entropy", "code_exec"}
    monkeypatch.setattr(spec, "metric_kinds", lambda: (per_file, {"self_bleu", "div_4"}))


def test_mbr_and_group_draws(smoke, kinds):
    c = Catalogue(smoke)
    base = "results/scores/syn_paraphrase/ar/ancestral/nfe20"
    ar_inputs = {p for p in c.table_inputs("qqp_paraphrase") if p.startswith(base)}
    assert ar_inputs == {f"{base}/mbr3.json", f"{base}/group3.json"}
    row = json.loads(c.table_spec("qqp_paraphrase"))["rows"][2]
    assert row["scores"] == [f"{base}/mbr3.json"] and row["seeds"] is None
    assert row["scores_by_column"] == {"self-BLEU": [f"{base}/group3.json"],
                                       "div-4": [f"{base}/group3.json"]}
    per_mbr = json.loads(c.metrics_for("syn_paraphrase", "ar", "ancestral", 20, "mbr3"))
    assert set(per_mbr) == {"bleu", "rouge_l", "bertscore", "dist_1", "length"}
    group = json.loads(c.metrics_for("syn_paraphrase", "ar", "ancestral", 20, "group3"))
    assert set(group) == {"self_bleu", "div_4"}
    assert c.metrics_for("syn_paraphrase", "ar", "ancestral", 20, "seed0") == "{}"


def test_group_metric_needs_a_group_and_mbr_needs_its_seeds(smoke, kinds):
    cfg = copy.deepcopy(smoke)
    del cfg["tables"]["qqp_paraphrase"]["rows"][2]["group"]
    with pytest.raises(ConfigError, match="column 'self-BLEU' is a group metric.*group: k"):
        Catalogue(cfg)
    cfg = copy.deepcopy(smoke)
    cfg["tables"]["qqp_paraphrase"]["rows"][2]["seeds"] = [0, 1]
    with pytest.raises(ConfigError, match=r"mbr: mbr 3 uses sample seeds 0..2"):
        Catalogue(cfg)


def test_judges_resolve_to_local_directories(smoke, paper, kinds):
    c = Catalogue(smoke)
    m = json.loads(c.metrics_for("syn_stories", "ar", "ancestral", 64, "seed0"))
    assert m["gen_ppl_judge"]["judge"] == "results/judges/smoke_judge"
    assert c.judge_inputs(json.dumps(m)) == ["results/judges/smoke_judge"]
    p = Catalogue(paper)
    assert p.judge_path("gpt2") == "resources/judges/gpt2"
    cfg = copy.deepcopy(smoke)
    cfg["metrics"]["gen_ppl_judge"]["judge"] = "nope"
    with pytest.raises(ConfigError, match="metrics.gen_ppl_judge.judge: unknown judge 'nope'"):
        Catalogue(cfg)


# ------------------------------------------------------------------ issue 4: the QQP deliverables


def test_fm_trains_on_the_exported_diffuseq_embeddings(smoke, paper):
    for cfg, d, fm, src in ((smoke, "syn_paraphrase", "fm", "diffuseq"),
                            (paper, "qqp", "fm_seq2seq", "diffuseq")):
        c = Catalogue(cfg)
        npy = f"results/embeddings/{d}/{src}/embeddings.npy"
        assert c.embedding_source(fm) == src
        assert c.train_extra_inputs(d, fm) == [npy]
        assert json.loads(c.train_params(d, fm))["model"]["embeddings"] == npy
        assert c.train_extra_inputs(d, src) == []  # DiffuSeq itself needs nothing extra
    c = Catalogue(smoke)
    assert c.embedding_source("fm_abl_random32") is None and c.train_extra_inputs(
        "syn_paraphrase", "fm_abl_random32") == []


@pytest.mark.parametrize(
    "embeddings,match",
    [
        ("from:nope", "must name another experiment"),
        ("from:fm", "must name another experiment"),  # itself
        ("from:ar", "has no word embeddings to export"),
        ("from:fm_abl_trainable", "itself takes exported embeddings"),
    ],
)
def test_bad_embedding_sources_name_the_key(smoke, embeddings, match):
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["fm"]["model"]["embeddings"] = embeddings
    if embeddings == "from:fm_abl_trainable":  # it extends fm: make it a plain FM source
        cfg["experiments"]["fm_abl_trainable"] = copy.deepcopy(smoke["experiments"]["fm"])
    with pytest.raises(ConfigError, match=rf"experiments\.fm\.model\.embeddings: .*{match}"):
        Catalogue(cfg)


def test_embedding_width_must_match_the_source(smoke):
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["fm"]["model"]["emb_dim"] = 48
    with pytest.raises(ConfigError, match="emb_dim 48 differs from experiment 'diffuseq'"):
        Catalogue(cfg)


def test_samples_table_reads_samples_files(smoke, paper):
    c = Catalogue(smoke)
    inputs = c.table_inputs("qqp_samples")
    assert "results/samples/syn_paraphrase/fm/euler/nfe1/seed0.jsonl" in inputs
    assert "results/samples/syn_paraphrase/diffuseq/ddpm/nfe200/seed0.jsonl" in inputs
    assert all(p.endswith("/seed0.jsonl") for p in inputs) and len(inputs) == 5
    spec = json.loads(c.table_spec("qqp_samples"))
    assert spec["kind"] == "samples" and spec["examples"] == 2
    assert [(r["label"], r["nfe"]) for r in spec["rows"]][-3:] == [
        ("Flow Matching", 1), ("Flow Matching", 16), ("Flow Matching", 200)]
    # a samples file asks for no score of its own
    assert c.metrics_for("syn_paraphrase", "fm", "euler", 16, "seed0") != "{}"  # also in qqp_nfe
    assert c.metrics_for("syn_paraphrase", "diffuseq", "ddim_respaced", 7, "seed0") == "{}"
    assert len(Catalogue(paper).table_inputs("qqp_samples")) == 5


def test_loss_vs_t_figure_reads_the_analysis_file(smoke):
    c = Catalogue(smoke)
    assert c.figure_inputs("fig8_loss_vs_t") == [
        "results/analysis/syn_paraphrase/fm/loss_vs_t.json"]
    spec = json.loads(c.figure_spec("fig8_loss_vs_t"))
    assert spec["kind"] == "loss_vs_t" and spec["series"][0]["path"].endswith("loss_vs_t.json")
    assert c.figure_cells("fig8_loss_vs_t") == []
    cfg = copy.deepcopy(smoke)
    cfg["figures"]["fig8_loss_vs_t"]["series"][0]["experiment"] = "nope"
    with pytest.raises(ConfigError, match=r"fig8_loss_vs_t\.series\[0\]\.experiment"):
        Catalogue(cfg)


def test_qqp_nfe_table_carries_seconds_per_sample(smoke):
    c = Catalogue(smoke)
    metrics = json.loads(c.metrics_for("syn_paraphrase", "diffuseq", "ddim_gap", 5, "seed0"))
    assert set(metrics) == {"bleu", "rouge_l", "wall_seconds"}
    labels = {r["label"] for r in json.loads(c.table_spec("qqp_nfe"))["rows"]}
    assert labels == {"FM-seq2seq", "DiffuSeq (gap-DDIM)", "DiffuSeq (respaced DDIM)",
                      "DiffuSeq (DDPM)"}


def test_schema_accepts_the_new_kinds_and_rejects_mixed_ones(smoke):
    from snakemake.utils import validate

    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    validate(copy.deepcopy(smoke), schema)
    bleu = [{"label": "BLEU", "metric": "bleu"}]
    cases = [  # (block, entry, key, value or None to delete it, expected message)
        ("tables", "qqp_samples", "columns", bleu, "qqp_samples|columns|should not be valid"),
        ("tables", "qqp_samples", "examples", None, "examples"),
        ("figures", "fig8_loss_vs_t", "metrics", bleu, "metrics|should not be valid"),
        ("figures", "fig_qqp_nfe", "metrics", None, "metrics"),
    ]
    for block, entry, key, value, match in cases:
        bad = copy.deepcopy(smoke)
        if value is None:
            del bad[block][entry][key]
        else:
            bad[block][entry][key] = value
        with pytest.raises(Exception, match=match):
            validate(bad, schema)


def test_sampler_weights_must_be_stored_by_the_run(smoke):
    Catalogue(smoke)  # euler_raw / euler_ema_fast of `fm`, which keeps ema: [0.95, 0.99]
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["fm"]["samplers"]["euler_raw"]["weights"] = "ema0.9"
    with pytest.raises(ConfigError, match=r"fm\.samplers\.euler_raw\.weights: 'ema0.9' is not "
                                          r"stored; choose one of \['raw', 'ema0.95', 'ema0.99'\]"):
        Catalogue(cfg)
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["fm"]["train"]["ema"] = 0.99
    cfg["experiments"]["fm"]["train"].pop("ema_eval")
    with pytest.raises(ConfigError, match="need train.ema as a list"):
        Catalogue(cfg)


def _with_sweep(smoke: dict, **overrides) -> dict:
    cfg = copy.deepcopy(smoke)
    cfg["figures"]["sweep"] = {
        "title": "AR temperature sweep", "kind": "option_sweep", "option": "temperature",
        "values": [0.5, 1.0, 2.0], "x_label": "temperature",
        "metrics": [{"label": "Entropy", "metric": "entropy"}],
        "series": [{"label": "AR", "dataset": "syn_stories", "experiment": "ar",
                    "sampler": "ancestral", "nfe": 80}],
        **overrides,
    }
    return cfg


def test_option_sweep_derives_one_sampler_per_value(smoke):
    from snakemake.utils import validate

    cfg = _with_sweep(smoke)
    validate(copy.deepcopy(cfg), str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    c = Catalogue(cfg)
    samplers = c.experiments["ar"]["samplers"]
    assert samplers["ancestral.temperature0.5"] == {"kind": "ancestral", "temperature": 0.5,
                                                    "top_k": 0}
    assert "ancestral.temperature2.0" in samplers and "ancestral" in samplers
    assert "temperature0.5" not in json.dumps(smoke)  # the loaded config is not mutated
    assert c.figure_inputs("sweep") == [
        f"results/scores/syn_stories/ar/ancestral.temperature{v}/nfe80/seed0.json"
        for v in (0.5, 1.0, 2.0)]
    spec = json.loads(c.figure_spec("sweep"))
    assert spec["option"] == "temperature" and spec["x_label"] == "temperature"
    (series,) = spec["series"]
    assert series["sampler"] == "ancestral"
    assert [p["x"] for p in series["points"]] == [0.5, 1.0, 2.0]
    assert json.loads(c.sampler_params("ar", "ancestral.temperature2.0"))["temperature"] == 2.0
    assert "ancestral\\.temperature0\\.5" in c.wildcard_pattern("sampler")


@pytest.mark.parametrize("overrides, match", [
    ({"values": []}, "needs 'option' and 'values'"),
    ({"series": [{"label": "AR", "dataset": "syn_stories", "experiment": "ar",
                  "sampler": "ancestral", "nfe": [40, 80]}]}, r"sweep\.series\[0\]\.nfe"),
])
def test_option_sweep_errors_name_the_key(smoke, overrides, match):
    with pytest.raises(ConfigError, match=match):
        Catalogue(_with_sweep(smoke, **overrides))


def test_layout_sweep_derives_one_evaluation_dataset_per_value(smoke):
    """KL-flow App. A Fig. 2: models trained once (syn_code_prompted), evaluated on one derived
    evaluation-only dataset per masked proportion p."""
    c = Catalogue(copy.deepcopy(smoke))
    spec = smoke["figures"]["fig_a2_infilling_vs_p"]
    assert spec["sweep"] == "layout" and spec["option"] == "mask_fraction"
    for p in spec["values"]:
        name = f"syn_code_infill_eval.mask_fraction{p}"
        d = c.datasets[name]
        assert d["train_on"] == "syn_code_prompted" and c.source(name) == "syn_code_prompted"
        assert d["layouts"]["infill"]["mask_fraction"] == p
        assert d["layouts"]["infill"]["mask_unit"] == "tokens"
        assert json.loads(c.layout_options(name, "infill"))["mask_fraction"] == p
        assert "mask_fraction" not in smoke["datasets"]["syn_code_infill_eval"]["layouts"]["infill"]
        assert name not in smoke["datasets"]  # the loaded config is not mutated
    inputs = c.figure_inputs("fig_a2_infilling_vs_p")
    assert inputs == [
        f"results/scores/syn_code_infill_eval.mask_fraction{p}/{exp}/{s}/nfe33/seed0.json"
        for exp, s in (("dfm_appA", "mixture_euler"), ("klflow_appA", "hybrid"))
        for p in spec["values"]]
    fig = json.loads(c.figure_spec("fig_a2_infilling_vs_p"))
    assert fig["sweep"] == "layout"
    assert [s["dataset"] for s in fig["series"]] == ["syn_code_infill_eval"] * 2
    assert [p["x"] for p in fig["series"][0]["points"]] == spec["values"]
    assert "syn_code_infill_eval\\.mask_fraction0\\.2" in c.wildcard_pattern("dataset")


def test_evaluation_dataset_may_change_only_the_masking_options(smoke):
    cfg = copy.deepcopy(smoke)
    cfg["datasets"]["syn_code_infill_eval"]["layouts"]["infill"].update(mask_fraction=0.3, seed=4)
    Catalogue(cfg)  # masking options: allowed
    cfg["datasets"]["syn_code_infill_eval"]["layouts"]["infill"]["line_budget"] = 16
    with pytest.raises(ConfigError, match="differs in \\['layouts'\\]"):
        Catalogue(cfg)


@pytest.mark.parametrize("overrides, match", [
    ({"option": "line_budget"}, "cannot be swept on layout 'infill'"),
    ({"sweep": "tokenizer"}, "sweep: 'tokenizer' is not one of"),
])
def test_layout_sweep_errors_name_the_key(smoke, overrides, match):
    cfg = copy.deepcopy(smoke)
    cfg["figures"]["fig_a2_infilling_vs_p"].update(overrides)
    with pytest.raises(ConfigError, match=match):
        Catalogue(cfg)


def test_option_sweep_refuses_to_shadow_a_configured_sampler(smoke):
    cfg = _with_sweep(smoke)
    cfg["experiments"]["ar"]["samplers"]["ancestral.temperature0.5"] = {"kind": "greedy"}
    with pytest.raises(ConfigError, match="already defines sampler 'ancestral.temperature0.5'"):
        Catalogue(cfg)


# --- every check that needs no trained model runs at DAG build, naming the config path ----------


def _set(path: str, value):
    """A mutation of the smoke config: ``a.b[2].c`` set to ``value``."""

    def mutate(cfg):
        keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
        node = cfg
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return mutate


DAG_CHECKS = [
    # sampler options: unknown, mistyped, and per method
    (_set("experiments.ar.samplers.ancestral.temperatur", 0.7),
     "experiments.ar.samplers.ancestral.temperatur: sampler option(s) ['temperatur'] are unknown"),
    (_set("experiments.ar.samplers.ancestral.top_k", "5"),
     "experiments.ar.samplers.ancestral.top_k: sampler option top_k must be an int >= 0, got '5'"),
    (_set("experiments.klflow.samplers.hybrid.t_star", 1.5),
     "experiments.klflow.samplers.hybrid.t_star: sampler option t_star must be a number in [0, 1]"),
    (_set("experiments.dfm.samplers.mixture_euler.jump", "cubic"),
     "experiments.dfm.samplers.mixture_euler.jump: sampler option jump must be one of"),
    (_set("experiments.diffuseq.samplers.ddim_gap.top_p", 0.5),
     "experiments.diffuseq.samplers.ddim_gap.top_p: sampler option top_p only applies to"),
    (_set("experiments.fm.samplers.euler.steps", 5),
     "experiments.fm.samplers.euler.steps: sampler option(s) ['steps'] are unknown"),
    # an NFE the sampler cannot make (DiffuSeq ddpm makes exactly T = 200 calls in the smoke config)
    (_set("tables.qqp_paraphrase.rows[0].nfe", 100),
     "tables.qqp_paraphrase.rows[0].nfe: sampler 'ddpm' makes exactly T = 200 network calls"),
    # gap-DDIM steps every T // nfe: nfe 16 at T = 200 would make 17 calls under the label 16
    (_set("tables.qqp_nfe.rows[1].nfe", [1, 16]),
     "tables.qqp_nfe.rows[1].nfe[1]: sampler 'ddim_gap' steps every T // nfe = 12 of T = 200 "
     "steps, which makes 17 network calls, not nfe = 16"),
    (_set("tables.table4.rows[2].nfe", 144),
     "tables.table4.rows[2].nfe: nfe = 144 gives 143 Euler steps"),
    (_set("tables.table1.rows[1].nfe", [20, 0]), "tables.table1.rows[1].nfe[1]: nfe must be a positive int"),
    # metric options and kinds
    (_set("metrics.bleu.bsae", 2), "metrics.bleu.bsae: metrics config 'bleu': metric kind "
                                   "'sentence_bleu_nltk': unknown option(s) bsae"),
    (_set("metrics.bleu.kind", "sentence_bleu_ntlk"), "metrics.bleu.kind: metrics config 'bleu': "
                                                      "unknown metric kind 'sentence_bleu_ntlk'"),
    # gen_ppl's max_length against the context of a judge the DAG trains (n_positions 128)
    (_set("metrics.gen_ppl_judge.max_length", 200),
     "metrics.gen_ppl_judge.max_length: metric kind 'gen_ppl': max_length 200 exceeds the context "
     "(128) of judge 'smoke_judge'"),
    # judge metrics' options (values too), as gen_ppl / judge_entropy check them before loading
    (_set("metrics.gen_ppl_judge.aggregation", "klflow_pad"),
     "metrics.gen_ppl_judge.aggregation: metric kind 'gen_ppl': option aggregation='klflow_pad' "
     "is not one of"),
    (_set("metrics.gen_ppl_judge.batch_size", 0),
     "metrics.gen_ppl_judge.batch_size: metric kind 'gen_ppl': option batch_size must be a "
     "positive integer, got 0"),
    (_set("metrics.entropy_judge.base", 10),
     "metrics.entropy_judge.base: metric kind 'judge_entropy': option base=10 is not one of"),
    # judge options
    (_set("judges.smoke_judge.train.n_embd", 63),
     "judges.smoke_judge.train: n_embd (63) must be divisible by n_head (2)"),
    (_set("judges.smoke_judge.train.stpes", 30), "judges.smoke_judge.train: unknown key(s) 'stpes'"),
    # layout options
    (_set("datasets.syn_code.layouts.infill.mask_mn", 0.1),
     "datasets.syn_code.layouts.infill.mask_mn: layout 'infill': unknown option(s) ['mask_mn']"),
    (_set("datasets.syn_code.layouts.infill.mask_max", 2),
     "datasets.syn_code.layouts.infill: layout 'infill': option mask_max must be a number in [0, 1]"),
    (_set("datasets.syn_stories.layouts", {"lm": {"packng": "stream"}}),
     "datasets.syn_stories.layouts.lm.packng: layout 'lm': unknown option(s) ['packng']"),
    # pass@k with k larger than the seeds of its cell
    (_set("tables.table4.rows[1].seeds", [0, 1, 2]),
     "tables.table4.columns[1].k: pass@5 of metric 'compiles' needs at least 5 samples (seed "
     "files) per problem, the cell has 3 (rows[1] 'DFM (default, N = #masked tokens steps)': "
     "seeds [0, 1, 2])"),
    (_set("tables.table4.columns[3].k", 7), "tables.table4.columns[3].k: pass@7 of metric 'passes'"),
    (_set("tables.table4.columns[3].k", True), "tables.table4.columns[3].k: aggregate 'pass_at_k' "
                                               "of metric 'passes' needs an integer k >= 1, got True"),
]


@pytest.mark.parametrize("mutate, expected", DAG_CHECKS, ids=[e.split(":")[0] for _, e in DAG_CHECKS])
def test_stage_checks_run_at_dag_build_naming_the_config_path(smoke, mutate, expected):
    cfg = copy.deepcopy(smoke)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        Catalogue(cfg)
    assert expected in str(err.value)


def test_a_swept_sampler_value_is_checked_naming_the_figure(paper):
    cfg = copy.deepcopy(paper)
    name, spec = next((n, s) for n, s in cfg["figures"].items()
                      if s.get("kind") == "option_sweep" and s.get("option") == "t_star")
    spec["values"] = [*spec["values"], 1.5]
    with pytest.raises(ConfigError, match=rf"figures\.{name}\.values\[{len(spec['values']) - 1}\]: "
                                          "sampler option t_star must be a number in"):
        Catalogue(cfg)


def test_the_stage_and_the_dag_share_one_rule():
    """The sampler and the workflow call the same function: a method rejects what the DAG does."""
    from repro.io import OptionError
    from repro.methods import options

    with pytest.raises(OptionError) as err:
        options.check_sampler_config("diffuseq", {"kind": "ddpm"}, {"diffusion_steps": 50}, 49)
    assert err.value.key == "nfe" and "T = 50" in str(err.value)
    with pytest.raises(OptionError, match="top_k must be an int in \\[0, vocab_size=10\\]"):
        options.klflow_options("sampling", {"top_k": 11}, vocab_size=10)  # only the stage knows V
    options.klflow_options("sampling", {"top_k": 11})  # the DAG does not know V yet


def test_gen_ppl_max_length_is_checked_against_a_downloaded_judges_config(smoke, tmp_path,
                                                                          monkeypatch):
    cfg = copy.deepcopy(smoke)
    cfg["judges"]["smoke_judge"] = {"local": str(tmp_path / "judge")}
    Catalogue(cfg)  # not there yet: nothing to check against
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "config.json").write_text(json.dumps({"n_positions": 64}))
    with pytest.raises(ConfigError, match="metrics.gen_ppl_judge.max_length: .*max_length 96 "
                                          "exceeds the context \\(64\\)"):
        Catalogue(cfg)


def test_gen_ppl_max_length_is_checked_against_a_hub_judge_before_its_download(smoke):
    cfg = copy.deepcopy(smoke)
    cfg["judges"]["smoke_judge"] = {"hub": {"id": "openai-community/gpt2", "revision": "a" * 40}}
    cfg["metrics"]["gen_ppl_judge"]["max_length"] = 1024
    Catalogue(cfg)  # GPT-2's context is 1,024
    cfg["metrics"]["gen_ppl_judge"]["max_length"] = 2048
    with pytest.raises(ConfigError, match="metrics.gen_ppl_judge.max_length: .*max_length 2048 "
                                          "exceeds the context \\(1024\\)"):
        Catalogue(cfg)


def test_sampler_max_examples_caps_only_that_samplers_eval_params(smoke):
    base = Catalogue(smoke)
    ds = "syn_paraphrase"  # eval.max_examples 64
    assert base.sample_eval_params(ds, "diffuseq", "ddpm") == base.eval_params(ds)
    cfg = copy.deepcopy(smoke)
    cfg["experiments"]["diffuseq"]["samplers"]["ddpm"]["max_examples"] = 8
    capped = Catalogue(cfg)
    assert capped.sample_eval_params(ds, "diffuseq", "ddpm") == {**base.eval_params(ds), "max_examples": 8}
    # the method never sees it; the other samplers and the dataset's own eval params are unchanged
    assert capped.sampler_params("diffuseq", "ddpm") == base.sampler_params("diffuseq", "ddpm")
    assert capped.sample_eval_params(ds, "diffuseq", "ddim_gap") == base.eval_params(ds)
    assert capped.eval_params(ds) == base.eval_params(ds)
    # the smaller of the two; a dataset that evaluates all rows (0) takes the sampler's cap
    cfg["experiments"]["diffuseq"]["samplers"]["ddpm"]["max_examples"] = 500
    assert Catalogue(cfg).sample_eval_params(ds, "diffuseq", "ddpm")["max_examples"] == 64
    cfg["datasets"][ds]["eval"]["max_examples"] = 0
    assert Catalogue(cfg).sample_eval_params(ds, "diffuseq", "ddpm")["max_examples"] == 500
    for bad in (0, True, "5"):
        cfg["experiments"]["diffuseq"]["samplers"]["ddpm"]["max_examples"] = bad
        with pytest.raises(ConfigError, match=r"experiments\.diffuseq\.samplers\.ddpm\.max_examples: "
                                              r"expected an integer >= 1"):
            Catalogue(cfg)


def test_dataset_config_errors_surface_in_the_catalogue(smoke, tmp_path):
    cfg = copy.deepcopy(smoke)
    cfg["datasets"]["mine"] = {"kind": "seq2seq", "loader": "jsonl", "seq_len": 32,
                               "local": {"train": str(tmp_path / "t.jsonl")}, "fields": {"src": "q"},
                               "tokenizer": {"train": {"algorithm": "wordlevel", "vocab_size": 100}}}
    with pytest.raises(ConfigError, match=r"datasets\.mine\.fields\.trg: missing"):
        Catalogue(cfg)
    cfg["datasets"]["mine"]["fields"]["trg"] = "p"
    Catalogue(cfg)
