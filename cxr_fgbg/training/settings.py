"""Config section `finetune`: RoentGen-style fine-tuning and the foreground/background objective."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class FinetuneSettings(StrictModel):
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate (RoentGen: 5e-5).")
    steps: int = Field(1000, ge=1, description="Optimiser steps.")
