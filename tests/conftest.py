"""Test-session settings shared by every test module."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

# CLI runs in tests use a compilation cache of their own, never the user's ~/.cache.
os.environ.setdefault("GDBENCH_COMPILE_CACHE", tempfile.mkdtemp(prefix="gdbench-test-xla-"))
# The per-task feature classifiers of the sample-quality metrics: one cache per test session.
os.environ.setdefault("GDBENCH_FEATURE_CACHE", tempfile.mkdtemp(prefix="gdbench-test-features-"))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test (modules that must run offline
    use it: ``pytestmark = pytest.mark.usefixtures("no_network")``)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
