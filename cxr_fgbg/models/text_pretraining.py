"""Brief masked-language-model pre-training of the tiny CLIP text encoder on report impressions.

Why: a randomly initialised, frozen text encoder gives the U-Net nothing to attend to (in a CPU trial a
tiny LDM conditioned through one localised findings at pixel AUROC 0.53). Predicting masked words of the
training impressions from their context is label-free with respect to the images (it reads only the
report text, as RoentGen's CLIP was pre-trained on text/image pairs before being frozen), and it shapes
the encoder's outputs so that different findings get different, stable representations.

CLIP's text transformer is causal, so a masked token is predicted from the words to its LEFT; the
masked position is replaced by the tokenizer's unknown token (CLIP tokenizers have no mask token, and
adding one would change the vocabulary the pipeline sees). The prediction head is discarded afterwards:
only the `CLIPTextModel` is saved.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from cxr_fgbg.errors import ConfigError, InputDataError
from cxr_fgbg.models.settings import TextPretrainSettings
from cxr_fgbg.seeding import torch_generator

__all__ = ["MlmHead", "TextPretrainReport", "mask_tokens", "mlm_loss", "pretrain_text_encoder"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextPretrainReport:
    mode: str
    steps: int
    texts: int
    loss_before: float | None
    loss_after: float | None
    accuracy_after: float | None

    def as_dict(self) -> dict:
        return asdict(self)


class MlmHead(nn.Module):
    """The small prediction head of BERT-style MLM (dense, GELU, LayerNorm, vocabulary projection)."""

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size))
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))


def mask_tokens(
    input_ids: torch.Tensor, tokenizer: CLIPTokenizer, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked ids, labels with -100 where not masked). Only word tokens are masked, at least one per text."""
    special = torch.tensor(sorted({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}))
    candidate = ~torch.isin(input_ids, special)
    draw = torch.rand(input_ids.shape, generator=generator) < probability
    chosen = candidate & draw
    # guarantee one masked word per text that has any: pick a random candidate where none was drawn
    scores = torch.rand(input_ids.shape, generator=generator).masked_fill(~candidate, -1.0)
    forced = torch.zeros_like(chosen)
    forced[torch.arange(len(input_ids)), scores.argmax(dim=1)] = True
    chosen |= forced & candidate & ~chosen.any(dim=1, keepdim=True)
    masked = input_ids.masked_fill(chosen, tokenizer.unk_token_id)
    labels = input_ids.masked_fill(~chosen, -100)
    return masked, labels


def mlm_loss(
    text_encoder: CLIPTextModel, head: MlmHead, masked: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over masked tokens, fraction of masked tokens predicted right)."""
    hidden = text_encoder(masked).last_hidden_state
    logits = head(hidden)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    picked = labels != -100
    accuracy = (logits.argmax(-1)[picked] == labels[picked]).float().mean()
    return loss, accuracy


def pretrain_text_encoder(
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    texts: Sequence[str],
    settings: TextPretrainSettings,
    seed: int,
    progress: bool = True,
) -> TextPretrainReport:
    """Pre-train `text_encoder` in place (mode 'mlm'), then freeze it. Returns losses on a fixed masking."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if settings.mode == "none" or settings.steps == 0:
        text_encoder.requires_grad_(False).eval()
        return TextPretrainReport(settings.mode, 0, len(texts), None, None, None)
    if text_encoder.config.num_hidden_layers == 0:
        raise ConfigError(
            "model.text_pretraining.mode=mlm needs model.tiny.text_layers >= 1: an encoder without transformer "
            "layers cannot see the context of a masked word. Use text_pretraining.mode=none (and "
            "text_pretraining.train_jointly=true to learn the embeddings during fine-tuning)."
        )
    if not texts:
        raise InputDataError("text pre-training: no non-empty training impressions to learn from")

    ids = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    torch.manual_seed(seed)  # head initialisation
    head = MlmHead(text_encoder.config.hidden_size, text_encoder.config.vocab_size)
    params = list(text_encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.01)
    batches = torch_generator(seed, "text-pretraining", "batches")
    masking = torch_generator(seed, "text-pretraining", "masks")

    eval_ids = ids[: min(len(ids), 256)]
    eval_masked, eval_labels = mask_tokens(eval_ids, tokenizer, settings.mask_probability,
                                           torch_generator(seed, "text-pretraining", "eval"))
    loss_before, _ = _evaluate(text_encoder, head, eval_masked, eval_labels)

    text_encoder.requires_grad_(True).train()
    bar = tqdm(range(settings.steps), desc="text encoder (MLM)", disable=not progress, leave=False)
    for step in bar:
        batch = ids[torch.randint(len(ids), (settings.batch_size,), generator=batches)]
        masked, labels = mask_tokens(batch, tokenizer, settings.mask_probability, masking)
        loss, _ = mlm_loss(text_encoder, head, masked, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    loss_after, accuracy = _evaluate(text_encoder, head, eval_masked, eval_labels)
    text_encoder.requires_grad_(False).eval()
    log.info("text encoder MLM: loss %.3f -> %.3f (masked-token accuracy %.2f) over %d steps",
             loss_before, loss_after, accuracy, settings.steps)
    return TextPretrainReport("mlm", settings.steps, len(texts), loss_before, loss_after, accuracy)


@torch.no_grad()
def _evaluate(text_encoder: CLIPTextModel, head: MlmHead, masked: torch.Tensor, labels: torch.Tensor):
    was_training = text_encoder.training
    text_encoder.eval()
    loss, accuracy = mlm_loss(text_encoder, head, masked, labels)
    text_encoder.train(was_training)
    value = float(loss)
    return (value if math.isfinite(value) else float("nan")), float(accuracy)
