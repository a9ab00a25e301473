"""Sampler options and NFE budgets of every method, checked without torch.

Each method's ``sample`` validates its options and NFE with these functions; the workflow calls the
same functions on the config when it builds the DAG (:func:`check_sampler_config`), so a mistyped
option (``temperatur``), a mistyped value (``top_k: "5"``) or an NFE a sampler cannot make (DiffuSeq
``ddpm`` with nfe != T) fails before any training, with the rules written once. An error is an
:class:`~repro.io.OptionError` naming the option (``nfe`` for the budget), which the workflow
prefixes with the option's config path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from repro.io import OptionError

#: DiffuSeq's default number of diffusion steps T (model key ``diffusion_steps``)
DIFFUSEQ_T = 2000
#: KL-flow's default time parametrisation (model key ``time_param``)
KLFLOW_TIME_PARAM = "paper"
#: DFM: jump probabilities and read-outs of the mixture Euler sampler
DFM_JUMPS = ("linear", "exp")
DFM_READOUTS = ("argmax", "none")
#: KL-flow: sampler kind -> options it accepts
KLFLOW_SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "basic": ("chunk", "trace"),
    "semi_sampling": ("top_k", "chunk", "trace"),
    "sampling": ("top_k", "chunk", "trace"),
    "hybrid": ("t_star", "top_k", "chunk", "trace"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _unknown(opts: dict, allowed: tuple[str, ...], owner: str) -> None:
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise OptionError(
            unknown[0],
            f"sampler option(s) {unknown} are unknown to {owner}; it accepts "
            f"{list(allowed) if allowed else 'none'}",
        )


def check_nfe(nfe: Any, what: str = "network calls") -> int:
    if not _is_int(nfe) or nfe < 1:
        raise OptionError("nfe", f"nfe must be a positive int ({what}), got {nfe!r}")
    return nfe


# --- ar -----------------------------------------------------------------------------------------


def ar_options(opts: dict) -> tuple[float, int]:
    """(temperature, top_k) of an ``ancestral``/``greedy`` sampler (defaults 1.0 and 0)."""
    _unknown(opts, ("temperature", "top_k"), "method 'ar'")
    temperature, top_k = opts.get("temperature", 1.0), opts.get("top_k", 0)
    if not _is_number(temperature) or temperature <= 0:
        raise OptionError(
            "temperature",
            f"sampler option temperature must be a number > 0, got {temperature!r} "
            "(use sampler 'greedy' for argmax decoding)",
        )
    if not _is_int(top_k) or top_k < 0:
        raise OptionError("top_k", f"sampler option top_k must be an int >= 0, got {top_k!r}")
    return temperature, top_k


# --- diffuseq -----------------------------------------------------------------------------------


def diffuseq_options(sampler: str, opts: dict) -> tuple[bool, float]:
    """(clamp, top_p) of a DiffuSeq sampler (defaults True and 0 = off)."""
    _unknown(opts, ("clamp", "top_p"), "method 'diffuseq'")
    clamp, top_p = opts.get("clamp", True), opts.get("top_p", 0.0)
    if not isinstance(clamp, bool):
        raise OptionError("clamp", f"sampler option clamp must be true or false, got {clamp!r}")
    if not _is_number(top_p) or top_p < 0:
        raise OptionError(
            "top_p", f"sampler option top_p must be a number >= 0 (0 = off), got {top_p!r}"
        )
    if top_p and sampler != "ddpm":
        raise OptionError("top_p", "sampler option top_p only applies to the 'ddpm' sampler")
    return clamp, top_p


def diffuseq_nfe(sampler: str, nfe: Any, T: int) -> int:
    check_nfe(nfe)
    if sampler == "ddpm" and nfe != T:
        raise OptionError(
            "nfe",
            f"sampler 'ddpm' makes exactly T = {T} network calls; got nfe = {nfe} "
            "(use 'ddim_gap' or 'ddim_respaced' for fewer)",
        )
    if nfe > T:
        raise OptionError("nfe", f"sampler {sampler!r} can make at most T = {T} calls, got nfe = {nfe}")
    if sampler == "ddim_gap" and nfe < T:
        gap = T // nfe  # DiffuSeq's decoding: every gap-th step from T - 1 down, ceil(T / gap) calls
        calls = -(-T // gap)
        if calls != nfe:
            raise OptionError(
                "nfe",
                f"sampler 'ddim_gap' steps every T // nfe = {gap} of T = {T} steps, which makes "
                f"{calls} network calls, not nfe = {nfe}; use an nfe with ceil(T / (T // nfe)) "
                "= nfe (every divisor of T is one) or 'ddim_respaced', which makes exactly nfe",
            )
    return nfe


# --- dfm ----------------------------------------------------------------------------------------


def dfm_options(opts: dict) -> tuple[int, str, str]:
    """(iterations, jump, readout) of the mixture Euler sampler (defaults 1, linear, argmax)."""
    _unknown(opts, ("iterations", "jump", "readout"), "method 'dfm'")
    iterations = opts.get("iterations", 1)
    jump, readout = opts.get("jump", "linear"), opts.get("readout", "argmax")
    if not _is_int(iterations) or iterations < 1:
        raise OptionError(
            "iterations", f"sampler option iterations must be an int >= 1, got {iterations!r}"
        )
    if jump not in DFM_JUMPS:
        raise OptionError("jump", f"sampler option jump must be one of {list(DFM_JUMPS)}, got {jump!r}")
    if readout not in DFM_READOUTS:
        raise OptionError(
            "readout", f"sampler option readout must be one of {list(DFM_READOUTS)}, got {readout!r}"
        )
    return iterations, jump, readout


def dfm_steps(nfe: Any, iterations: int, readout: str) -> int:
    """Euler steps of an NFE budget: nfe, less one call for the argmax read-out."""
    check_nfe(nfe)
    extra = 1 if readout == "argmax" else 0
    steps = nfe - extra
    if steps < 1:
        raise OptionError(
            "nfe",
            f"nfe = {nfe} leaves no Euler step: readout 'argmax' makes one call after the "
            "n steps, so nfe must be >= 2 (or use readout: none)",
        )
    if steps % iterations:
        raise OptionError(
            "nfe",
            f"nfe = {nfe} gives {steps} Euler steps"
            + (" (nfe − 1 for the argmax read-out)" if extra else "")
            + f", not a multiple of iterations = {iterations}; pass nfe = "
            f"{iterations}·N{' + 1' if extra else ''} (e.g. {iterations * 512 + extra})",
        )
    return steps


# --- embedding_fm -------------------------------------------------------------------------------


def embedding_fm_options(opts: dict) -> None:
    _unknown(opts, (), "method 'embedding_fm'")


# --- klflow -------------------------------------------------------------------------------------


def klflow_options(
    sampler: str, opts: dict, vocab_size: int | None = None
) -> tuple[int, float, int | None, Any]:
    """Validated (top_k, t_star, chunk, trace) of a KL-flow sampler; ``vocab_size`` None (the
    workflow, before training) skips only the upper bound of top_k."""
    allowed = KLFLOW_SAMPLER_OPTIONS[sampler]
    _unknown(opts, allowed, f"sampler {sampler!r} of method 'klflow'")
    top_k = opts.get("top_k", 1)
    if not _is_int(top_k) or top_k < 0 or (vocab_size is not None and top_k > vocab_size):
        bound = f"[0, vocab_size={vocab_size}]" if vocab_size is not None else ">= 0"
        raise OptionError(
            "top_k",
            f"sampler option top_k must be an int in {bound} (1 = argmax, 0 = the full softmax), "
            f"got {top_k!r}",
        )
    t_star = 0.0
    if sampler == "hybrid":
        if "t_star" not in opts:
            raise OptionError(
                "t_star",
                "sampler 'hybrid' of method 'klflow' needs option t_star (basic steps while "
                "t < t_star, then sampling steps; the paper's FineFineWeb value is 0.28)",
            )
        t_star = opts["t_star"]
        if not _is_number(t_star) or not 0.0 <= t_star <= 1.0:
            raise OptionError("t_star", f"sampler option t_star must be a number in [0, 1], got {t_star!r}")
        t_star = float(t_star)
    chunk = opts.get("chunk")
    if chunk is not None and (not _is_int(chunk) or chunk < 1):
        raise OptionError("chunk", f"sampler option chunk must be an int >= 1 (positions), got {chunk!r}")
    trace = opts.get("trace")
    if trace is not None and not callable(trace):
        raise OptionError("trace", f"sampler option trace must be callable trace(t, x), got {trace!r}")
    return top_k, t_star, chunk, trace


def klflow_nfe(nfe: Any, time_param: str) -> int:
    check_nfe(nfe, "network calls per sample")
    if time_param == "code" and nfe < 2:
        raise OptionError(
            "nfe",
            f"nfe must be >= 2 with time_param 'code' (n = nfe − 1 steps + 1 read-out call), "
            f"got {nfe}",
        )
    return nfe


# --- the workflow's entry -----------------------------------------------------------------------


def check_sampler_config(method: str, sampler_cfg: dict, model_cfg: dict, nfe: Any = None) -> None:
    """Check a config's sampler (``kind`` plus options; ``weights`` is not the method's) and, if
    given, an NFE, with what the experiment's ``model`` block says (DiffuSeq's T, KL-flow's
    time parametrisation). ``method`` names the rules: a method's ``MethodInfo.sampler_checks``.
    Raises :class:`OptionError` naming the option (``nfe``)."""
    kind = sampler_cfg["kind"]
    opts = {k: v for k, v in sampler_cfg.items() if k not in ("kind", "weights")}
    check: Callable[[Any], int]  # the NFE rule, given the options
    if method == "ar":
        ar_options(opts)
        check = partial(check_nfe, what="max new tokens")
    elif method == "diffuseq":
        diffuseq_options(kind, opts)
        check = partial(diffuseq_nfe, kind, T=model_cfg.get("diffusion_steps", DIFFUSEQ_T))
    elif method == "dfm":
        iterations, _, readout = dfm_options(opts)
        check = partial(dfm_steps, iterations=iterations, readout=readout)
    elif method == "embedding_fm":
        embedding_fm_options(opts)
        check = partial(check_nfe, what="Euler steps")
    elif method == "klflow":
        klflow_options(kind, opts)
        check = partial(klflow_nfe, time_param=model_cfg.get("time_param", KLFLOW_TIME_PARAM))
    else:
        raise KeyError(f"no sampler checks for method {method!r}")
    if nfe is not None:
        check(nfe)
