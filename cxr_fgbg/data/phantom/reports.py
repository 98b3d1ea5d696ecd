"""MIMIC-style free-text reports for phantom studies, with the quirks a report sectioner must survive.

The section that carries the conclusion (IMPRESSION, or CONCLUSION, or FINDINGS AND IMPRESSION, or
FINDINGS when a report has no impression) states exactly the findings present, one sentence each,
with side and size words, plus a few negations of absent findings. The sentence of a finding
(without its final period) is its MS-CXR `label_text`. Sentences are never broken across lines,
so a `label_text` is always a verbatim substring of the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from cxr_fgbg.data.phantom.findings import CATEGORIES, FindingSpec

CHEXPERT_COLUMNS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)
# How each category is named in the phantom's reports (used by tests and by anyone checking a report).
KEYWORDS = {
    "Atelectasis": r"atelecta", "Cardiomegaly": r"cardiomegaly|enlarge", "Consolidation": r"consolidat",
    "Edema": r"edema", "Lung Opacity": r"opacit", "Pleural Effusion": r"effusion", "Pneumonia": r"pneumonia",
    "Pneumothorax": r"pneumothora",
}
NEGATION = re.compile(r"^(no|there is no|without)\b", re.IGNORECASE)

_SEVERITY = {"small": "mild", "moderate": "moderate", "large": "severe"}
_SIZE_WORDS = {"small": ("small",), "moderate": ("moderate", "moderate-sized"), "large": ("large",)}
_PARENCHYMA_SIZE = {"small": ("small", "focal"), "moderate": ("moderate",), "large": ("large", "extensive")}
_LOBES = {
    ("right", "upper"): "in the right upper lobe", ("right", "middle"): "in the right middle lobe",
    ("right", "lower"): "in the right lower lobe", ("left", "upper"): "in the left upper lobe",
    ("left", "middle"): "in the lingula", ("left", "lower"): "in the left lower lobe",
    ("bilateral", "upper"): "in both upper lobes", ("bilateral", "middle"): "in both mid lungs",
    ("bilateral", "lower"): "at both lung bases",
}
_NEGATIONS = (
    (("Pneumothorax",), "No pneumothorax."),
    (("Pleural Effusion",), "No pleural effusion."),
    (("Pleural Effusion", "Pneumothorax"), "No pleural effusion or pneumothorax."),
    (("Consolidation",), "No focal consolidation."),
    (("Pneumonia",), "No evidence of pneumonia."),
    (("Edema",), "No pulmonary edema."),
    (("Cardiomegaly",), "No cardiomegaly."),
)
_NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.", "No acute intrathoracic abnormality.",
    "Normal chest radiograph.", "No acute cardiopulmonary abnormality.",
)
_INDICATIONS = (
    "shortness of breath", "cough and fever", "chest pain", "hypoxia", "evaluate for pneumonia",
    "dyspnea on exertion", "history of heart failure", "preoperative evaluation", "fall, assess for injury",
)


@dataclass
class Report:
    """A report, the sentence stating each finding and the CheXpert-style labels it implies."""

    text: str
    label_texts: dict[str, str]
    conclusion: str  # text of the section that states the findings
    style: str
    chexpert: dict[str, float | None] = field(default_factory=dict)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _choice(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def finding_sentence(spec: FindingSpec, rng: np.random.Generator) -> str:
    """One sentence stating `spec` with its side and size (no other category's words in it)."""
    cat, side, size = spec.category, spec.side, spec.size
    if cat == "Cardiomegaly":
        sev = _SEVERITY[size]
        adverb = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[sev]
        return _choice(rng, (f"{_cap(sev)} cardiomegaly.", f"The heart is {adverb} enlarged.",
                             f"{_cap(sev)} enlargement of the cardiac silhouette."))
    if cat == "Edema":
        sev = _SEVERITY[size]
        return _choice(rng, (f"{_cap(sev)} bilateral perihilar edema.", f"{_cap(sev)} pulmonary edema, bilateral.",
                             f"There is {sev} bilateral pulmonary edema."))
    if cat == "Pleural Effusion":
        word = _choice(rng, _SIZE_WORDS[size])
        if side == "bilateral":
            return _choice(rng, (f"{_cap(word)} bilateral pleural effusions.",
                                 f"There are {word} bilateral pleural effusions."))
        return _choice(rng, (f"{_cap(word)} {side} pleural effusion.", f"{_cap(word)} {side}-sided pleural effusion.",
                             f"There is a {word} {side} pleural effusion."))
    if cat == "Pneumothorax":
        word = _choice(rng, _SIZE_WORDS[size])
        if side == "bilateral":
            return f"{_cap(word)} bilateral pneumothoraces."
        return _choice(rng, (f"{_cap(word)} {side} pneumothorax.", f"{_cap(word)} {side} apical pneumothorax.",
                             f"There is a {word} {side}-sided pneumothorax."))
    if cat == "Atelectasis":
        if spec.variant == "plate":
            word = _choice(rng, ("minor", "small"))
            where = {"lower": "at the {s} base", "middle": "in the {s} mid lung"}[spec.zone or "lower"]
            place = (where.replace("the {s} base", "both bases").replace("the {s} mid lung", "both mid lungs")
                     if side == "bilateral" else where.format(s=side))
            return f"{_cap(word)} plate-like atelectasis {place}."
        word = _choice(rng, _PARENCHYMA_SIZE[size])
        if side == "bilateral":
            return f"{_cap(word)} bibasilar atelectasis."
        return _choice(rng, (f"{_cap(word)} {side} basilar atelectasis.",
                             f"{_cap(word)} atelectasis at the {side} base."))
    word = _choice(rng, _PARENCHYMA_SIZE[size])
    place = _LOBES[(side, spec.zone or "lower")]
    plural = side == "bilateral"
    if cat == "Consolidation":
        return _choice(rng, (f"{_cap(word)} consolidation {place}.", f"{_cap(word)} area of consolidation {place}.",
                             f"There is {word} consolidation {place}."))
    if cat == "Pneumonia":
        return _choice(rng, (f"{_cap(word)} pneumonia {place}.", f"Findings compatible with {word} pneumonia {place}."))
    noun = "opacities" if plural else "opacity"
    return _choice(rng, (f"{_cap(word)} ill-defined {noun} {place}.", f"{_cap(word)} hazy {noun} {place}.",
                         f"{_cap(word)} airspace {noun} {place}."))


def _negations(rng: np.random.Generator, present: set[str], most: int) -> list[str]:
    options = [text for cats, text in _NEGATIONS if not set(cats) & present]
    rng.shuffle(options)
    out: list[str] = []
    for text in options[: int(rng.integers(0, most + 1))]:
        if not any(_overlap(text, other) for other in out):
            out.append(text)
    return out


def _overlap(a: str, b: str) -> bool:
    return any(re.search(k, a, re.I) and re.search(k, b, re.I) for k in KEYWORDS.values())


def _pack(sentences: list[str], width: int = 78) -> list[str]:
    """Lines of whole sentences (MIMIC wraps at about 78 columns; we never split a sentence)."""
    lines: list[str] = []
    for sentence in sentences:
        if lines and len(lines[-1]) + 1 + len(sentence) <= width:
            lines[-1] += " " + sentence
        else:
            lines.append(" " + sentence)
    return lines


def write_report(specs: list[FindingSpec], rng: np.random.Generator, *, view: str, has_lateral: bool,
                 age: int, female: bool) -> Report:
    """Write the report of one study; `specs` are the findings actually drawn."""
    present = {s.category for s in specs}
    positives = [finding_sentence(s, rng) for s in specs]
    negations = _negations(rng, present, 2)
    style = str(rng.choice(["impression", "conclusion", "combined", "no_impression"], p=[0.78, 0.1, 0.07, 0.05]))
    numbered = style in ("impression", "conclusion") and rng.random() < 0.2
    conclusion = positives + negations if specs else [_choice(rng, _NORMAL_IMPRESSIONS), *negations]

    descriptive = []
    if "Cardiomegaly" not in present:
        descriptive.append(_choice(rng, ("Heart size is normal.", "The cardiac silhouette is within normal limits.")))
    descriptive.append(_choice(rng, ("The mediastinal and hilar contours are unremarkable.",
                                     "Mediastinal contours are normal.")))
    if not present & {"Lung Opacity", "Consolidation", "Pneumonia", "Atelectasis", "Edema"}:
        descriptive.append("The lungs are clear.")
    findings_sentences = descriptive + [finding_sentence(s, rng) for s in specs]
    findings_sentences += [n for n in _negations(rng, present, 2) if n not in findings_sentences]
    findings_sentences.append(_choice(rng, ("No acute osseous abnormality.", "The osseous structures are intact.")))

    exam = "CHEST (PORTABLE AP)" if view == "AP" else ("CHEST (PA AND LAT)" if has_lateral else "CHEST (PA)")
    technique = {"CHEST (PORTABLE AP)": "Single portable AP view of the chest.",
                 "CHEST (PA AND LAT)": "PA and lateral views of the chest.",
                 "CHEST (PA)": "PA view of the chest."}[exam]
    who = "woman" if female else "man"
    lines = ["                                 FINAL REPORT", f" EXAMINATION:  {exam}", " ",
             f" INDICATION:  ___ year old {who} with {_choice(rng, _INDICATIONS)}.  // ?acute process", " ",
             f" TECHNIQUE:  {technique}", " ",
             f" COMPARISON:  {_choice(rng, ('___.', 'None.', 'Chest radiograph from ___.', 'Prior study of ___.'))}",
             " "]
    if style == "combined":
        lines += [" FINDINGS AND IMPRESSION:", " ", *_pack(descriptive[:1] + conclusion)]
        section = descriptive[:1] + conclusion
    else:
        lines += [" FINDINGS:", " ", *_pack(findings_sentences if style != "no_impression" else
                                           descriptive + conclusion + findings_sentences[-1:])]
        section = descriptive + conclusion + findings_sentences[-1:] if style == "no_impression" else conclusion
        if style != "no_impression":
            typo = rng.random() < 0.04
            header = "CONCLUSION:" if style == "conclusion" else ("IMPRESSON:" if typo else "IMPRESSION:")
            body = [f" {i}. {s}" for i, s in enumerate(conclusion, 1)] if numbered else _pack(conclusion)
            lines += [" ", f" {header}", " ", *body]
    if rng.random() < 0.07:  # addendum, separated by a line of underscores, at the top or the bottom
        addendum = [" ADDENDUM:", " Findings were communicated to Dr. ___ by telephone at ___ on ___."]
        rule = " " + "_" * 78
        lines = [*addendum, rule, " ", *lines] if rng.random() < 0.5 else [*lines, " ", rule, " ", *addendum]
    text = "\n".join(lines) + "\n"
    label_texts = {spec.category: sentence.rstrip(".") for spec, sentence in zip(specs, positives, strict=True)}
    chexpert: dict[str, float | None] = dict.fromkeys(CHEXPERT_COLUMNS)
    for cat in CATEGORIES:
        if cat in present:
            chexpert[cat] = 1.0
        elif any(re.search(KEYWORDS[cat], s, re.I) for s in conclusion + findings_sentences):
            chexpert[cat] = 0.0
    if not specs:
        chexpert["No Finding"] = 1.0
    return Report(text, label_texts, " ".join(section), style, chexpert)
