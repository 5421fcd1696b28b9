"""Reports from stored runs: statistics, tables, figures. Imports results, never JAX."""

from gdbench.reports.build import EmptyRunError, build_report

__all__ = ["EmptyRunError", "build_report"]
