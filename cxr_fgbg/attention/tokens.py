"""Word -> token positions, read from the tokenization of the WHOLE prompt.

Tokenizing a word on its own gives different tokens than the same word inside a sentence (BPE merges
depend on the neighbours, CLIP marks word ends), so the positions come from the prompt's own offsets:
every occurrence of the word as a whole word (case- and punctuation-insensitive, never inside a longer
word such as "effusions" for "effusion"), and every token whose characters overlap that occurrence.
The start token, the end token and the padding are never returned.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cxr_fgbg.errors import ConfigError

__all__ = ["TokenizedPrompt", "WordMatch", "WordSpans", "find_word_spans", "tokenize_prompt", "word_pattern"]

_ALNUM = r"[^\W_]"  # a letter or digit in any script


@dataclass(frozen=True)
class TokenizedPrompt:
    """The prompt as the text encoder sees it, without padding (start token first, end token last)."""

    prompt: str
    input_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    max_length: int
    truncated: bool

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def covered_until(self) -> int:
        """Character position up to which the prompt survived truncation."""
        ends = [end for (_, end), sp in zip(self.offsets, self.special, strict=True) if not sp]
        return max(ends, default=0)


@dataclass(frozen=True)
class WordMatch:
    word: str
    start: int
    end: int
    token_indices: tuple[int, ...]


@dataclass(frozen=True)
class WordSpans:
    """Every occurrence of the requested words and the union of their token positions."""

    matches: tuple[WordMatch, ...]
    missing: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()
    token_indices: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        indices = sorted({i for m in self.matches for i in m.token_indices})
        object.__setattr__(self, "token_indices", tuple(indices))

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.word for m in self.matches))

    @property
    def reason(self) -> str | None:
        """Why nothing can be summed (None when some token was found)."""
        if self.token_indices:
            return None
        if self.truncated:
            return f"word(s) {', '.join(self.truncated)} truncated away (prompt longer than the token limit)"
        return f"none of the words ({', '.join(self.missing)}) occurs in the prompt"


def tokenize_prompt(tokenizer: Any, prompt: str, max_length: int | None = None) -> TokenizedPrompt:
    """Tokenize as the diffusion pipeline does (truncated to the model's limit) and keep the offsets."""
    limit = int(max_length or tokenizer.model_max_length)
    try:
        enc = tokenizer(
            prompt, truncation=True, max_length=limit, return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
    except NotImplementedError as exc:  # slow (Python) tokenizers have no offsets
        raise ConfigError(
            f"the tokenizer {type(tokenizer).__name__} gives no character offsets; a fast tokenizer is needed"
        ) from exc
    full = tokenizer(prompt, truncation=False, add_special_tokens=True)["input_ids"]
    ids = list(enc["input_ids"])
    return TokenizedPrompt(
        prompt=prompt,
        input_ids=tuple(ids),
        tokens=tuple(tokenizer.convert_ids_to_tokens(ids)),
        offsets=tuple((int(s), int(e)) for s, e in enc["offset_mapping"]),
        special=tuple(bool(s) for s in enc["special_tokens_mask"]),
        max_length=limit,
        truncated=len(full) > len(ids),
    )


def word_pattern(word: str) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive pattern; a phrase's words may be separated by any non-letters."""
    parts = re.findall(rf"{_ALNUM}+", word)
    if not parts:
        return None
    body = r"[\W_]+".join(re.escape(p) for p in parts)
    return re.compile(rf"(?<!{_ALNUM}){body}(?!{_ALNUM})", re.IGNORECASE)


def find_word_spans(tokenized: TokenizedPrompt, words: Sequence[str] | str) -> WordSpans:
    """Token positions of every whole-word occurrence of `words` in the prompt."""
    if isinstance(words, str):
        words = [words]
    covered = tokenized.covered_until
    matches: list[WordMatch] = []
    missing: list[str] = []
    truncated: list[str] = []
    for word in words:
        pattern = word_pattern(word)
        if pattern is None:
            continue
        found_any = False
        cut = False
        for hit in pattern.finditer(tokenized.prompt):
            start, end = hit.span()
            if end > covered:  # the occurrence (or its last sub-words) was cut off by truncation
                cut = True
                continue
            indices = tuple(
                i for i, ((s, e), sp) in enumerate(zip(tokenized.offsets, tokenized.special, strict=True))
                if not sp and e > s and e > start and s < end
            )
            if indices:
                matches.append(WordMatch(word, start, end, indices))
                found_any = True
        if not found_any:
            (truncated if cut else missing).append(word)
    return WordSpans(tuple(matches), tuple(missing), tuple(truncated))
