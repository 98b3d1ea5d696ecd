"""A BPE tokenizer trained offline on report text, wrapped as a CLIP tokenizer.

Real CLIP tokenizers split rare medical words ("pneumothorax") into sub-words; a small vocabulary
trained on the phantom's impressions reproduces that, so the word -> tokens mapping of the attention
stage is exercised for real. CLIP conventions are kept (start/end tokens, end token as padding, `</w>`
word-end suffix) so that `StableDiffusionPipeline` treats it like the original.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<|unk|>"
WORD_END = "</w>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 600, max_length: int = 64, min_frequency: int = 2
) -> CLIPTokenizer:
    """Train a lower-casing BPE tokenizer on `texts` and wrap it as a `CLIPTokenizer`."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN, end_of_word_suffix=WORD_END))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, UNK_TOKEN],
        end_of_word_suffix=WORD_END,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
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
