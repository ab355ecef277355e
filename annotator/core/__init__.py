"""Pure code, arrays in and out: geometry, tracking, the footage keeper, sampling, metrics. Imports only the standard library, NumPy, SciPy and core."""
