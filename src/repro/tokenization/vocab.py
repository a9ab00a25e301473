"""Train or load the tokenizers every layout runs on, and name their special tokens.

* Trained tokenizers (``train_tokenizer``) reserve ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
  [BOS]=5 [EOS]=6`` (docs/architecture.md, "Special tokens and meta.json").
* Pretrained tokenizers (``load_pretrained``) keep their own ids; the roles they lack get a token
  appended. DiffuSeq and FM-seq2seq use ``bert-base-uncased`` (methods.md §1.1, §2.1), whose
  ``[CLS]``/``[SEP]`` serve as BOS/EOS here (BERT has no BOS/EOS of its own). KL-flow uses GPT-2
  (methods.md §3.5): ``<|endoftext|>`` is EOS (and, as in KL-flow's AR baseline where appended lines
  are "EOT-prefixed", the separator; as in the HF GPT-2 tokenizer, the unknown token), and
  ``[PAD]``, ``[MASK]``, ``[BOS]`` are added — an explicit BOS, because GPT-2 adds none and
  KL-flow's first-position condition would otherwise leak the first real word (§3.5 pitfall).

Which token plays which role is decided from the vocabulary alone (:data:`ROLE_CANDIDATES`), so the
``tokenizer.json`` written by the train stage is all the later stages need.

The tokenizer's own post-processor, padding and truncation are switched off: the layouts place
every special token themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from repro.io import InputError

#: The reserved special tokens of a trained tokenizer, in id order (``[PAD]`` = 0 … ``[EOS]`` = 6).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]")

#: Role -> token strings that can play it, most preferred first. ``specials_of`` takes the first
#: one present in the vocabulary; ``load_pretrained`` adds the first candidate when none is.
#: Order of the roles is the order in which missing tokens are appended.
ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>", "<|PAD|>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "mask": ("[MASK]", "<mask>", "<|MASK|>"),
    "bos": ("[BOS]", "[CLS]", "<s>"),
    "eos": ("[EOS]", "<|endoftext|>", "[SEP]", "</s>"),
    "sep": ("[SEP]", "<|endoftext|>", "</s>"),
    "cls": ("[CLS]", "[BOS]", "<s>"),
}

ALGORITHMS = ("wordlevel", "wordpiece", "bpe", "bytelevel_bpe")
_TRAIN_KEYS = {"algorithm", "vocab_size", "lowercase", "min_frequency"}
_PRETRAINED_KEYS = {"id", "revision", "add_specials"}


@dataclass(frozen=True)
class Specials:
    """Token ids of the special roles (several roles may share one id, e.g. GPT-2's EOS/SEP)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    bos: int
    eos: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def strip_ids(self) -> frozenset[int]:
        """Ids removed from decoded text: every special except ``unk`` (an unknown *word*)."""
        ids = {self.pad, self.cls, self.sep, self.mask, self.bos, self.eos}
        return frozenset(ids)


def specials_of(tok: Tokenizer) -> Specials:
    """The ids of ``tok``'s special roles, chosen by :data:`ROLE_CANDIDATES`."""
    found: dict[str, int] = {}
    for role, candidates in ROLE_CANDIDATES.items():
        for token in candidates:
            token_id = tok.token_to_id(token)
            if token_id is not None:
                found[role] = token_id
                break
        else:
            raise InputError(
                f"tokenizer has no token for the special role {role!r} (looked for "
                f"{', '.join(candidates)}); load it with repro.tokenization.load_pretrained, which "
                f"adds missing specials, or retrain it with train_tokenizer"
            )
    return Specials(**found)


def neutralise(tok: Tokenizer) -> Tokenizer:
    """Switch off the tokenizer's post-processor, padding and truncation (in place)."""
    tok.post_processor = None
    tok.no_padding()
    tok.no_truncation()
    return tok


# --------------------------------------------------------------------------------------- training


def _check_keys(cfg: Any, allowed: set[str], what: str) -> None:
    if not isinstance(cfg, dict):
        raise InputError(f"{what}: expected a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - allowed
    if unknown:
        raise InputError(f"{what}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def train_tokenizer(texts: Iterable[str], cfg: dict) -> Tokenizer:
    """Train a tokenizer on ``texts``; specials are reserved at ids 0–6 (:data:`SPECIAL_TOKENS`).

    ``cfg``: ``algorithm`` (``wordlevel``: whitespace split, decodes by joining tokens with one
    space, for the synthetic tasks; ``wordpiece``: BERT-style; ``bpe``: SentencePiece-style BPE
    with a metaspace, round-trips single-spaced text; ``bytelevel_bpe``: GPT-2-style, round-trips
    any text including newlines and indentation, for code), ``vocab_size`` (int, includes the
    specials), ``lowercase`` (bool, default false), ``min_frequency`` (int, default 1).
    """
    _check_keys(cfg, _TRAIN_KEYS, "tokenizer train config")
    algorithm = cfg.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise InputError(f"tokenizer train config: algorithm {algorithm!r} is not one of {ALGORITHMS}")
    vocab_size = cfg.get("vocab_size")
    minimum = len(SPECIAL_TOKENS) + (256 if algorithm == "bytelevel_bpe" else 1)
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
        raise InputError(
            f"tokenizer train config: vocab_size must be an integer >= {minimum} for {algorithm}, "
            f"got {vocab_size!r}"
        )
    lowercase = cfg.get("lowercase", False)
    if not isinstance(lowercase, bool):
        raise InputError(f"tokenizer train config: lowercase must be true/false, got {lowercase!r}")
    min_frequency = cfg.get("min_frequency", 1)
    if not isinstance(min_frequency, int) or isinstance(min_frequency, bool) or min_frequency < 1:
        raise InputError(
            f"tokenizer train config: min_frequency must be an integer >= 1, got {min_frequency!r}"
        )

    specials = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    common = {"vocab_size": vocab_size, "min_frequency": min_frequency, "show_progress": False,
              "special_tokens": specials}
    if algorithm == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # No decoder: tokenizers then joins the tokens with single spaces.
        trainer = trainers.WordLevelTrainer(**common)
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
    elif algorithm == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(**common, continuing_subword_prefix="##")
    elif algorithm == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(**common)
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
    else:  # bytelevel_bpe
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(**common, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        if lowercase:
            tok.normalizer = normalizers.Lowercase()

    tok.train_from_iterator(_checked_texts(texts), trainer=trainer)
    for expected, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != expected:  # a tokenizers change would silently break every stored array
            raise RuntimeError(f"trained tokenizer put {token} at id {got}, expected {expected}")
    return neutralise(tok)


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    n = 0
    for text in texts:
        if not isinstance(text, str):
            raise InputError(f"tokenizer training text #{n}: expected a string, got {type(text).__name__}")
        n += 1
        yield text
    if n == 0:
        raise InputError("tokenizer training: no texts (is the train split empty?)")


# ------------------------------------------------------------------------------------- pretrained


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a ``tokenizer.json`` written by the train stage (post-processing switched off)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: tokenizer file not found (run the train_tokenizer stage first)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
        raise InputError(f"{path}: not a valid tokenizers JSON file ({err})") from None
    return neutralise(tok)


def _load_local(path: Path) -> Tokenizer:
    if path.is_file():
        return load_tokenizer(path)
    if (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    if (path / "vocab.txt").is_file():
        # A BERT checkpoint directory without tokenizer.json: rebuild BertTokenizerFast's
        # pipeline. Lower-casing follows tokenizer_config.json (HF's BertTokenizer default: true).
        lowercase = True
        config = path / "tokenizer_config.json"
        if config.is_file():
            lowercase = bool(json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True))
        tok = Tokenizer(models.WordPiece.from_file(str(path / "vocab.txt"), unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        return neutralise(tok)
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        # A GPT-2 checkpoint directory without tokenizer.json: byte-level BPE.
        tok = Tokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if tok.token_to_id("<|endoftext|>") is not None:
            tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
        return neutralise(tok)
    raise InputError(
        f"{path}: directory holds neither tokenizer.json nor vocab.txt nor vocab.json+merges.txt"
    )


def _load_hub(repo_id: str, revision: str | None) -> Tokenizer:
    if not revision:
        raise InputError(
            f"pretrained tokenizer {repo_id!r}: set `revision` to the hub commit SHA (pinned "
            f"revisions keep reruns identical), or point `id` at a local directory"
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(repo_id, "tokenizer.json", revision=revision, local_files_only=offline)
    except Exception as err:
        raise InputError(
            f"pretrained tokenizer {repo_id!r}@{revision}: could not get tokenizer.json from the "
            f"Hugging Face hub or its cache ({type(err).__name__}: {err}); on an offline machine set "
            f"`id` to a local directory holding tokenizer.json (or vocab.txt, or vocab.json + "
            f"merges.txt) or to a tokenizer.json path"
        ) from None
    return load_tokenizer(file)


def load_pretrained(cfg: dict) -> Tokenizer:
    """Load a pretrained tokenizer and add the special roles it lacks.

    ``cfg``: ``id`` — an existing local path (a ``tokenizer.json`` file, or a directory holding
    ``tokenizer.json``, BERT's ``vocab.txt`` or GPT-2's ``vocab.json`` + ``merges.txt``) or a hub
    id (then ``revision``, a commit SHA, is required; ``HF_HUB_OFFLINE=1`` restricts the lookup to
    the local hub cache); ``add_specials`` (optional list of token strings to add first, e.g.
    ``["[SEP]"]`` to give GPT-2 a separator distinct from its EOS — "unless told otherwise").

    For each role of :data:`ROLE_CANDIDATES` with no candidate in the vocabulary the first
    candidate is appended as a special token: GPT-2 gains ``[PAD]``, ``[MASK]``, ``[BOS]`` (in that
    order); BERT gains nothing (BOS = ``[CLS]``, EOS = ``[SEP]``).
    """
    _check_keys(cfg, _PRETRAINED_KEYS, "pretrained tokenizer config")
    ident = cfg.get("id")
    if not isinstance(ident, str) or not ident:
        raise InputError(f"pretrained tokenizer config: `id` must be a non-empty string, got {ident!r}")
    extra = cfg.get("add_specials", [])
    if not isinstance(extra, list) or not all(isinstance(t, str) and t for t in extra):
        raise InputError("pretrained tokenizer config: add_specials must be a list of token strings")
    path = Path(ident).expanduser()
    if path.exists():
        tok = _load_local(path)
    elif ident.startswith(("/", "./", "../", "~")) or ident.endswith(".json"):
        raise InputError(f"pretrained tokenizer: local path {ident} does not exist")
    else:
        tok = _load_hub(ident, cfg.get("revision"))
    neutralise(tok)
    to_add = [t for t in extra if tok.token_to_id(t) is None]
    if to_add:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in to_add])
    for candidates in ROLE_CANDIDATES.values():
        if all(tok.token_to_id(t) is None for t in candidates):
            tok.add_special_tokens([AddedToken(candidates[0], special=True, normalized=False)])
    specials_of(tok)  # every role is now resolvable
    return tok
