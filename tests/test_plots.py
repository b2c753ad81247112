"""jaxcnn.plots: the figures are drawn without pyplot, and the filter tiles keep apart."""
import io

import matplotlib
import numpy as np

from jaxcnn import plots


def test_filter_tiles_are_apart_in_rows_and_columns():
    fig = plots.filters_figure(np.random.default_rng(0).normal(size=(5, 5, 1, 20)))
    fig.savefig(io.BytesIO(), format="png")  # lays the tiles out (square images shrink their axes)
    width, height = fig.get_size_inches()
    box = [ax.get_position() for ax in fig.axes]  # 2 rows of 10
    column_gap = (box[1].x0 - box[0].x1) * width
    row_gap = (box[0].y0 - box[10].y1) * height
    tile = box[0].width * width
    assert 0.05 * tile < row_gap < 0.2 * tile and 0.05 * tile < column_gap < 0.2 * tile


def test_figures_leave_the_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    plots.curves([{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1, "test_accuracy": 0.5},
                  {"epoch": 2, "train_loss": 0.5, "test_loss": 0.6, "test_accuracy": 0.8}], tmp_path / "c.png")
    plots.filters(np.ones((5, 5, 3, 4)), tmp_path / "f.png")
    assert matplotlib.get_backend() == backend
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in ("c.png", "f.png"))
