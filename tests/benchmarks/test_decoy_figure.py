"""The decoy figure says which class each map led to, and how to read the map colours."""

import numpy as np

from benchmarks import decoy


def test_panels_name_the_prediction_and_the_figure_has_a_colour_bar(tmp_path):
    rng = np.random.default_rng(0)
    n = 2
    images = (rng.random((n, 32, 32, 3)) * 255).astype(np.uint8)
    masks = np.zeros((n, 32, 32), bool)
    masks[:, 8:20, 8:20] = True
    maps = [rng.random((n, 4, 4)).astype(np.float32) for _ in range(3)]
    labels, pb, pf, pa = [0, 1], [2, 1], [0, 1], [0, 0]
    classes = ["coat", "bag", "boot"]
    fig = decoy.decoy_figure(images, masks, *maps, labels, pb, pf, pa, classes)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert "map before\npredicted: boot (wrong)" in titles
    assert "corrected map, no retraining\npredicted: bag (right)" in titles
    assert "image, true class: coat" in titles
    assert len(fig.axes) == 4 * n + 1  # the panels and one colour bar, labelled
    assert "attention" in fig.axes[-1].get_ylabel()
    decoy._figure(tmp_path / "f.png", images, masks, *maps, labels, pb, pf, pa, classes)
    assert (tmp_path / "f.png").stat().st_size > 1000
