"""Figures: confusion matrices (paper Fig. 3) and frame-influence strips (Fig. 4) written as PNG and PDF."""

import numpy as np
import pytest
from PIL import Image

from tgdfer.figures import (DPI, confusion_figure, confusion_figures, figure_pixels, frame_strip_figure,
                            mean_confusion, row_percent, save_figure)


def test_row_percent_and_mean_over_folds():
    a = np.array([[3, 1], [0, 0]])
    b = np.array([[0, 2], [1, 1]])
    np.testing.assert_allclose(row_percent(a), [[75, 25], [np.nan, np.nan]])
    # fold means of per-fold row percentages; a class missing from a fold is averaged over the others
    np.testing.assert_allclose(mean_confusion([a, b]), [[37.5, 62.5], [50, 50]])


def _opened(png):
    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert img.std() > 5  # something is drawn
    return img


def test_confusion_figures_per_fold_and_mean(tmp_path):
    rng = np.random.default_rng(0)
    confs = {"fold1": rng.integers(0, 30, (7, 7)), "fold2": rng.integers(0, 30, (7, 7))}
    pngs = confusion_figures(confs, tmp_path)
    assert [p.name for p in pngs] == ["confusion_fold1.png", "confusion_fold2.png", "confusion_mean.png"]
    for png in pngs:
        assert Image.open(png).size == (round(5.6 * DPI), round(5.0 * DPI))
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
        _opened(png)
    assert confusion_figures({"test": confs["fold1"]}, tmp_path / "one") == [tmp_path / "one" / "confusion_test.png"]


def test_a_perfect_classifier_is_dark_on_the_diagonal_only(tmp_path):
    png, _ = save_figure(confusion_figure(np.diag([5, 4, 3, 2, 1, 6, 7]), "perfect"), tmp_path / "c")
    img = _opened(png).mean(axis=2)  # grey levels
    w, h = Image.open(png).size
    # axes span x 0.24..0.86, y 0.22..0.90 of the figure (top down: 0.10..0.78); 7 x 7 cells
    x0, x1, y0, y1 = 0.24 * w, 0.86 * w, 0.10 * h, 0.78 * h
    cell = lambda i, j: img[int(y0 + (i + 0.25) * (y1 - y0) / 7), int(x0 + (j + 0.2) * (x1 - x0) / 7)]
    assert all(cell(i, i) < 100 for i in range(7))  # 100 %: dark blue
    assert all(cell(i, (i + 3) % 7) > 240 for i in range(7))  # 0 %: white


@pytest.mark.parametrize("T, H, W", [(16, 112, 112), (8, 32, 48), (3, 40, 30)])
def test_frame_strip_size_and_colours(tmp_path, T, H, W):
    rng = np.random.default_rng(T)
    frames = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    influence = np.linspace(0, 1, T)
    fig = frame_strip_figure(frames, influence, np.arange(T) * 3, title="clip 00001")
    png, pdf = save_figure(fig, tmp_path / "strip")
    assert Image.open(png).size == figure_pixels(fig)
    assert pdf.read_bytes()[:4] == b"%PDF"
    img = _opened(png)
    w, h = Image.open(png).size
    assert w > h  # a strip
    # the influence row: purple (viridis 0) at the first frame, yellow (viridis 1) at the last
    ax = fig.axes[1].get_position()  # figure fraction, origin bottom left
    y = int((1 - (ax.y0 + ax.y1) / 2) * h)
    first, last = img[y, int((ax.x0 + 0.5 * ax.width / T) * w)], img[y, int((ax.x1 - 0.5 * ax.width / T) * w)]
    assert first[2] > first[1] and first[0] > first[1]  # purple: red and blue above green
    assert last[0] > 200 and last[1] > 200 and last[2] < 100  # yellow


def test_frame_strip_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="influence"):
        frame_strip_figure(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5))


def test_frame_strip_with_ground_truth_row(tmp_path):
    frames = np.full((6, 20, 20, 3), 128, np.uint8)
    truth = np.array([0, 0, 1, 1, 0, 0])
    fig = frame_strip_figure(frames, np.linspace(0, 1, 6), truth=truth)
    png, _ = save_figure(fig, tmp_path / "s")
    img = np.asarray(Image.open(png).convert("L")).astype(float)
    h, w = img.shape
    row = fig.axes[1].get_position()  # bottom row: the truth (black = in the episode)
    y = int((1 - (row.y0 + row.y1) / 2) * h)
    xs = [int((row.x0 + (t + 0.5) * row.width / 6) * w) for t in range(6)]
    assert [img[y, x] < 50 for x in xs] == [False, False, True, True, False, False]
    with pytest.raises(ValueError, match="truth"):
        frame_strip_figure(frames, np.zeros(6), truth=np.zeros(5))
