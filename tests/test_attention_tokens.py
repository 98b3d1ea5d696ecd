"""Word -> token positions from the whole prompt, and the finding vocabulary."""

from __future__ import annotations

import re

import pytest

from cxr_fgbg.attention.tokens import find_word_spans, tokenize_prompt
from cxr_fgbg.attention.vocabulary import DEFAULT_VOCABULARY, build_vocabulary, words_for


def _spans(tokenizer, prompt, words):
    tokenized = tokenize_prompt(tokenizer, prompt)
    return tokenized, find_word_spans(tokenized, words)


def test_single_token_word_found_at_its_position(tiny_tokenizer):
    tokenized, spans = _spans(tiny_tokenizer, "Small left pleural effusion.", ["effusion"])
    assert "".join(tokenized.tokens[i] for i in spans.token_indices) == "effusion</w>"
    # the word is followed by "." and the end token, nothing else
    assert spans.token_indices[-1] == tokenized.n_tokens - 3
    assert spans.reason is None


def test_no_prefix_match_inside_a_longer_word(tiny_tokenizer):
    _, spans = _spans(tiny_tokenizer, "Bilateral pleural effusions, moderate.", ["effusion"])
    assert spans.token_indices == ()
    assert "none of the words" in spans.reason
    _, spans = _spans(tiny_tokenizer, "Bilateral pleural effusions, moderate.", ["effusions"])
    assert len(spans.token_indices) >= 1


def test_case_and_punctuation_insensitive_every_occurrence(tiny_tokenizer):
    prompt = "PLEURAL EFFUSION. Effusion, left; (effusion)"
    tokenized, spans = _spans(tiny_tokenizer, prompt, ["Effusion."])
    assert len(spans.matches) == 3
    assert [prompt[m.start:m.end].lower() for m in spans.matches] == ["effusion"] * 3
    for m in spans.matches:
        text = "".join(tokenized.tokens[i] for i in m.token_indices).replace("</w>", "")
        assert text == "effusion"


def split_word(tokenizer):
    """A (sentence, word) of the tiny corpus whose word the tokenizer splits into several tokens in context.

    Chosen at run time: which words BPE keeps whole depends on the trained merges.
    """
    from conftest import TINY_TEXTS

    for sentence in TINY_TEXTS:
        tokenized = tokenize_prompt(tokenizer, sentence)
        for word in re.findall(r"[A-Za-z]+", sentence):
            if len(find_word_spans(tokenized, [word]).token_indices) > 1:
                return sentence, word
    raise AssertionError("the tiny tokenizer splits no word of the corpus into sub-words")


def test_subword_word_covers_all_its_pieces_and_never_special_tokens(tiny_tokenizer):
    sentence, word = split_word(tiny_tokenizer)
    tokenized, spans = _spans(tiny_tokenizer, sentence, [word])
    pieces = [tokenized.tokens[i] for i in spans.token_indices]
    assert len(pieces) > 1
    assert "".join(pieces).replace("</w>", "") == word.lower()
    assert spans.token_indices == tuple(range(spans.token_indices[0], spans.token_indices[0] + len(pieces)))
    assert 0 not in spans.token_indices and tokenized.n_tokens - 1 not in spans.token_indices
    assert not any(tokenized.special[i] for i in spans.token_indices)


def test_several_words_and_phrases_union(tiny_tokenizer):
    words = ["pleural", "effusion", "pleural effusion"]
    tokenized, spans = _spans(tiny_tokenizer, "Small left pleural effusion.", words)
    pleural = find_word_spans(tokenized, ["pleural"]).token_indices
    effusion = find_word_spans(tokenized, ["effusion"]).token_indices
    assert spans.token_indices == pleural + effusion  # the phrase overlaps the words: each token once
    assert len(spans.matches) == 3
    _, phrase = _spans(tiny_tokenizer, "heart is enlarged. Enlarged  heart!", ["enlarged heart"])
    assert len(phrase.matches) == 1


def test_truncated_word_gives_a_reason(tiny_tokenizer):
    prompt = "no acute process " * 12 + "small left pleural effusion"
    tokenized, spans = _spans(tiny_tokenizer, prompt, ["effusion"])
    assert tokenized.truncated and tokenized.n_tokens == tiny_tokenizer.model_max_length
    assert spans.token_indices == ()
    assert "truncated" in spans.reason


def test_vocabulary_lookup_and_extension():
    assert set(words_for("pleural effusion")) >= {"effusion", "effusions", "pleural"}
    assert set(words_for("Pneumothorax")) >= {"pneumothorax", "pneumothoraces"}
    assert len(DEFAULT_VOCABULARY) == 8
    extended = build_vocabulary({"Edema": ["congestion"], "Nodule": ["nodule"]})
    assert "congestion" in words_for("edema", extended) and "edema" in words_for("edema", extended)
    assert words_for("nodule", extended) == ("nodule",)
    only = build_vocabulary({"Edema": ["edema"]}, replace=True)
    assert list(only) == ["Edema"]
    with pytest.raises(KeyError, match="Nodule"):
        words_for("Nodule")
