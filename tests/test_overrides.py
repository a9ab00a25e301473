"""Command-line overrides of single config keys (repro.overrides)."""

from __future__ import annotations

import pytest

from repro import overrides
from repro.io import InputError


def _config():
    return {"experiments": {"ar": {"train": {"steps": 100, "lr": 0.001}, "model": {"n_layers": 2}}},
            "resources": {"train": {"gpu": 0}}}


def test_values_get_yaml_types_and_nested_keys_merge():
    cfg = _config()
    cfg["set"] = ("experiments.ar.train.steps=10 experiments.ar.train.lr=3e-4 "
                  "resources.train.gpu=2 experiments.ar.train.betas=[0.9,0.95] "
                  "experiments.ar.train.schedule=cosine experiments.ar.train.ema=true "
                  "\"experiments.ar.train.note=two words\" 'experiments.new.train={steps: 5}'")
    applied = overrides.apply(cfg, {})
    assert "set" not in cfg
    train = cfg["experiments"]["ar"]["train"]
    assert train["steps"] == 10 and isinstance(train["steps"], int)
    assert train["lr"] == pytest.approx(3e-4) and isinstance(train["lr"], float)
    assert train["betas"] == [0.9, 0.95] and train["schedule"] == "cosine" and train["ema"] is True
    assert train["note"] == "two words"
    assert cfg["experiments"]["ar"]["model"] == {"n_layers": 2}  # siblings kept
    assert cfg["resources"]["train"]["gpu"] == 2
    assert cfg["experiments"]["new"] == {"train": {"steps": 5}}
    assert applied[0] == "experiments.ar.train.steps=10"


def test_environment_first_then_config_and_null_deletes():
    cfg = _config()
    cfg["set"] = "experiments.ar.train.steps=20"
    overrides.apply(cfg, {"REPRO_SET": "experiments.ar.train.steps=5 experiments.ar.train.lr=null"})
    assert cfg["experiments"]["ar"]["train"] == {"steps": 20}


@pytest.mark.parametrize("text, message", [
    ("experiments.ar.train.steps", "is not dotted.key=value"),
    ("=3", "is not dotted.key=value"),
    ("experiments..steps=3", "is not a dotted key"),
    ("experiments.ar.train.steps.x=3", "experiments.ar.train.steps is a int"),
    ("experiments.ar.train.lr=[1", "the value of experiments.ar.train.lr is not YAML"),
    ("'unclosed=1", "No closing quotation"),
])
def test_bad_assignments_name_the_item_and_source(text, message):
    with pytest.raises(overrides.OverrideError, match="REPRO_SET") as err:
        overrides.apply(_config(), {"REPRO_SET": text})
    assert message in str(err.value)


def test_set_must_be_a_string():
    with pytest.raises(overrides.OverrideError, match="--config set"):
        overrides.apply({"set": {"a": "1"}}, {})


def test_data_root_prefixes_relative_local_paths_of_datasets_and_judges():
    cfg = {"data_root": "/samples",
           "datasets": {"qqp": {"local": {"valid": "qqp/valid.jsonl", "test": "/abs/test.jsonl"}},
                        "lm": {"local": {"train": ["a.jsonl", "b.jsonl"]}},
                        "syn": {"loader": "synthetic"}},
           "judges": {"j": {"local": "judges/j"}, "h": {"hub": {"id": "x", "revision": "y"}}}}
    assert overrides.resolve_data_root(cfg) == "/samples"
    assert cfg["datasets"]["qqp"]["local"] == {"valid": "/samples/qqp/valid.jsonl",
                                               "test": "/abs/test.jsonl"}
    assert cfg["datasets"]["lm"]["local"] == {"train": ["/samples/a.jsonl", "/samples/b.jsonl"]}
    assert cfg["judges"]["j"]["local"] == "/samples/judges/j"
    assert overrides.resolve_data_root({"datasets": {"q": {"local": {"t": "x"}}}}) is None
    with pytest.raises(overrides.OverrideError, match="data_root"):
        overrides.resolve_data_root({"data_root": 3})


def test_expand_turns_a_seed_count_into_the_seed_list_and_keeps_lists():
    cfg = {"tables": {"t": {"rows": [{"label": "a", "seeds": 3}, {"label": "b", "seeds": [2, 7]},
                                     {"label": "c"}]}},
           "figures": {"f": {"series": [{"label": "s", "seeds": 1}]}},
           "experiments": {"e": {"train": {"seed": 5}}}}
    assert overrides.expand(cfg, "c.yaml") is cfg
    assert [r.get("seeds") for r in cfg["tables"]["t"]["rows"]] == [[0, 1, 2], [2, 7], None]
    assert cfg["figures"]["f"]["series"][0]["seeds"] == [0]
    assert cfg["experiments"]["e"]["train"] == {"seed": 5}  # only rows and series have `seeds`
    wrong_type = {"tables": {"t": {"rows": [{"seeds": True}, {"seeds": "5"}]}}}
    overrides.expand(wrong_type)  # left as written, for the schema to name
    assert [r["seeds"] for r in wrong_type["tables"]["t"]["rows"]] == [True, "5"]


@pytest.mark.parametrize("count", [0, -2])
def test_expand_names_file_and_key_of_a_count_below_one(count):
    cfg = {"figures": {"fig": {"series": [{"seeds": 2}, {"seeds": count}]}}}
    with pytest.raises(InputError, match=rf"^c\.yaml: figures\.fig\.series\[1\]\.seeds: {count} "
                                         r"seeds; write a count N >= 1"):
        overrides.expand(cfg, "c.yaml")


def test_expand_gives_every_alias_its_own_copy():
    backbone = {"d_model": 8, "n_layers": 2}
    nfe = [1, 4]
    cfg = {"experiments": {"a": {"model": backbone}, "b": {"model": backbone}},
           "tables": {"t": {"rows": [{"nfe": nfe}, {"nfe": nfe}]}}}
    overrides.expand(cfg)
    overrides.apply(cfg, {"REPRO_SET": "experiments.a.model.n_layers=12"})
    assert cfg["experiments"]["b"]["model"] == {"d_model": 8, "n_layers": 2}
    assert cfg["experiments"]["a"]["model"] == {"d_model": 8, "n_layers": 12}
    rows = cfg["tables"]["t"]["rows"]
    rows[0]["nfe"].append(16)
    assert rows[1]["nfe"] == [1, 4] and backbone["n_layers"] == 2
    # an assignment before the expansion (common.smk applies them first) changes one place too
    cfg = {"experiments": {"a": {"model": backbone}, "b": {"model": backbone}}}
    overrides.apply(cfg, {"REPRO_SET": "experiments.a.model.n_layers=12"})
    assert cfg["experiments"]["b"]["model"]["n_layers"] == 2 == backbone["n_layers"]
