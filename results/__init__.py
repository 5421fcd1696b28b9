"""Result schema, run store and provenance. Imports no JAX and none of bench, models, tasks."""

from gdbench.results.schema import SCHEMA_VERSION, SchemaError, SchemaVersionError, validate
from gdbench.results.store import (
    CorruptPartError,
    NotARunError,
    is_run_dir,
    load,
    read_manifest,
    write_grid,
    write_manifest,
)

__all__ = [
    "SCHEMA_VERSION",
    "CorruptPartError",
    "NotARunError",
    "SchemaError",
    "SchemaVersionError",
    "is_run_dir",
    "load",
    "read_manifest",
    "validate",
    "write_grid",
    "write_manifest",
]
