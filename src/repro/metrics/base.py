"""What every metric shares: the result record, the function protocol, option and field checks.

A metric is a plain function ``fn(samples, **options) -> MetricResult`` decorated with
:func:`metric`, which records the *kind* it is registered under (the ``kind`` of a metrics
config entry) and the sample fields it reads (see the samples format in
``docs/architecture.md``). Options are keyword-only parameters with defaults, so the registry can
list and check them from the signature alone; adding a metric is adding one function.

Per-example values may be ``None``: "undefined for this example, left out of every mean"
(e.g. KL-flow's BLEU of an empty response, which the KL-flow evaluation drops). ``value`` is the
mean over the defined per-example values, unless a metric documents another aggregate
(``corpus_sacrebleu``), and is ``None`` only when no example had a defined value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol, TypeVar

from repro.io import InputError, OptionError


@dataclass
class MetricResult:
    """One metric over one samples file.

    Attributes:
        value: the headline number (scale stated in ``variant``); ``None`` if nothing was defined.
        variant: exact human-readable tag of the implementation, package version included.
        per_example: one value per sample, in the samples file's order (``None`` = undefined).
        details: metric-specific extras (counts of skipped examples, signatures, ...).
    """

    value: float | None
    variant: str
    per_example: list[float | None]
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_examples(
        cls, per_example: list[float | None], variant: str, details: dict[str, Any] | None = None
    ) -> MetricResult:
        """The result whose ``value`` is the mean of the defined ``per_example`` values
        (:func:`mean_defined`), the usual aggregate."""
        details = {} if details is None else details
        return cls(mean_defined(per_example), variant, per_example, details)


class MetricFn(Protocol):
    """A registered metric function (see :func:`metric`)."""

    kind: str
    fields: tuple[str, ...]

    def __call__(self, samples: Sequence[dict], **options: Any) -> MetricResult: ...


class GroupMetricFn(Protocol):
    """A registered group metric (see :func:`group_metric`)."""

    kind: str
    fields: tuple[str, ...]
    group: bool

    def __call__(self, groups: Sequence[Sequence[dict]], **options: Any) -> MetricResult: ...


F = TypeVar("F", bound=Callable[..., MetricResult])


def metric(kind: str, fields: tuple[str, ...], *, gpu: bool = False,
           packaged_models: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Mark ``fn`` as the metric ``kind`` reading the sample ``fields``.

    Capabilities the workflow reads when it builds the DAG (no model loaded): ``gpu``, the kind
    runs a neural model (its score jobs get ``resources.score.gpu`` unless ``device: cpu``);
    ``packaged_models``, model names it finds inside installed packages (never downloaded).
    """

    def mark(fn: F) -> F:
        fn.kind = kind  # type: ignore[attr-defined]
        fn.fields = fields  # type: ignore[attr-defined]
        fn.group = False  # type: ignore[attr-defined]
        fn.gpu = gpu  # type: ignore[attr-defined]
        fn.packaged_models = packaged_models  # type: ignore[attr-defined]
        return fn

    return mark


#: fewest samples per source a group metric accepts
MIN_GROUP_SIZE = 2


def group_metric(kind: str, fields: tuple[str, ...]) -> Callable[[F], F]:
    """Mark ``fn`` as the *group* metric ``kind`` reading the sample ``fields``.

    A group metric scores k samples of each source together (DiffuSeq's self-BLEU and div-4 over
    the outputs of k seeds): ``fn(groups, **options)`` where ``groups`` holds k >= 2 samples lists
    (one per samples file, in the order given) aligned row by row — ``groups[s][i]`` is seed
    file ``s``'s sample of source ``i``. ``per_example`` has one value per source (row ``i``).
    The registry (:func:`repro.metrics.compute_group_metric`) checks the alignment and fields.
    """

    def mark(fn: F) -> F:
        fn.kind = kind  # type: ignore[attr-defined]
        fn.fields = fields  # type: ignore[attr-defined]
        fn.group = True  # type: ignore[attr-defined]
        return fn

    return mark


# --- sample fields ------------------------------------------------------------------------------


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _is_id_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


#: field name -> (check, what the field must be)
FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "id": (_is_str, "a string"),
    "hypothesis": (_is_str, "a string (the generated text)"),
    "reference": (_is_str, "a string (the reference text)"),
    "source": (_is_str, "a string"),
    "hypothesis_ids": (_is_id_list, "a list of integer token ids"),
    "wall_seconds": (
        lambda v: not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
        and v >= 0,
        "a number of seconds >= 0",
    ),
}


def check_fields(
    samples: Sequence[dict], fields: Iterable[str], where: Callable[[int], str] | None = None
) -> None:
    """Raise :class:`InputError` at the first sample lacking one of ``fields`` or mistyping it.

    ``where(i)`` names sample ``i`` in the message (``file:line`` when reading a file).
    """
    where = where or (lambda i: f"sample {i}")
    fields = tuple(fields)
    for i, row in enumerate(samples):
        for name in fields:
            if name not in row:
                raise InputError(
                    f"{where(i)}: missing field {name!r}; every sample row needs "
                    f"{', '.join(repr(f) for f in fields)} (see docs/architecture.md, Samples)"
                )
            check, what = FIELD_TYPES.get(name, (lambda _x: True, ""))
            if not check(row[name]):
                raise InputError(
                    f"{where(i)}: field {name!r} must be {what}, got {type(row[name]).__name__}"
                )


# --- option values and small numerics -----------------------------------------------------------


def check_choice(kind: str, name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise OptionError(
            name,
            f"metric kind {kind!r}: option {name}={value!r} is not one of "
            f"{', '.join(repr(a) for a in allowed)}",
        )
    return value


def check_positive_int(kind: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OptionError(
            name, f"metric kind {kind!r}: option {name} must be a positive integer, got {value!r}"
        )
    return value


def mean_defined(values: Iterable[float | None]) -> float | None:
    """Mean of the non-``None`` values (``math.fsum``); ``None`` if there are none."""
    defined = [v for v in values if v is not None]
    return math.fsum(defined) / len(defined) if defined else None


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist`` without importing it ("not installed" if absent)."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"
