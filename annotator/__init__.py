"""facemask-annotator: turn CCTV footage into a labeled mask / no-mask dataset and a better classifier."""

__version__ = "0.1.0"
