"""Test-session settings shared by every test module."""

from __future__ import annotations

import os
import tempfile

# CLI runs in tests use a compilation cache of their own, never the user's ~/.cache.
os.environ.setdefault("GDBENCH_COMPILE_CACHE", tempfile.mkdtemp(prefix="gdbench-test-xla-"))
# The per-task feature classifiers of the sample-quality metrics: one cache per test session.
os.environ.setdefault("GDBENCH_FEATURE_CACHE", tempfile.mkdtemp(prefix="gdbench-test-features-"))
