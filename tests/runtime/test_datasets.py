"""The split contract: disjoint, deterministic, and the only source of held-out frames."""

import numpy as np
import pytest

from edge_runtime import datasets


def test_splits_are_deterministic_and_disjoint():
    a = datasets.load("shapes", "validation", 8)
    b = datasets.load("shapes", "validation", 8)
    np.testing.assert_array_equal(a.images, b.images)
    t = datasets.load("shapes", "test", 8)
    assert not any(np.array_equal(x, y) for x in a.images for y in t.images)
    assert len(set(datasets.SPLIT_SEEDS.values())) == len(datasets.SPLITS)


def test_bad_task_and_split_are_named():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        datasets.load("nope", "test", 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        datasets.load("shapes", "dev", 1)
