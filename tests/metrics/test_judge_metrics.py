"""gen_ppl and judge_entropy against straightforward per-sample reference computations.

The judges are tiny randomly initialised GPT-2 models with a BPE tokenizer, built in a temporary
directory; nothing touches the hub (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import math
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from repro.io import InputError  # noqa: E402
from repro.judge import EOT, train_tokenizer  # noqa: E402
from repro.metrics.judge import (  # noqa: E402
    gen_ppl,
    judge_entropy,
    load_judge,
    padded_entropy,
)

CONTEXT = 16
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "in", "big", "red", "park", "and"]
WORDS += ["then", "home", "happy", "sun"]


def _corpus(n: int = 200) -> list[str]:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, len(WORDS), (n, 8), generator=g).tolist()
    return [" ".join(WORDS[i] for i in row) for row in idx]


def _make_judge(path, vocab_size: int, seed: int) -> str:
    """A GPT-2 judge whose tokenizer, like hub GPT-2's, has no pad token."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    trained = train_tokenizer(_corpus(), vocab_size, CONTEXT)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=trained.backend_tokenizer,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        model_max_length=CONTEXT,
    )
    assert tok.pad_token is None
    torch.manual_seed(seed)
    eos = tok.convert_tokens_to_ids(EOT)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=CONTEXT,
        n_embd=32,
        n_layer=2,
        n_head=2,
        initializer_range=0.4,  # peaked, varied predictions: the aggregations differ visibly
        bos_token_id=eos,
        eos_token_id=eos,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> str:
    return _make_judge(tmp_path_factory.mktemp("judge") / "tiny", 300, seed=0)


@pytest.fixture(scope="module")
def judge_dir2(tmp_path_factory) -> str:
    return _make_judge(tmp_path_factory.mktemp("judge2") / "tiny2", 270, seed=1)


TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park and then home",
    "",  # empty: undefined everywhere
    "sun",  # maybe a single token: nothing to score
    # EOS inside the text: the first EOS is scored by MDLM, none by KL-flow
    f"the cat{EOT} sat on{EOT} a mat",
    # longer than the context (16): chunked (corpus / per-sample) or truncated (KL-flow)
    " ".join(["the big red dog ran in the park"] * 5),
    "happy happy cat",
]


def _samples(texts=TEXTS) -> list[dict]:
    return [{"hypothesis": t} for t in texts]


def _ids(jd, text: str) -> list[int]:
    return jd.tokenizer(text, add_special_tokens=False)["input_ids"]


