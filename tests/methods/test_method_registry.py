"""The registry (read by the Snakefile without torch) agrees with the method classes."""

from __future__ import annotations

import inspect

import pytest

from repro import methods
from repro.io import InputError
from repro.tokenization import LAYOUTS


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_registry_entry_matches_the_class(name):
    info = methods.REGISTRY[name]
    method = methods.get_method(name)
    assert method.name == name
    assert tuple(method.samplers) == info.samplers
    for kind, layout in info.layouts.items():
        assert method.layout(kind) == layout
        assert layout in LAYOUTS
    with pytest.raises(InputError, match="has no layout for task kind"):
        method.layout("no-such-kind")
    # the model keys the schema/catalogue accept are exactly those build_model accepts
    module = inspect.getmodule(type(method))
    declared = set(getattr(module, "MODEL_KEYS", {})) | set(getattr(module, "BACKBONE_KEYS", {}))
    declared |= set(getattr(module, "METHOD_KEYS", {}))
    assert set(info.model_keys) == declared


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered methods"):
        methods.get_method("nope")
