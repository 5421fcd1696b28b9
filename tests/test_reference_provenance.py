"""Every committed reference run was made from a clean, committed tree.

A number a paper cites from ``results/reference/`` must be traceable to a commit: a run made
with uncommitted changes (its manifest's ``git_dirty``) cannot be, so it fails here until it
is made again from a clean commit (``make reference``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
MANIFESTS = sorted(REFERENCE.glob("*/manifest.json")) + sorted(
    REFERENCE.glob("*/*/manifest.json")  # runs on an accelerator: reference/<device>/<suite>
)
#: Reference runs known to come from a dirty tree, to be made again from a clean commit.
KNOWN_DIRTY: dict[str, str] = {}


def params():
    for path in MANIFESTS:
        name = path.parent.relative_to(REFERENCE).as_posix()
        marks = ()
        if name in KNOWN_DIRTY:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_DIRTY[name])
        yield pytest.param(path, id=name, marks=marks)


def test_there_are_reference_runs():
    assert MANIFESTS, f"no reference run under {REFERENCE}"


@pytest.mark.parametrize("manifest", list(params()))
def test_reference_run_was_made_from_a_clean_commit(manifest):
    prov = json.loads(manifest.read_text()).get("provenance", {})
    assert prov.get("git_commit"), f"{manifest}: no git commit recorded"
    assert prov.get("git_dirty") is False, (
        f"{manifest} was made from a tree with uncommitted changes (git_dirty "
        f"{prov.get('git_dirty')!r}); make it again from a clean commit"
    )
