"""Section a MIMIC-CXR free-text report and pick the text used to condition the diffusion model.

Faithful to the official MIMIC-CXR sectioner (MIT-LCP/mimic-cxr, ``section_parser.py``): a section
header is an upper-case name followed by a colon at the start of a line; the names are mapped to a
small vocabulary (``CONCLUSION`` and ``FINDINGS AND IMPRESSION`` count as impression, the typos seen
in the corpus are fixed); the conditioning text is the LAST impression, else the last findings,
else the last paragraph of the report. Addenda (blocks separated by a line of underscores) are
recognised and kept apart, so the last-paragraph fallback comes from the report itself.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

__all__ = [
    "SECTION_ALIASES",
    "ReportSections",
    "extract_sections",
    "normalize_section_name",
    "normalize_text",
]

# The official sectioner's table (lower-case name -> canonical name), plus a few variants.
SECTION_ALIASES: dict[str, str] = {
    "preamble": "preamble",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "findings / impression": "impression",
    "findings/ impression": "impression",
    "impression and findings": "impression",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "findings": "findings",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "reference findings": "findings",
    "chest, two views": "findings",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "indication": "indication",
    "idication": "indication",
    # The official table maps "ndication" to impression; it is a truncated INDICATION, so we do not.
    "ndication": "indication",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "clinical indication": "indication",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "technique": "technique",
    "history": "history",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "pfi": "history",
    "notification": "notification",
    "recommendation(s)": "recommendations",
    "recommendations": "recommendations",
    "recommendation": "recommendations",
    "addendum": "addendum",
    "date": "date",
    "comment": "comment",
    "wet read": "wet read",
    "wetread": "wet read",
}

# Typos not in the table are caught by similarity to these names (only the two sections we use).
_FUZZY_TARGETS = ("impression", "findings")
_FUZZY_CUTOFF = 0.8

# A header: start of a line, an upper-case name (letters first), a colon, then whitespace or the end.
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z0-9 ()/,&'\-]{0,48}?)[ \t]*:(?=\s|$)", re.MULTILINE)
# A line of underscores separates an addendum from the report.
_SEPARATOR = re.compile(r"^[ \t]*_{5,}[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"_{3,}")
# A list marker ("1.", "2)") at the start of the text, of a line, or after the end of a sentence.
_LIST_MARKER = re.compile(r"(^|\n|(?<=[.:;])[ \t]+)[ \t]*(?:\(?\d{1,2}[.)](?=\s))+[ \t]*")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class ReportSections:
    """What the sectioner found in one report.

    ``text`` is the normalised conditioning text and ``text_source`` says where it came from:
    ``impression``, ``findings``, ``last_paragraph`` or ``none`` (nothing usable).
    """

    impression: str
    findings: str
    last_paragraph: str
    text: str
    text_source: str
    sections: dict[str, list[str]] = field(default_factory=dict)
    addenda: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.text


@functools.lru_cache(maxsize=4096)
def normalize_section_name(name: str) -> str:
    """Map a raw header (any case, extra spaces) to the canonical section name.

    Unknown names are returned in lower case, as the official sectioner does; close misspellings of
    IMPRESSION and FINDINGS (one or two letters off) are corrected.
    """
    key = " ".join(name.lower().split())
    if key in SECTION_ALIASES:
        return SECTION_ALIASES[key]
    compact = key.replace(" ", "")
    if len(compact) >= 6:
        match = difflib.get_close_matches(compact, _FUZZY_TARGETS, n=1, cutoff=_FUZZY_CUTOFF)
        if match:
            return match[0]
    return key


def normalize_text(text: str) -> str:
    """Conditioning-text normalisation: drop ``___`` placeholders and list numbers, one line of text.

    Idempotent: applying it twice gives the same result as once (it is iterated to a fixed point).
    """
    current = text
    for _ in range(20):
        step = _normalize_once(current)
        if step == current:
            break
        current = step
    return current


def _normalize_once(text: str) -> str:
    text = _PLACEHOLDER.sub(" ", text)
    text = _LIST_MARKER.sub(lambda m: m.group(1) if m.group(1) == "\n" else " ", text)
    text = " ".join(text.split())
    # A placeholder removed before punctuation leaves "with , cough"; close the gap.
    return re.sub(r" (?=[,.;:])", "", text)


def _split_addenda(text: str) -> tuple[list[str], list[str]]:
    """Split on underscore lines; blocks that announce an addendum are addenda, the rest the report."""
    blocks = [block for block in _SEPARATOR.split(text) if block.strip()]
    body, addenda = [], []
    for block in blocks:
        first_line = block.strip().splitlines()[0].upper()
        if "ADDENDUM" in first_line:
            addenda.append(block)
        else:
            body.append(block)
    if not body:  # only addenda: let the last-paragraph fallback still see their text
        body = list(addenda)
    return body, addenda


def _sections_of(text: str) -> list[tuple[str, str]]:
    """(canonical name, raw text) in order of appearance; text before the first header is ``preamble``."""
    headers = list(_HEADER.finditer(text))
    result = []
    start_of_first = headers[0].start() if headers else len(text)
    if text[:start_of_first].strip():
        result.append(("preamble", text[:start_of_first]))
    for k, match in enumerate(headers):
        end = headers[k + 1].start() if k + 1 < len(headers) else len(text)
        result.append((normalize_section_name(match.group(1)), text[match.end() : end]))
    return result


def _last_paragraph(blocks: list[str]) -> str:
    """The last non-empty paragraph of the report body, without a leading header."""
    for block in reversed(blocks):
        paragraphs = [p for p in _PARAGRAPH.split(block) if p.strip()]
        for paragraph in reversed(paragraphs):
            stripped = _HEADER.sub("", paragraph, count=1)
            value = normalize_text(stripped)
            if value:
                return value
    return ""


def extract_sections(text: str) -> ReportSections:
    """Section a report and choose the conditioning text (last impression > findings > last paragraph).

    The last-paragraph fallback is used only when the report has neither an impression nor a findings
    header; a report whose impression and findings headers are both empty gives ``text_source='none'``,
    which the indexer records as a skipped report rather than conditioning on, say, the indication.
    """
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    body, addenda = _split_addenda(text)
    ordered: list[tuple[str, str]] = []
    for block in _SEPARATOR.split(text):
        ordered.extend(_sections_of(block))
    sections: dict[str, list[str]] = {}
    for name, raw in ordered:
        sections.setdefault(name, []).append(normalize_text(raw))

    def last_nonempty(name: str) -> str:
        return next((value for value in reversed(sections.get(name, [])) if value), "")

    impression = last_nonempty("impression")
    findings = last_nonempty("findings")
    last_paragraph = _last_paragraph(body)
    if impression:
        chosen, source = impression, "impression"
    elif findings:
        chosen, source = findings, "findings"
    elif "impression" not in sections and "findings" not in sections and last_paragraph:
        chosen, source = last_paragraph, "last_paragraph"
    else:
        chosen, source = "", "none"
    return ReportSections(
        impression=impression,
        findings=findings,
        last_paragraph=last_paragraph,
        text=chosen,
        text_source=source,
        sections=sections,
        addenda=[normalize_text(block) for block in addenda],
    )
