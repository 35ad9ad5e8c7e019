"""PNG figures: 2-D scatter plots, image grids, count statistics, and the loss curve."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure


def figure(*grid, figsize):
    """A figure and its axes, drawn off screen: pyplot (and the user's backend, in a notebook)
    is never touched."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def log_scale(ax, axis: str = "y") -> None:
    """A log axis with plain-text tick labels (0.01, 1, 100; minor ones when it spans under a
    decade). matplotlib's default 10^k labels are mathtext, typeset anew for every figure: half
    the time of drawing the count statistics (0.62 s a figure; 0.31 s with these)."""
    getattr(ax, f"set_{axis}scale")("log")
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_formatter(ticker.LogFormatter())
    which.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))


def wrapped(title: str, fig) -> str:
    """The title broken into lines that fit the figure's width (about 11 characters an inch at
    the default 12 pt), so that long settings (steering, guidance) are not cut off."""
    width = max(20, int(fig.get_figwidth() * 11))
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def frame_limit(reference) -> float:
    """The half-width of the square frame: the data's largest |coordinate| plus 20%, rounded up
    to a multiple of 0.5, so every plot of the same data shares its axes."""
    return float(np.ceil(np.max(np.abs(np.asarray(reference))) * 1.2 * 2) / 2)


def scatter(samples, path: str, title: str = "", reference=None, lim: float | None = None):
    """Samples (and optionally data) as a 2-D scatter plot in a frame fixed by the data's range;
    samples outside the frame are counted in the title, never dropped silently. Returns the
    figure (saved to path)."""
    samples = np.asarray(samples)
    fig, ax = figure(figsize=(5, 5))
    if reference is not None:
        ref = np.asarray(reference)
        ax.scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.3, c="tab:gray", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5, c="tab:blue", label="samples")
    if lim is None:
        lim = frame_limit(samples if reference is None else reference)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    outside = int(np.sum(np.any(np.abs(samples[:, :2]) > lim, axis=1)))
    note = f"\n({outside} of {len(samples)} samples outside the frame)" if outside else ""
    ax.set_title(wrapped(title + note, fig))
    # below the frame, where it hides no data (inside, it covered a checkerboard cell)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, markerscale=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def class_rows(images, labels, cols: int):
    """Images regrouped one row per class (up to `cols` each, blank tiles where a class has
    fewer) and the classes in row order."""
    classes = np.unique(labels)
    blank = np.full_like(images[:1], -1.0)
    rows = []
    for c in classes:
        mine = images[labels == c][:cols]
        rows.append(np.concatenate([mine, np.repeat(blank, cols - len(mine), 0)]))
    return np.concatenate(rows), classes


def image_grid(images, path: str, title: str = "", cols: int = 16, labels=None):
    """NHWC images in [-1, 1] tiled into one grid (values outside are shown clipped); with
    labels, one row per class, named on the left. Returns the figure (saved to path)."""
    images = np.asarray(images)
    classes = None
    if labels is not None:
        images, classes = class_rows(images, np.asarray(labels), cols)
    n = len(images) - len(images) % cols if len(images) >= cols else len(images)
    images = images[:n]
    cols = min(cols, n)
    rows = n // cols
    images = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    h, w, c = images.shape[1:]
    grid = images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * h, cols * w, c)
    fig, ax = figure(figsize=(cols * 0.5 + 1.0, rows * 0.5 + 0.9))
    shown = (np.clip(grid, -1, 1) + 1) / 2
    ax.imshow(
        shown[..., 0] if c == 1 else shown,
        cmap="gray" if c == 1 else None,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    if classes is None:
        ax.axis("off")
    else:
        ax.set_xticks([])
        ax.set_yticks((np.arange(rows) + 0.5) * h - 0.5, [f"class {k}" for k in classes])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    ax.set_title(wrapped(title, fig))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def running_mean(values, window: int):
    """Trailing means of `window` consecutive values (len(values) - window + 1 of them)."""
    c = np.cumsum(np.concatenate([[0.0], np.asarray(values, np.float64)]))
    return (c[window:] - c[:-window]) / window


def loss_curve(records: list[dict], path: str, key: str = "loss"):
    """The training loss against the step, log-scaled when positive: the logged values (with
    markers when there are few: one point is still visible) and, from 5 points, their running
    mean over a twentieth of them. Returns the figure (saved to path), None without points."""
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), float)]
    if not pts:
        return
    steps, values = (np.asarray(v) for v in zip(*pts, strict=True))
    fig, ax = figure(figsize=(6, 4))
    few = len(values) < 30
    ax.plot(steps, values, c="tab:blue", alpha=1.0 if few else 0.35, marker="o" if few else None,
            ms=4, label=key)  # fmt: skip
    if len(values) >= 5:
        window = max(2, len(values) // 20)
        mean = running_mean(values, window)
        ax.plot(steps[window - 1 :], mean, c="tab:orange", lw=2, label=f"mean of {window}")
        ax.legend()
    if min(values) > 0:
        log_scale(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_samples(
    samples,
    path: str,
    kind: str,
    title: str = "",
    reference=None,
    lim: float | None = None,
    labels=None,
) -> None:
    """A scatter plot for 2-D points (in the frame `lim`), an image grid for images (one row per
    class with labels)."""
    if kind == "images":
        if labels is not None:
            image_grid(samples, path, title, labels=labels)
        else:
            image_grid(samples[:128], path, title)
    else:
        scatter(samples, path, title, reference, lim)


def count_statistics(samples: dict, reference, path: str, title: str = "") -> None:
    """Per-feature mean, variance and zero fraction of each model's samples (y) against the data
    (x), one colour per entry of `samples` ({name: counts [N, D]})."""
    ref = np.asarray(reference, np.float64)
    stats = {
        "mean": lambda x: x.mean(0),
        "variance": lambda x: x.var(0),
        "zero fraction": lambda x: (x == 0).mean(0),
    }
    fig, axes = figure(1, 3, figsize=(13, 4.3))
    for ax, (label, fn) in zip(axes, stats.items(), strict=True):
        r = fn(ref)
        for name, x in samples.items():
            ax.scatter(r, fn(np.asarray(x, np.float64)), s=6, alpha=0.6, label=name)
        lo, hi = max(r.min(), 1e-3), max(r.max(), 1e-2)
        ax.plot([lo, hi], [lo, hi], c="k", lw=0.8)
        if label != "zero fraction":
            log_scale(ax, "x")
            log_scale(ax, "y")
        ax.set_xlabel(f"data {label} per feature")
        ax.set_ylabel(f"sample {label}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), markerscale=3)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 * ((len(labels) + 2) // 3), 1, 1))
    fig.savefig(path, dpi=120)
