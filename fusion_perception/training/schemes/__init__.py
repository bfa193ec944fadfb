"""Training schemes: one class per ``scheme`` value behind one interface (``Scheme``), chosen once.

``build_scheme`` looks the configured name up in ``SCHEMES``; the trainer never tests the name.
"""

from __future__ import annotations

from .base import FusionObjective, Scheme, SchemeContext
from .bilevel import BilevelScheme
from .learned import LearnedLossScheme, ReFusionScheme, TDFusionScheme
from .plain import PlainScheme

__all__ = [
    "SCHEMES",
    "BilevelScheme",
    "FusionObjective",
    "LearnedLossScheme",
    "PlainScheme",
    "ReFusionScheme",
    "Scheme",
    "SchemeContext",
    "TDFusionScheme",
    "build_scheme",
]

SCHEMES: dict[str, type[Scheme]] = {
    cls.name: cls for cls in (PlainScheme, BilevelScheme, TDFusionScheme, ReFusionScheme)
}


def build_scheme(ctx: SchemeContext) -> Scheme:
    """The scheme ``ctx.cfg.scheme`` names (validated by ``TrainConfig.validate`` against
    ``SCHEME_NAMES``, which a test keeps equal to ``SCHEMES``), built with its own modules."""
    return SCHEMES[ctx.cfg.scheme](ctx)
