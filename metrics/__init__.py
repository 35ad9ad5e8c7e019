"""Sample-quality metrics: point-cloud distances (2-D / vectors) and a digits Frechet distance."""

from metrics import distances, frechet


def report(samples, dataset, n: int = 2000, seed: int = 0) -> dict:
    """The quality numbers for this kind of data, each next to its data-vs-data reference."""
    if dataset.name == "digits":
        return frechet.digits_report(samples, dataset, n, seed)
    if dataset.kind == "points":
        return distances.point_cloud_report(samples, dataset, n, seed)
    return {}
