"""Shared job logic ("jobkit"): what several jobs need, in modules that import no job."""
