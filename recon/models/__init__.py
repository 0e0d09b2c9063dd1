"""Learned reconstruction models: a code-conditioned, continuous-time video decoder.

>>> from recon.models import build_model
>>> model = build_model("tiny")
>>> model.config.variant
'tiny'
"""

from recon.models.codevideo import (
    BASE,
    TINY,
    CodeVideoNet,
    ModelConfig,
    build_model,
    code_features,
    count_macs,
    pad_code,
)

__all__ = [
    "BASE",
    "TINY",
    "CodeVideoNet",
    "ModelConfig",
    "build_model",
    "code_features",
    "count_macs",
    "pad_code",
]
