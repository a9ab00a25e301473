"""Tokenizer training/loading and special-token roles (repro.tokenization.vocab)."""

from __future__ import annotations

import pytest
from tok_samples import CODE, WORDS
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from repro.io import InputError
from repro.tokenization import (
    SPECIAL_TOKENS,
    Specials,
    load_pretrained,
    specials_of,
    train_tokenizer,
)

BERT_VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "!"]


def make_bert_like(tmp_path):
    """A tiny bert-base-uncased look-alike with the post-processor/padding HF ships enabled."""
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(BERT_VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens([AddedToken(t, special=True) for t in BERT_VOCAB[:6]])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 3), ("[SEP]", 4)]
    )
    tok.enable_padding(length=16)
    tok.enable_truncation(max_length=8)
    path = tmp_path / "bert" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    vocab_dir = tmp_path / "bert_vocab"
    vocab_dir.mkdir()
    (vocab_dir / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    return path, vocab_dir


def make_gpt2_like(tmp_path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CODE + [WORDS], trainer=trainer)
    path = tmp_path / "gpt2.json"
    tok.save(str(path))
    model_dir = tmp_path / "gpt2_dir"
    model_dir.mkdir()
    tok.model.save(str(model_dir))
    return path, model_dir, tok.get_vocab_size()


@pytest.mark.parametrize("algorithm", ["wordlevel", "wordpiece", "bpe", "bytelevel_bpe"])
def test_trained_tokenizers_reserve_specials(algorithm):
    tok = train_tokenizer([WORDS] + CODE, {"algorithm": algorithm, "vocab_size": 300})
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(7))
    assert specials_of(tok) == Specials(pad=0, unk=1, cls=2, sep=3, mask=4, bos=5, eos=6)
    assert tok.post_processor is None and tok.padding is None and tok.truncation is None
    # specials in text stay single tokens
    assert tok.encode("[SEP]", add_special_tokens=False).ids == [3]


def test_wordlevel_round_trip_and_lowercase():
    tok = train_tokenizer([WORDS], {"algorithm": "wordlevel", "vocab_size": 100, "lowercase": True})
    text = "the quick brown fox jumps over the lazy dog"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text
    assert tok.encode("THE Cat", add_special_tokens=False).ids == tok.encode("the cat").ids
    assert tok.encode("zebra", add_special_tokens=False).ids == [1]  # [UNK]


def test_wordlevel_vocab_size_and_min_frequency():
    tok = train_tokenizer(["a a a b b c"], {"algorithm": "wordlevel", "vocab_size": 9})
    assert tok.get_vocab_size() == 9  # 7 specials + the 2 most frequent words
    assert tok.token_to_id("c") is None
    tok = train_tokenizer(["a a a b b c"], {"algorithm": "wordlevel", "vocab_size": 50,
                                           "min_frequency": 2})
    assert tok.token_to_id("b") is not None and tok.token_to_id("c") is None


def test_bytelevel_round_trips_code():
    tok = train_tokenizer(CODE, {"algorithm": "bytelevel_bpe", "vocab_size": 320})
    for text in CODE + ["x = 'ünïcode ✓'\r\n\n\n    \t  trailing  \n", ""]:
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


def test_bpe_metaspace_round_trips_single_spaced_text():
    tok = train_tokenizer([WORDS] * 5, {"algorithm": "bpe", "vocab_size": 120})
    text = "the little girl liked to play python"
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"algorithm": "sentencepiece", "vocab_size": 100}, "algorithm"),
        ({"algorithm": "wordlevel", "vocab_size": 5}, "vocab_size"),
        ({"algorithm": "bytelevel_bpe", "vocab_size": 100}, r"vocab_size must be an integer >= 263"),
        ({"algorithm": "wordlevel", "vocab_size": 100, "lower": True}, r"unknown key.*lower"),
        ({"algorithm": "wordlevel", "vocab_size": 100, "lowercase": "yes"}, "lowercase"),
        ({"algorithm": "wordlevel", "vocab_size": 100, "min_frequency": 0}, "min_frequency"),
    ],
)
def test_train_config_errors(cfg, match):
    with pytest.raises(InputError, match=match):
        train_tokenizer(["a b"], cfg)