def _target_nlls(model, ids: list[int]) -> list[float]:
    """−log p(ids[j] | ids[:j]) for j ≥ 1, one token at a time from the full log-softmax."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return [-logp[j - 1, ids[j]].item() for j in range(1, len(ids))]


def _reference(jd, texts, aggregation: str, max_length: int):
    """Independent per-sample computation of the three aggregations -> (value, per_example)."""
    eos = jd.tokenizer.eos_token_id
    per_example, sums, counts = [], [], []
    for text in texts:
        ids = _ids(jd, text)[:max_length]
        s, n = 0.0, 0
        if aggregation == "klflow_padded":
            padded = ids + [eos] * (max_length - len(ids))
            nlls = _target_nlls(jd.model, padded) if len(padded) > 1 else []
            for j, nll in enumerate(nlls, start=1):
                if padded[j] != eos:
                    s, n = s + nll, n + 1
        else:
            for c in range(0, len(ids), CONTEXT):
                chunk = ids[c : c + CONTEXT]
                nlls = _target_nlls(jd.model, chunk) if len(chunk) > 1 else []
                eos_positions = [j for j, t in enumerate(chunk) if t == eos]
                for j, nll in enumerate(nlls, start=1):
                    scored = (
                        chunk[j] != eos or j == eos_positions[0]
                        if aggregation == "corpus_exp_mean_nll"
                        else True
                    )
                    if scored:
                        s, n = s + nll, n + 1
        sums.append(s)
        counts.append(n)
        if not text or n == 0:
            per_example.append(None)
        elif aggregation == "corpus_exp_mean_nll":
            per_example.append(s)
        else:
            per_example.append(math.exp(s / n))
    if aggregation == "corpus_exp_mean_nll":
        value = math.exp(sum(sums) / sum(counts))
    else:
        defined = [v for v in per_example if v is not None]
        value = sum(defined) / len(defined)
    return value, per_example, counts


def _close(a, b, rel=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None), (a, b)
        if x is not None:
            assert x == pytest.approx(y, rel=rel, abs=1e-8), (a, b)


@pytest.mark.parametrize(
    "aggregation,max_length",
    [
        ("corpus_exp_mean_nll", 64),
        ("mean_per_sample_ppl", 64),
        ("klflow_padded", 12),
        ("klflow_padded", 16),
    ],
)
def test_aggregations_match_reference(judge_dir, aggregation, max_length):
    jd = load_judge(judge_dir, device="cpu")
    res = gen_ppl(
        _samples(),
        judge=judge_dir,
        aggregation=aggregation,
        max_length=max_length,
        batch_size=3,
        device="cpu",
    )
    value, per_example, counts = _reference(jd, TEXTS, aggregation, max_length)
    assert res.value == pytest.approx(value, rel=1e-5)
    _close(res.per_example, per_example)
    assert res.details["per_example_tokens"] == counts
    assert res.per_example[2] is None  # the empty text
    assert aggregation in res.variant and judge_dir in res.variant
    assert f"max_length {max_length}" in res.variant
    assert res.details["aggregation"] == aggregation
    assert res.details["max_length"] == max_length


def test_aggregations_differ_where_the_papers_do(judge_dir):
    vals = {
        agg: gen_ppl(_samples(), judge=judge_dir, aggregation=agg, max_length=16, device="cpu")
        for agg in ("corpus_exp_mean_nll", "mean_per_sample_ppl", "klflow_padded")
    }
    # the EOS-bearing text: MDLM scores its first EOS, SEDD both, KL-flow none
    tokens = {agg: r.details["per_example_tokens"][4] for agg, r in vals.items()}
    assert tokens["mean_per_sample_ppl"] == tokens["corpus_exp_mean_nll"] + 1
    assert tokens["klflow_padded"] == tokens["corpus_exp_mean_nll"] - 1
    assert vals["mean_per_sample_ppl"].value != pytest.approx(vals["klflow_padded"].value)


def test_long_sequences_are_chunked(judge_dir):
    jd = load_judge(judge_dir, device="cpu")
    text = TEXTS[5]
    ids = _ids(jd, text)
    assert len(ids) > 2 * CONTEXT
    res = gen_ppl(
        _samples([text]),
        judge=judge_dir,
        aggregation="mean_per_sample_ppl",
        max_length=1000,
        device="cpu",
    )
    chunks = [ids[i : i + CONTEXT] for i in range(0, len(ids), CONTEXT)]
    nlls = [x for c in chunks for x in _target_nlls(jd.model, c)]
    assert len(nlls) == len(ids) - len(chunks)  # each chunk's first token is unscored
    assert res.per_example[0] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)
    assert res.details["n_chunked"] == 1 and res.details["n_truncated"] == 0
    # default max_length = the judge's context: truncation, no chunks
    res = gen_ppl(_samples([text]), judge=judge_dir, aggregation="mean_per_sample_ppl")
    first = _target_nlls(jd.model, ids[:CONTEXT])
    assert res.per_example[0] == pytest.approx(math.exp(sum(first) / len(first)), rel=1e-5)
    assert res.details["max_length"] == CONTEXT and res.details["n_truncated"] == 1


@pytest.mark.parametrize("aggregation", ["corpus_exp_mean_nll", "klflow_padded"])
def test_batching_does_not_change_per_sample_results(judge_dir, aggregation):
    kw = dict(judge=judge_dir, aggregation=aggregation, max_length=16, device="cpu")
    one = gen_ppl(_samples(), batch_size=1, **kw)
    four = gen_ppl(_samples(), batch_size=4, **kw)
    _close(one.per_example, four.per_example, rel=1e-5)  # fp32 matmul shapes differ
    assert one.value == pytest.approx(four.value, rel=1e-5)


def test_klflow_ignores_pads(judge_dir):
    kw = dict(judge=judge_dir, aggregation="klflow_padded", device="cpu")
    base = gen_ppl(_samples(["the cat sat on the mat"]), max_length=10, **kw)
    # trailing EOS tokens are pads; a longer pad run changes nothing either
    padded = gen_ppl(_samples([f"the cat sat on the mat{EOT}{EOT}{EOT}"]), max_length=10, **kw)
    longer = gen_ppl(_samples(["the cat sat on the mat"]), max_length=16, **kw)
    assert padded.per_example[0] == pytest.approx(base.per_example[0], rel=1e-6)
    assert longer.per_example[0] == pytest.approx(base.per_example[0], rel=1e-6)
    # the per-sample mode scores the EOS targets: a different number
    sedd = gen_ppl(
        _samples([f"the cat sat on the mat{EOT}{EOT}{EOT}"]),
        judge=judge_dir,
        aggregation="mean_per_sample_ppl",
        device="cpu",
    )
    assert sedd.per_example[0] != pytest.approx(base.per_example[0], rel=1e-3)


def test_add_bos_scores_the_first_token(judge_dir):
    jd = load_judge(judge_dir, device="cpu")
    text = "the cat sat"
    res = gen_ppl(
        _samples([text]), judge=judge_dir, aggregation="mean_per_sample_ppl", add_bos=True
    )
    ids = [jd.tokenizer.bos_token_id, *_ids(jd, text)]
    nlls = _target_nlls(jd.model, ids)
    assert res.details["per_example_tokens"] == [len(ids) - 1]
    assert res.per_example[0] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)


def test_load_judge_sets_pad_to_eos(judge_dir):
    jd = load_judge(judge_dir, device="cpu")
    assert jd.tokenizer.pad_token_id == jd.tokenizer.eos_token_id
    assert jd.context == CONTEXT
    assert not jd.model.training


def test_option_errors(judge_dir, tmp_path):
    s = _samples(["the cat"])
    with pytest.raises(InputError, match="option judge is required"):
        gen_ppl(s, aggregation="klflow_padded")
    with pytest.raises(InputError, match="option aggregation is required"):
        gen_ppl(s, judge=judge_dir)
    with pytest.raises(InputError, match="'corpus_exp_mean_nll'"):
        gen_ppl(s, judge=judge_dir, aggregation="corpus")
    with pytest.raises(InputError, match="exceeds the context"):
        gen_ppl(s, judge=judge_dir, aggregation="klflow_padded", max_length=CONTEXT + 1)
    with pytest.raises(InputError, match="not found"):
        gen_ppl(s, judge=str(tmp_path / "results/judges/none"), aggregation="klflow_padded")
    with pytest.raises(InputError, match="batch_size"):
        gen_ppl(s, judge=judge_dir, aggregation="klflow_padded", batch_size=0)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="local directory"):
        gen_ppl(
            _samples(["a"]), judge="repro-no-such-org/no-such-judge", aggregation="klflow_padded"
        )


# --- judge_entropy ------------------------------------------------------------------------------


def _manual_entropy(ids: list[int], length: int, pad: int) -> float:
    padded = (ids + [pad] * length)[:length]
    return -sum(c / length * math.log(c / length) for c in Counter(padded).values())


def test_judge_entropy_matches_histogram_and_units(judge_dir):
    jd = load_judge(judge_dir, device="cpu")
    eos = jd.tokenizer.eos_token_id
    nats = judge_entropy(_samples(), judge=judge_dir, max_length=12)
    bits = judge_entropy(_samples(), judge=judge_dir, max_length=12, base="2")
    expected = [_manual_entropy(_ids(jd, t), 12, eos) if t else None for t in TEXTS]
    _close(nats.per_example, expected, rel=1e-9)
    assert nats.per_example[2] is None  # empty text
    for n, b in zip(nats.per_example, bits.per_example):
        if n is not None:
            assert n == pytest.approx(b * math.log(2), rel=1e-12)
    assert nats.value == pytest.approx(bits.value * math.log(2), rel=1e-12)
    assert "nats" in nats.variant and "bits" in bits.variant
    # default length: the judge's context
    default = judge_entropy(_samples(["the cat"]), judge=judge_dir)
    assert default.per_example[0] == pytest.approx(_manual_entropy(_ids(jd, "the cat"), 16, eos))


def test_judge_entropy_averages_over_judges(judge_dir, judge_dir2):
    kw = dict(max_length=12)
    a = judge_entropy(_samples(), judge=judge_dir, **kw)
    b = judge_entropy(_samples(), judge=judge_dir2, **kw)
    both = judge_entropy(_samples(), judge=[judge_dir, judge_dir2], **kw)
    assert a.per_example != b.per_example  # different tokenisations
    for x, y, m in zip(a.per_example, b.per_example, both.per_example):
        assert (m is None) == (x is None)
        if m is not None:
            assert m == pytest.approx((x + y) / 2)


def test_padded_entropy_edges():
    # one symbol -> 0; all distinct -> log(length); truncation
    assert padded_entropy([[5, 5]], 2, pad=0, base="e")[0] == 0.0
    assert padded_entropy([[1, 2, 3, 4]], 4, pad=0, base="2")[0] == pytest.approx(2.0)
    assert padded_entropy([[1, 2, 3, 4, 5, 6]], 2, pad=0, base="e")[0] == pytest.approx(math.log(2))
    assert padded_entropy([[1], [2, 3]], 4, pad=0, base="e").tolist() == pytest.approx(
        [_manual_entropy([1], 4, 0), _manual_entropy([2, 3], 4, 0)]
    )


# --- one rule for empty hypotheses ---------------------------------------------------------------


def test_whitespace_only_is_empty_for_every_text_metric(judge_dir):
    """A whitespace-only hypothesis is empty (undefined) for the judge metrics as for BLEU and
    ROUGE-L with ``empty: drop`` (0.0 with ``keep``); BERTScore's rule: tests/metrics/test_semantic."""
    from repro.metrics.text import bleu_klflow, is_empty, rouge_l_rouge_score

    blank = " \t\n  "
    jd = load_judge(judge_dir, device="cpu")
    assert len(_ids(jd, blank)) >= 2  # the judge would score something
    samples = [{"hypothesis": blank, "reference": "the cat sat"},
               {"hypothesis": "the cat sat on the mat", "reference": "the cat sat"}]
    assert is_empty(blank)
    for aggregation in ("corpus_exp_mean_nll", "mean_per_sample_ppl", "klflow_padded"):
        res = gen_ppl(samples, judge=judge_dir, aggregation=aggregation, max_length=12,
                      device="cpu")
        assert res.per_example[0] is None and res.per_example[1] is not None, aggregation
    ent = judge_entropy(samples, judge=judge_dir, max_length=12)
    assert ent.per_example[0] is None and ent.per_example[1] is not None
    assert ent.details["per_judge_value"] == [ent.per_example[1]]
    assert bleu_klflow(samples).per_example[0] is None
    assert rouge_l_rouge_score(samples, empty="drop").per_example[0] is None
    assert rouge_l_rouge_score(samples, empty="keep").per_example[0] == 0.0
