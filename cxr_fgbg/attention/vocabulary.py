"""Finding -> words: which words of a report stand for each of the eight MS-CXR classes.

The lists follow the public chest-distillation code (which uses "cardiac" for Cardiomegaly; we add
"heart" and "enlarged" for phrasings like "the heart is mildly enlarged"), plus plural forms and a few
phrases (a phrase such as "enlarged heart" matches its words in sequence). Matching is whole-word and
case-insensitive (see `tokens.py`), so "effusion" never matches inside "effusions": both are listed where
both occur.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_VOCABULARY", "build_vocabulary", "words_for"]

DEFAULT_VOCABULARY: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis", "atelectases", "atelectatic"),
    "Cardiomegaly": (
        "cardiomegaly", "enlarged heart", "heart enlargement", "enlarged cardiac silhouette",
        "cardiac enlargement", "enlargement of the cardiac silhouette", "cardiac", "heart", "enlarged",
    ),
    "Consolidation": ("consolidation", "consolidations", "consolidative"),
    "Edema": ("edema", "oedema"),
    "Lung Opacity": ("opacity", "opacities", "opacification", "opacifications"),
    "Pleural Effusion": ("effusion", "effusions", "pleural"),
    "Pneumonia": ("pneumonia", "pneumonias"),
    "Pneumothorax": ("pneumothorax", "pneumothoraces"),
}


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def build_vocabulary(
    extra: Mapping[str, Sequence[str]] | None = None, replace: bool = False
) -> dict[str, tuple[str, ...]]:
    """The built-in vocabulary extended by `extra` (or only `extra` when `replace`), keyed by class name."""
    vocabulary: dict[str, list[str]] = {} if replace else {k: list(v) for k, v in DEFAULT_VOCABULARY.items()}
    by_key = {_key(name): name for name in vocabulary}
    for name, words in (extra or {}).items():
        target = by_key.get(_key(name), name)
        by_key[_key(name)] = target
        current = vocabulary.setdefault(target, [])
        current.extend(w for w in words if w.strip() and w.strip().lower() not in {c.lower() for c in current})
    return {name: tuple(words) for name, words in vocabulary.items()}


def words_for(category: str, vocabulary: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """The words of one class (case- and underscore-insensitive name); KeyError naming the known classes."""
    vocabulary = vocabulary if vocabulary is not None else DEFAULT_VOCABULARY
    for name, words in vocabulary.items():
        if _key(name) == _key(category):
            return tuple(words)
    raise KeyError(f"no words for finding {category!r}; known: {', '.join(vocabulary)} "
                   "(add it under localize.vocabulary in the config)")
