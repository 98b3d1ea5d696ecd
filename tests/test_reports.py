"""The report sectioner on real-world MIMIC-CXR quirks, and property tests of the normaliser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_fgbg.data.reports import extract_sections, normalize_section_name, normalize_text

TYPICAL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // ?pna

 COMPARISON:  ___

 FINDINGS:

 PA and lateral views of the chest. Heart size is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def test_typical_report_takes_impression_and_keeps_findings() -> None:
    result = extract_sections(TYPICAL)
    assert result.text == "No acute cardiopulmonary process."
    assert result.text_source == "impression"
    assert result.findings == "PA and lateral views of the chest. Heart size is normal."
    assert result.sections["indication"] == ["F with cough // ?pna"]
    assert result.sections["examination"] == ["CHEST (PA AND LAT)"]


@pytest.mark.parametrize(
    "header",
    ["CONCLUSION", "FINDINGS AND IMPRESSION", "FINDINGS/IMPRESSION", "IMPRESSON", "IMPRESION", "IMPRESSIONS"],
)
def test_impression_variants_and_typos(header: str) -> None:
    result = extract_sections(f"INDICATION: cough.\n\n{header}:\n Mild pulmonary edema.\n")
    assert result.text_source == "impression"
    assert result.text == "Mild pulmonary edema."


@pytest.mark.parametrize("header", ["FINIDNGS", "FINDNGS", "FINDING", "FINDINGS"])
def test_findings_typos_fall_back_to_findings(header: str) -> None:
    result = extract_sections(f"INDICATION: cough.\n\n{header}: Heart size is enlarged.\n")
    assert (result.text, result.text_source) == ("Heart size is enlarged.", "findings")


def test_section_name_normalisation() -> None:
    assert normalize_section_name("  Findings  and  Impression ") == "impression"
    assert normalize_section_name("IMPRESSSION") == "impression"  # not in the table: similarity
    assert normalize_section_name("INDICATION") == "indication"
    assert normalize_section_name("NDICATION") == "indication"  # the official table's slip, fixed
    assert normalize_section_name("PORTABLE CHEST") == "portable chest"


def test_last_impression_wins() -> None:
    text = "IMPRESSION: First read.\n\nFINDINGS: Stuff.\n\nIMPRESSION: Final read.\n"
    assert extract_sections(text).text == "Final read."


def test_numbered_list_and_placeholders_normalised() -> None:
    text = "IMPRESSION:\n 1.  Right lower lobe pneumonia.\n 2.  Small effusion, d/w Dr. ___ at ___.\n"
    result = extract_sections(text)
    assert result.text == "Right lower lobe pneumonia. Small effusion, d/w Dr. at."


def test_decimal_numbers_are_not_list_markers() -> None:
    assert normalize_text("1. Nodule measures 1.5 cm. 2) Stable.") == "Nodule measures 1.5 cm. Stable."


def test_addendum_at_top_is_separate_and_report_impression_used() -> None:
    text = (
        "                                 FINAL ADDENDUM\n ADDENDUM:  Findings discussed with Dr. ___.\n\n"
        " ______________________________________________________________________________\n" + TYPICAL
    )
    result = extract_sections(text)
    assert result.text == "No acute cardiopulmonary process."
    assert len(result.addenda) == 1
    assert "Findings discussed with Dr." in result.addenda[0]


def test_addendum_at_bottom_does_not_become_last_paragraph() -> None:
    text = (
        "The lungs are clear. No effusion.\n\nNo pneumothorax is seen.\n"
        "______________________________\nADDENDUM: Called to the floor at 10:00.\n"
    )
    result = extract_sections(text)
    assert result.text_source == "last_paragraph"
    assert result.text == "No pneumothorax is seen."
    assert result.addenda == ["ADDENDUM: Called to the floor at 10:00."]


def test_fallback_order_impression_findings_last_paragraph() -> None:
    no_impression = "INDICATION: cough.\n\nFINDINGS: Clear lungs.\n"
    assert extract_sections(no_impression).text_source == "findings"
    no_sections = "Chest radiograph.\n\nThe lungs are clear.\n\n  \n"
    result = extract_sections(no_sections)
    assert (result.text, result.text_source) == ("The lungs are clear.", "last_paragraph")


def test_empty_impression_uses_findings_and_empty_both_gives_none() -> None:
    result = extract_sections("FINDINGS: Clear lungs.\n\nIMPRESSION:\n\n")
    assert (result.text, result.text_source) == ("Clear lungs.", "findings")
    empty = extract_sections("INDICATION: cough.\n\nIMPRESSION:\n ___\n")
    assert (empty.text, empty.text_source) == ("", "none")
    assert empty.is_empty


def test_empty_report() -> None:
    result = extract_sections("")
    assert (result.text, result.text_source) == ("", "none")


def test_lowercase_colon_words_are_not_headers() -> None:
    result = extract_sections("IMPRESSION: Heart: normal size. Lungs: clear.\n")
    assert result.text == "Heart: normal size. Lungs: clear."


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_sectioner_never_crashes(text: str) -> None:
    result = extract_sections(text)
    assert result.text_source in {"impression", "findings", "last_paragraph", "none"}
    assert (result.text == "") == (result.text_source == "none")
    assert "___" not in result.text


report_alphabet = st.sampled_from(list("abcIMPRESSION FINDG:._\n\t 0123456789)(,"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet=report_alphabet, max_size=300)))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\n" not in once and once == once.strip()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=report_alphabet, max_size=300))
def test_sectioning_its_own_text_is_stable(text: str) -> None:
    chosen = extract_sections(text).text
    assert normalize_text(chosen) == chosen