# --- judges that are not causal LMs ---------------------------------------------------------------


def test_a_judge_that_is_not_a_causal_lm_is_refused(judge_dir, tmp_path):
    """A BERT-style directory (masked LM, tokenizer with an EOS) once scored gen_ppl 63,828."""
    import shutil

    from transformers import BertConfig, BertForMaskedLM

    bert = tmp_path / "bert"
    shutil.copytree(judge_dir, bert)  # the tokenizer (it has an EOS): only the model differs
    (bert / "model.safetensors").unlink()
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
    BertForMaskedLM(config).save_pretrained(bert)
    for metric in (gen_ppl, judge_entropy):
        opts = {"aggregation": "klflow_padded"} if metric is gen_ppl else {}
        with pytest.raises(InputError, match=r"is not a causal language model: .*BertForMaskedLM"):
            metric(_samples(["the cat"]), judge=str(bert), **opts)


def test_a_judge_missing_weights_is_refused(judge_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(judge_dir, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if k.endswith("h.1.mlp.c_fc.weight"))
    save_file({k: v for k, v in weights.items() if k != dropped}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"lacks 1 weight\(s\) .*h\.1\.mlp\.c_fc\.weight"):
        gen_ppl(_samples(["the cat"]), judge=str(broken), aggregation="klflow_padded")
