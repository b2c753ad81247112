"""Softmax cross-entropy and accuracy for integer class labels.

Labels must lie in [0, K) for K classes. Called on concrete arrays (eagerly) the functions check that and raise
ValueError; inside jax.jit they cannot, and an out-of-range label gives a meaningless number (NaN, or a loss
as if the label's score were 0): check labels where data enters, as jaxcnn.datasets.load and the Trainer do.
"""
import jax
import jax.numpy as jnp
import numpy as np

REDUCTIONS = ("mean", "none")


def check_labels(labels, num_classes: int) -> None:
    """ValueError unless every label is an integer in [0, num_classes); tracers (inside jit) pass unchecked."""
    if isinstance(labels, jax.core.Tracer):
        return
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) for {num_classes} classes, found "
                         f"{labels.min()}..{labels.max()}")


def _reduce(values, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return values.mean() if reduction == "mean" else values


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, reduction: str = "mean") -> jax.Array:
    """Softmax cross-entropy.

    Args:
      logits: (N, K) float.
      labels: (N,) int in [0, K).
      reduction: 'mean' (a scalar) or 'none' (one value per row, (N,)).
    """
    check_labels(labels, logits.shape[-1])
    label_scores = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return _reduce(jax.nn.logsumexp(logits, axis=1) - label_scores, reduction)


def top_k_accuracy(logits: jax.Array, labels: jax.Array, k: int = 1, reduction: str = "mean") -> jax.Array:
    """Whether each row's label scores among the k highest (ties counted in the label's favour).

    Args:
      logits: (N, K) float.
      labels: (N,) int in [0, K).
      k: how many of the highest scores count.
      reduction: 'mean' (the fraction of rows, a scalar) or 'none' ((N,) floats, 1.0 or 0.0).
    """
    check_labels(labels, logits.shape[-1])
    label_score = jnp.take_along_axis(logits, labels[:, None], axis=1)
    rank = jnp.sum(logits > label_score, axis=1)
    return _reduce((rank < k).astype(logits.dtype), reduction)


def accuracy(logits: jax.Array, labels: jax.Array, reduction: str = "mean") -> jax.Array:
    """Top-1 accuracy: whether each row's highest score is its label's (see top_k_accuracy)."""
    return top_k_accuracy(logits, labels, 1, reduction)
