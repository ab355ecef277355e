"""Files and pixels: the crop store, the tensor cache, frames, detectors, blurring, plots. Imports core and data."""
