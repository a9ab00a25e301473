"""Wall-clock cost of generation, read from the samples file (FM-seq2seq Fig. 7's x-axis in time).

The sample stage records, for each row, the seconds of its batch's ``Method.sample`` call divided
by the batch size (``wall_seconds``; CUDA synchronised before and after, model loading and
decoding excluded). The metric is their mean: seconds per sample on the device the sample job ran
on — comparable between points of one run of the DAG on one machine, not across machines.
"""

from __future__ import annotations

from collections.abc import Sequence

from repro.metrics.base import MetricResult, metric


@metric("wall_seconds", fields=("wall_seconds",))
def wall_seconds(samples: Sequence[dict]) -> MetricResult:
    """Mean ``wall_seconds`` per sample (seconds of sampling, amortised over the batch)."""
    # the field's type and range are checked with the other sample fields (base.FIELD_TYPES)
    per_example: list[float | None] = [float(s["wall_seconds"]) for s in samples]
    variant = "mean seconds of Method.sample per sample (batch time / batch size), device-local"
    return MetricResult.of_examples(per_example, variant)
