"""Figures say what they show: a loss curve with one logged point is visible and a long one has
its running mean; long titles wrap inside the figure; the scatter legend sits outside the data's
frame; digit grids name each row's class."""

import numpy as np

from difflab import data
from difflab.training import plots


def window_extents(fig, *artists):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def test_a_single_logged_loss_is_drawn_and_many_get_a_running_mean(tmp_path):
    fig = plots.loss_curve([{"step": 50, "loss": 0.9}], str(tmp_path / "one.png"))
    (line,) = fig.axes[0].get_lines()
    assert line.get_marker() == "o" and len(line.get_xdata()) == 1
    records = [{"step": 10 * i, "loss": 1.0 / i} for i in range(1, 201)]
    fig = plots.loss_curve(records, str(tmp_path / "many.png"))
    raw, mean = fig.axes[0].get_lines()
    assert len(mean.get_xdata()) == 200 - 10 + 1  # window 200 // 20
    np.testing.assert_allclose(mean.get_ydata()[0], np.mean(1.0 / np.arange(1, 11)))


def test_titles_wrap_and_the_legend_leaves_the_frame(tmp_path):
    x = np.random.default_rng(0).uniform(-2, 2, (500, 2))
    title = "flow_checkerboard step 2000: em, 50 steps, SMC reward_target1--1_x2_diff, label 3"
    fig = plots.scatter(x, str(tmp_path / "s.png"), title, x, 2.5)
    ax = fig.axes[0]
    assert "\n" in ax.get_title()
    title_box, figure_box = window_extents(fig, ax.title, fig)
    assert title_box.x0 >= figure_box.x0 and title_box.x1 <= figure_box.x1
    legend_box, frame_box = window_extents(fig, ax.get_legend(), ax.patch)
    assert legend_box.y1 <= frame_box.y0  # below the frame: it covers no data


def test_digit_grids_have_one_row_per_class(tmp_path):
    digits = data.digits(0)
    fig = plots.image_grid(digits.x[:200], str(tmp_path / "d.png"), "t", labels=digits.label[:200])
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == [f"class {k}" for k in range(10)]
