"""Softmax cross-entropy and accuracy for integer class labels."""
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy. logits: (N, K) float; labels: (N,) int in [0, K) -> scalar."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def top_k_accuracy(logits, labels, k=1):
    """Fraction of rows whose label scores among the k highest (ties counted in the label's favour).

    logits: (N, K); labels: (N,) int -> scalar.
    """
    label_score = jnp.take_along_axis(logits, labels[:, None], axis=1)
    rank = jnp.sum(logits > label_score, axis=1)
    return jnp.mean(rank < k)


def accuracy(logits, labels):
    """Top-1 accuracy: fraction of rows whose highest score is the label's. logits: (N, K); labels: (N,)."""
    return top_k_accuracy(logits, labels, 1)
