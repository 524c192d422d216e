"""group_mean: the softmax averaged over a patient's / lesion's images."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.metrics.groups import group_mean


def test_group_mean_averages_per_group() -> None:
    probs = np.array(
        [
            [0.9, 0.1, 0.0],  # lesion a
            [0.5, 0.3, 0.2],  # lesion b
            [0.1, 0.1, 0.8],  # lesion a
            [0.2, 0.6, 0.2],  # lesion b
            [0.3, 0.3, 0.4],  # lesion b
        ]
    )
    labels = np.array([0, 1, 0, 1, 1])
    gp, gl, ids = group_mean(probs, labels, ["a", "b", "a", "b", "b"])
    assert ids == ["a", "b"]
    np.testing.assert_allclose(gp[0], [0.5, 0.1, 0.4])
    np.testing.assert_allclose(gp[1], [1.0 / 3, 1.2 / 3, 0.8 / 3])
    np.testing.assert_array_equal(gl, [0, 1])
    np.testing.assert_allclose(gp.sum(axis=1), 1.0)


def test_group_label_is_the_majority_label() -> None:
    probs = np.full((5, 3), 1 / 3)
    labels = np.array([2, 1, 2, 2, 0])
    gp, gl, ids = group_mean(probs, labels, ["p1", "p1", "p1", "p2", "p2"])
    assert ids == ["p1", "p2"]
    assert gl[0] == 2  # two votes for 2, one for 1
    assert gl[1] in (0, 2)  # a tie: either label, but one of the group's own
    assert gp.shape == (2, 3)


def test_images_without_a_group_are_their_own_group() -> None:
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    labels = np.array([1, 0, 0, 1])
    gp, gl, ids = group_mean(probs, labels, [None, "g", "g", None])
    assert len(ids) == 3
    assert "g" in ids
    by_id = dict(zip(ids, range(len(ids)), strict=True))
    np.testing.assert_allclose(gp[by_id["g"]], [0.65, 0.35])
    assert gl[by_id["g"]] == 0
    singles = sorted(i for i in ids if i != "g")
    assert len(set(singles)) == 2  # two distinct singleton groups, not one "None" group
    rows = sorted(gp[by_id[i]].tolist() for i in singles)
    assert rows == sorted([[0.2, 0.8], [0.1, 0.9]])
    assert sorted(gl[by_id[i]] for i in singles) == [1, 1]


def test_all_singletons_return_the_input() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=7)
    labels = rng.integers(0, 4, 7)
    gp, gl, ids = group_mean(probs, labels, [None] * 7)
    assert len(ids) == 7
    order = np.argsort([p.tobytes() for p in probs])  # compare as sets of rows
    got = np.argsort([p.tobytes() for p in gp])
    np.testing.assert_allclose(gp[got], probs[order])
    np.testing.assert_array_equal(gl[got], labels[order])


def test_group_count_and_shapes_on_random_data() -> None:
    rng = np.random.default_rng(1)
    n, k = 60, 5
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, n)
    groups = [f"lesion_{i // 3:03d}" for i in range(n)]  # three photos per lesion
    gp, gl, ids = group_mean(probs, labels, groups)
    assert gp.shape == (20, k) and gl.shape == (20,) and len(ids) == 20
    for j, gid in enumerate(ids):
        members = [i for i, g in enumerate(groups) if g == gid]
        np.testing.assert_allclose(gp[j], probs[members].mean(axis=0))
        assert gl[j] == np.bincount(labels[members], minlength=k).argmax()
    assert gp.sum(axis=1) == pytest.approx(np.ones(20))
