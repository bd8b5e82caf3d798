"""Model builders: ``build(card)`` returns the card's QKeras model (or its float twin).

``model.kind`` selects the architecture: ``transformer`` (hwflow.nn.transformer, jet tagging) or
``conformer`` (hwflow.nn.conformer, keyword spotting). TensorFlow is imported only when a model is
built, so importing this package stays cheap.
"""

from __future__ import annotations

from ..util import HwflowError

KINDS = ("transformer", "conformer")


def build(card, quantized: bool = True, **kwargs):
    """Return the card's keras.Model: QKeras when ``quantized`` (and quant.enabled), else the float twin."""
    kind = card["model"]["kind"]
    if kind == "transformer":
        from .transformer import build_transformer

        return build_transformer(card, quantized, **kwargs)
    if kind == "conformer":
        from .conformer import build_conformer

        return build_conformer(card, quantized, **kwargs)
    raise HwflowError(f"unknown model.kind '{kind}': expected one of {', '.join(KINDS)}")


def custom_objects() -> dict:
    """Return every custom object (QKeras + hwflow layers) needed to load a saved hwflow model."""
    from .layers import get_custom_objects

    objs = dict(get_custom_objects())
    try:  # conformer modules register their own layers when present
        from . import conformer

        if hasattr(conformer, "get_custom_objects"):
            objs.update(conformer.get_custom_objects())
    except ImportError:
        pass
    return objs
