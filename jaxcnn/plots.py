"""PNG figures of a training run: learning curves, misclassified examples, first-layer filters."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves(history, path):
    """Loss (train, test) and test accuracy per epoch. history: records with epoch, train_loss, test_loss,
    test_accuracy (as written by jaxcnn.train.fit)."""
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax1.legend()
    ax2.plot(epochs, [100 * r["test_accuracy"] for r in history], "o-", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    _save(fig, path)


def _grid(n, cols):
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def _show(ax, image):
    """image: (H, W, 1) or (H, W, 3), any range; shown scaled to [0, 1]."""
    image = np.asarray(image, np.float32)
    lo, hi = image.min(), image.max()
    image = (image - lo) / (hi - lo if hi > lo else 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)


def misclassified(images, labels, predictions, path, class_names=None, limit=40):
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


def filters(w, path):
    """First-layer conv kernels w: (KH, KW, C, O) with C = 1 (grey) or 3 (RGB), one tile per filter."""
    w = np.asarray(w)
    fig, axes = _grid(w.shape[-1], cols=min(w.shape[-1], 10))
    for ax, o in zip(axes, range(w.shape[-1])):
        _show(ax, w[..., o])
    fig.suptitle(f"{w.shape[-1]} learned {w.shape[0]}x{w.shape[1]} filters", fontsize=9)
    _save(fig, path)
