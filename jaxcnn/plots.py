"""PNG figures: a training run's learning curves, misclassified examples and first-layer filters, and the class
heatmaps of a net slid over a larger image.

Figures are matplotlib `Figure` objects saved straight to files: no pyplot, so no backend is chosen or changed
(a notebook keeps its own).
"""
import math

import numpy as np
from matplotlib.figure import Figure


def _save(fig, path, tight=True):
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=120)


def curves(history: list[dict], path) -> None:
    """Loss (train, test) and test accuracy per epoch. history: records with epoch, train_loss, test_loss,
    test_accuracy (as written by jaxcnn.train.fit)."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax1.legend()
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in history], "o-", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    _save(fig, path)


def _grid(n, cols, tile=(1.3, 1.45), gap=None, title_inches=0.0):
    """A figure of ceil(n / cols) x cols tiles without axes -> (figure, flat axes). With `gap` (a fraction of a
    tile) the tiles are laid out with that space between them, rows and columns alike; else by tight_layout."""
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(tile[0] * cols, tile[1] * rows + title_inches))
    axes = fig.subplots(rows, cols, squeeze=False)
    if gap is not None:
        grid_height = tile[1] * rows
        fig.subplots_adjust(left=0, right=1, bottom=0, top=grid_height / (grid_height + title_inches),
                            wspace=gap, hspace=gap)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def _show(ax, image):
    """image: (H, W, 1) or (H, W, 3), any range; shown scaled to [0, 1]."""
    image = np.asarray(image, np.float32)
    lo, hi = image.min(), image.max()
    image = (image - lo) / (hi - lo if hi > lo else 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)


def misclassified(images, labels, predictions, path, class_names: list[str] | None = None, limit: int = 40) -> int:
    """The first `limit` test images whose prediction is wrong, titled 'label->prediction'.
    images: (N, H, W, C) uint8; labels, predictions: (N,) ints. Returns how many were wrong in all."""
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predictions))
    names = class_names or [str(i) for i in range(int(max(labels.max(), predictions.max())) + 1)]
    fig, axes = _grid(max(min(len(wrong), limit), 1), cols=10)
    for ax, i in zip(axes, wrong[:limit]):
        _show(ax, images[i])
        ax.set_title(f"{names[labels[i]]}->{names[predictions[i]]}", fontsize=7)
    fig.suptitle(f"{len(wrong)} misclassified of {len(labels)} (true->predicted)", fontsize=9)
    _save(fig, path)
    return len(wrong)


def filters_figure(w) -> Figure:
    """The figure of `filters`: one square tile per filter, a tenth of a tile apart in both directions."""
    w = np.asarray(w)
    fig, axes = _grid(w.shape[-1], cols=min(w.shape[-1], 10), tile=(1.1, 1.1), gap=0.1, title_inches=0.4)
    for ax, o in zip(axes, range(w.shape[-1])):
        _show(ax, w[..., o])
    fig.suptitle(f"{w.shape[-1]} learned {w.shape[0]}x{w.shape[1]} filters", fontsize=9)
    return fig


def filters(w, path) -> None:
    """First-layer conv kernels w: (KH, KW, C, O) with C = 1 (grey) or 3 (RGB), one tile per filter."""
    _save(filters_figure(w), path, tight=False)


def heatmap(canvas, probs, window: tuple[int, int], stride: tuple[int, int], placed, path) -> None:
    """The canvas beside one map per class of the softmax probability at each position, each drawn over the
    dimmed canvas at the centres of the crops, with the digits of that class circled.

    Args:
      canvas: (S, S, 1) uint8 image the net slid over.
      probs: (P, Q, classes) probabilities, position (i, j) for the crop at (i * stride[0], j * stride[1]).
      window, stride: the net's training size (h, w) and sliding stride (h, w), in pixels.
      placed: [{'label', 'row', 'col'}] for each digit on the canvas (top-left corners).
      path: the PNG to write.
    """
    (wh, ww), (sh, sw), size = window, stride, canvas.shape[0]
    p, q, classes = probs.shape
    extent = (ww / 2 - sw / 2, ww / 2 + (q - 0.5) * sw, wh / 2 + (p - 0.5) * sh, wh / 2 - sh / 2)
    cols = (classes + 1) // 2
    fig = Figure(figsize=(5 + 2 * cols, 5), layout="constrained")
    grid = fig.add_gridspec(2, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(canvas[..., 0], cmap="gray")
    for d in placed:
        ax.text(d["col"], d["row"], str(d["label"]), color="yellow", fontsize=8, va="top")
    ax.set_title(f"{size}x{size} canvas, test digits")
    ax.axis("off")
    for k in range(classes):
        a = fig.add_subplot(grid[k // cols, 2 + k % cols])
        a.imshow(canvas[..., 0], cmap="gray", vmax=4 * 255)
        image = a.imshow(probs[..., k], extent=extent, vmin=0, vmax=1, cmap="magma", alpha=0.8)
        for d in (d for d in placed if d["label"] == k):
            a.plot(d["col"] + ww / 2, d["row"] + wh / 2, "o", ms=12, mfc="none", mec="cyan")
        a.set(xlim=(0, size), ylim=(size, 0), xticks=[], yticks=[], title=f"p({k})")
    fig.colorbar(image, ax=fig.axes[1:], shrink=0.8, label="softmax probability of the crop centred here")
    fig.savefig(path, dpi=110)
