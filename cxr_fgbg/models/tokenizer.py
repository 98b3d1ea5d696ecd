"""A BPE tokenizer trained offline on report text, wrapped as a CLIP tokenizer.

Real CLIP tokenizers split rare medical words ("pneumothorax") into sub-words; a small vocabulary
trained on the phantom's impressions reproduces that, so the word -> tokens mapping of the attention
stage is exercised for real. CLIP conventions are kept (start/end tokens, end token as padding, `</w>`
word-end suffix) so that `StableDiffusionPipeline` treats it like the original.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<|unk|>"
WORD_END = "</w>"


# Words of the eight MS-CXR classes (chest-distillation's word list, singular forms): the bundle report
# states how each is split, because the attention stage sums the maps of a word's sub-word tokens.
DISEASE_WORDS = (
    "atelectasis", "cardiomegaly", "consolidation", "edema", "opacity", "effusion", "pneumonia", "pneumothorax",
)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 600,
    max_length: int = 64,
    min_frequency: int = 2,
    max_token_length: int | None = None,
) -> CLIPTokenizer:
    """Train a lower-casing BPE tokenizer on `texts` and wrap it as a `CLIPTokenizer`.

    `max_token_length` caps a token's length in characters (the `</w>` suffix not counted): on a small
    corpus it is what makes long rare words split, since the vocabulary would otherwise hold them whole.
    The merges are learned by :func:`learn_merges` (deterministic); normalisation, pre-tokenisation and
    encoding are the `tokenizers` library's.
    """
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    specials = [BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]
    alphabet = sorted({symbol for word in words for symbol in _symbols(word)})
    budget = max(0, vocab_size - len(specials) - len(alphabet))
    merges = learn_merges(words, budget, min_frequency, max_token_length)
    tokens = [*specials, *alphabet]
    known = set(tokens)
    for a, b in merges:
        if a + b not in known:
            tokens.append(a + b)
            known.add(a + b)
    model = models.BPE(
        vocab={token: i for i, token in enumerate(tokens)}, merges=merges, unk_token=UNK_TOKEN,
        end_of_word_suffix=WORD_END,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.add_special_tokens(specials)
    bos, eos = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}", special_tokens=[(BOS_TOKEN, bos), (EOS_TOKEN, eos)]
    )
    tokenizer.decoder = decoders.BPEDecoder(suffix=WORD_END)
    return CLIPTokenizer(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=max_length,
    )


def learn_merges(
    words: Mapping[str, int], count: int, min_frequency: int = 2, max_token_length: int | None = None
) -> list[tuple[str, str]]:
    """Byte-pair merges of `words` (word -> frequency): most frequent pair first, ties in string order.

    Written out rather than `tokenizers.trainers.BpeTrainer` because that trainer breaks ties between
    equally frequent pairs by hash-map order when an end-of-word suffix is used, so the same corpus gave
    different vocabularies (and token ids) from run to run; a bundle must be reproducible from its seed.
    """
    seqs = [_symbols(word) for word in words]
    freqs = list(words.values())
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in itertools.pairwise(seq):
            pairs[pair] += freqs[i]
            where[pair].add(i)

    def fits(pair: tuple[str, str]) -> bool:
        return max_token_length is None or len((pair[0] + pair[1]).removesuffix(WORD_END)) <= max_token_length

    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        candidates = [(n, p) for p, n in pairs.items() if n >= min_frequency and fits(p)]
        if not candidates:
            break
        best = min(candidates, key=lambda c: (-c[0], c[1]))[1]
        merges.append(best)
        for i in sorted(where.pop(best, ())):
            seq = seqs[i]
            for pair in itertools.pairwise(seq):
                pairs[pair] -= freqs[i]
            merged, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == best:
                    merged.append(seq[j] + seq[j + 1])
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            seqs[i] = merged
            for pair in itertools.pairwise(merged):
                pairs[pair] += freqs[i]
                where[pair].add(i)
        pairs = Counter({p: n for p, n in pairs.items() if n > 0})
    return merges


def _symbols(word: str) -> list[str]:
    """A word as BPE starts it: its characters, the last one carrying the end-of-word suffix."""
    return [*word[:-1], word[-1] + WORD_END] if word else []


def word_pieces(tokenizer: CLIPTokenizer, words: Iterable[str]) -> dict[str, list[str]]:
    """How each word is tokenised on its own (for reports; the attention stage tokenises whole prompts)."""
    return {word: tokenizer.tokenize(word) for word in words}