def test_train_on_nothing_is_an_error():
    with pytest.raises(InputError, match="no texts"):
        train_tokenizer([], {"algorithm": "wordlevel", "vocab_size": 100})


def test_pretrained_bert_from_tokenizer_json(tmp_path):
    path, _ = make_bert_like(tmp_path)
    for ident in (str(path), str(path.parent)):  # the file or its directory
        tok = load_pretrained({"id": ident, "revision": "ignored-for-local"})
        assert tok.get_vocab_size() == len(BERT_VOCAB)  # nothing added
        assert specials_of(tok) == Specials(pad=0, unk=2, cls=3, sep=4, mask=5, bos=3, eos=4)
        # the shipped post-processor, padding and truncation are off: no [CLS]/[SEP]/[PAD] added
        enc = tok.encode("Hello worlds hello hello hello hello hello hello hello !")
        assert enc.ids == [6, 7, 8] + [6] * 7 + [9]


def test_pretrained_bert_from_vocab_txt_directory(tmp_path):
    _, vocab_dir = make_bert_like(tmp_path)
    tok = load_pretrained({"id": str(vocab_dir)})
    assert specials_of(tok) == Specials(pad=0, unk=2, cls=3, sep=4, mask=5, bos=3, eos=4)
    assert tok.encode("HELLO worlds !").ids == [6, 7, 8, 9]
    assert tok.decode([6, 7, 8]) == "hello worlds"


def test_pretrained_gpt2_adds_pad_mask_bos(tmp_path):
    path, model_dir, vocab = make_gpt2_like(tmp_path)
    eot = Tokenizer.from_file(str(path)).token_to_id("<|endoftext|>")
    for ident in (str(path), str(model_dir)):
        tok = load_pretrained({"id": ident})
        assert [tok.token_to_id(t) for t in ("[PAD]", "[MASK]", "[BOS]")] == [vocab, vocab + 1,
                                                                            vocab + 2]
        assert tok.get_vocab_size() == vocab + 3
        assert specials_of(tok) == Specials(
            pad=vocab, unk=eot, cls=vocab + 2, sep=eot, mask=vocab + 1, bos=vocab + 2, eos=eot
        )
        text = "def f(x):\n    return x<|endoftext|>"
        ids = tok.encode(text).ids
        assert ids[-1] == eot and tok.decode(ids, skip_special_tokens=False) == text


def test_pretrained_add_specials_gives_a_distinct_separator(tmp_path):
    path, _, vocab = make_gpt2_like(tmp_path)
    tok = load_pretrained({"id": str(path), "add_specials": ["[SEP]"]})
    sp = specials_of(tok)
    assert sp.sep == vocab and sp.eos != sp.sep and sp.pad == vocab + 1


def test_pretrained_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        load_pretrained({"id": str(tmp_path / "missing" / "tokenizer.json")})
    with pytest.raises(InputError, match="unknown key"):
        load_pretrained({"id": "gpt2", "rev": "x"})
    with pytest.raises(InputError, match="revision"):
        load_pretrained({"id": "gpt2"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither tokenizer.json"):
        load_pretrained({"id": str(tmp_path / "empty")})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not a valid tokenizers JSON"):
        load_pretrained({"id": str(tmp_path / "bad.json")})
    # Offline: the hub branch only looks in the local cache and fails with a pointer to local ids.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="local directory"):
        load_pretrained({"id": "repro-tests/no-such-tokenizer", "revision": "0" * 40})


def test_specials_of_names_the_missing_role():
    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "x": 2}, unk_token="[UNK]"))
    with pytest.raises(InputError, match="'mask'"):
        specials_of(tok)
