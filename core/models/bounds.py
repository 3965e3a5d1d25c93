"""What a browser's choices may name, held to the operator's bounds (core/runtime/shares.py): the one check of a
config's data and model for whoever asks. The training calls apply it to every run a browser makes
(core/execution/interface.py); pages and links ask it earlier only to say a refusal in a sentence.

It lives here, not in shares.py, because judging a model's size needs the backbones' registry (this tier);
shares.py, below every other tier, holds the bounds themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.models.backbones import LIBRARIES, parameter_count
from core.runtime import shares
from core.runtime.shares import Caller

if TYPE_CHECKING:
    from core.data.datasets import DataConfig
    from core.models.backbones import ModelConfig


def check_model_size(backbone: str, by: Caller = shares.ANY_BROWSER) -> None:
    """NotShared when a browser names, from a library's whole list (torchvision:…, timm:…), a model larger than
    the operator allows (shares.max_model_params); the registered backbones and the operator's own are allowed.
    Counted without building it (ValueError, in words, for a model the library does not have)."""
    if by.is_browser and backbone.split(":", 1)[0] in LIBRARIES:
        shares.check_model_size(backbone, parameter_count(backbone))


def check_choices(by: Caller, data: DataConfig | None = None, model: ModelConfig | None = None) -> None:
    """NotShared, in words, when `by` (a browser) names data or a model the operator does not share or allow: a
    folder it may not read, a weights file it may not read, a library model over the size limit. The command line
    is bound by none of these."""
    if not by.is_browser:
        return
    if data is not None and data.source == "folder" and data.path:
        shares.check_readable(data.path, "folder", by)
    if model is not None:
        shares.check_weights(model.weights, by)
        check_model_size(model.backbone, by)
