"""The BPE tokenizer: rare disease words split into sub-words, common words stay whole."""

from __future__ import annotations

import torch
from conftest import TINY_TEXTS

from cxr_fgbg.models.text_pretraining import mask_tokens
from cxr_fgbg.models.tokenizer import WORD_END, train_tokenizer, word_pieces


def test_rare_disease_word_splits_into_sub_words_at_a_small_vocabulary():
    tokenizer = train_tokenizer(TINY_TEXTS * 20, vocab_size=600, max_length=32, max_token_length=6)
    pieces = word_pieces(tokenizer, ["pneumothorax", "cardiomegaly", "no"])
    assert len(pieces["pneumothorax"]) >= 2
    assert len(pieces["cardiomegaly"]) >= 2
    assert "".join(pieces["pneumothorax"]).replace(WORD_END, "") == "pneumothorax"
    assert pieces["no"] == ["no" + WORD_END]
    assert all(len(p.replace(WORD_END, "")) <= 6 for p in pieces["pneumothorax"])


def test_without_a_token_length_limit_a_small_corpus_keeps_words_whole():
    # the few distinct words of a small corpus all fit a 600-token vocabulary: the limit is what splits them
    tokenizer = train_tokenizer(TINY_TEXTS * 20, vocab_size=600, max_length=32)
    assert word_pieces(tokenizer, ["pneumothorax"])["pneumothorax"] == ["pneumothorax" + WORD_END]


def test_mask_tokens_masks_words_only_and_at_least_one_per_text(tiny_tokenizer):
    ids = tiny_tokenizer(["no pneumothorax.", "small left pleural effusion."], padding="max_length",
                         max_length=16, return_tensors="pt").input_ids
    special = {tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id}
    masked, labels = mask_tokens(ids, tiny_tokenizer, 0.01, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.sum(dim=1).min() >= 1
    assert not any(int(t) in special for t in ids[chosen])
    assert torch.equal(masked[chosen], torch.full((int(chosen.sum()),), tiny_tokenizer.unk_token_id))
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert torch.equal(labels[chosen], ids[chosen])


def test_training_is_deterministic():
    # `tokenizers` numbers its initial alphabet in hash-map order; without renumbering, ids changed run to run
    dumps = {train_tokenizer(TINY_TEXTS * 5, vocab_size=120, max_token_length=6).backend_tokenizer.to_str()
             for _ in range(4)}
    assert len(dumps) == 1
