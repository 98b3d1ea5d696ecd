"""Every phrase the phantom writes for a finding contains a word the localiser looks for.

Otherwise the localisation stage would skip the sample ("none of the words ... occurs in the prompt").
"""

from __future__ import annotations

import pandas as pd

from cxr_fgbg.attention.tokens import find_word_spans, tokenize_prompt
from cxr_fgbg.attention.vocabulary import DEFAULT_VOCABULARY, words_for
from cxr_fgbg.data.phantom import generate_phantom


def test_every_phantom_phrase_names_its_finding(tmp_path, tiny_tokenizer):
    summary = generate_phantom(tmp_path / "phantom", studies=120, seed=3, size=64, progress=False)
    rows = pd.read_csv(summary.ms_cxr_csv).drop_duplicates(["dicom_id", "category_name"])
    assert set(rows.category_name) == set(DEFAULT_VOCABULARY)  # all eight findings occur
    for row in rows.itertuples():
        spans = find_word_spans(tokenize_prompt(tiny_tokenizer, row.label_text, max_length=128),
                                words_for(row.category_name, DEFAULT_VOCABULARY))
        assert spans.token_indices, f"{row.category_name}: no vocabulary word in {row.label_text!r}"
