"""The embedded MIMIC-CXR / MS-CXR-shaped phantom with exact ground truth (see docs/phantom.md).

Public API: `generate_phantom(out_dir, studies, seed, size=512, progress=True) -> PhantomSummary`.
Imported lazily so that loading the config (which needs `settings`) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxr_fgbg.data.phantom.generate import PhantomSummary, generate_phantom

__all__ = ["PhantomSummary", "generate_phantom"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cxr_fgbg.data.phantom import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
