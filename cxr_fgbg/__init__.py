"""cxr-fgbg: localisers and segmenters from text-to-image latent diffusion models, without pixel labels.

The method is Dombrowski et al., ICCV 2023 ("Foreground-Background Separation through Concept
Distillation from Generative Image Foundation Models"). Stages live in sub-packages (`data`,
`models`, `training`, `attention`, `masks`, `segmentation`, `evaluation`); each reads the files the
previous stage wrote. The command line (`cxr_fgbg.cli`) is a thin layer on top and is never imported
by the library.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxr-fgbg")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
