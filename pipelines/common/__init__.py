"""Shared job logic: what several jobs need. Imports no job."""
