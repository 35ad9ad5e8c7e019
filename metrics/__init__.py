"""Sample-quality metrics: point-cloud distances (2-D / vectors), a digits Frechet distance, token
likelihoods and n-grams, and count statistics."""

import numpy as np

from difflab.metrics import counts, distances, frechet, tokens


def sampling_labels(dataset, n: int, seed: int = 0):
    """Labels for n conditional samples: those of the data half that `report` compares against
    (rows [n, 2n) of the reference draw), so samples and that half have the same class mix."""
    labels = dataset.reference_labels(2 * n, seed) if hasattr(dataset, "reference_labels") else None
    if labels is None:
        return None
    half = labels[n : 2 * n] if len(labels) >= 2 * n else labels[len(labels) // 2 :]
    return np.resize(half, n)


def report(samples, dataset, n: int = 2000, seed: int = 0) -> dict:
    """The quality numbers for this kind of data, each next to its data-vs-data reference."""
    if hasattr(dataset, "to_counts"):  # counts modelled through another family's view
        samples, dataset = dataset.to_counts(samples), dataset.base
    if dataset.kind == "counts":
        return counts.count_report(samples[:n], dataset.reference(2 * n, seed))
    if dataset.name == "digits":
        return frechet.digits_report(samples, dataset, n, seed)
    if dataset.name == "digits_tokens":
        from difflab.data.tokens import tokens_to_digits

        return frechet.digits_report(samples, dataset, n, seed, tokens_to_digits)
    if getattr(dataset, "law", None) is not None:
        return tokens.markov_report(samples, dataset.law, dataset.reference(n, seed))
    if hasattr(dataset, "stream"):
        return tokens.text_report(samples, dataset, n, seed)
    if dataset.kind == "points":
        return distances.point_cloud_report(samples, dataset, n, seed)
    return {}
