"""scripts/mutate's list still fits the code: every mutation's original text occurs exactly
once in its file and every covering test exists (nothing is run; scripts/mutate runs them)."""
from __future__ import annotations

import pytest
from devstack import mutate
from devstack.mutations import MUTATIONS

from .conftest import ROOT


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_mutation_still_applies_to_the_code_as_it_is(mutation):
    assert mutate.problem(mutation, ROOT) is None
    assert mutation.replacement != mutation.original


def test_the_list_covers_the_issues_invariants_with_unique_names():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names)) >= 16


def test_a_mutation_whose_text_moved_is_reported_not_skipped(tmp_path):
    moved = MUTATIONS[0]
    (tmp_path / moved.file).parent.mkdir(parents=True)
    (tmp_path / moved.file).write_text("the code moved elsewhere\n")
    assert mutate.problem(moved, tmp_path) == (
        f"mutation {moved.name}: original text not found in {moved.file}")
