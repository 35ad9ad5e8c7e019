"""Loaders for the user's own data: an `.npz` with `x` (optional `label`), an image folder, a
token `.npz`, or a UTF-8 text file."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from difflab.data.validate import check_finite, check_labels, check_range, check_rank

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _require_file(path: str, what: str) -> None:
    if not path:
        raise ValueError(f"config.data.path must name {what}, got an empty path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config.data.path={path!r} does not exist (expected {what})")


def open_npz(path: str, name: str = "config.data.path"):
    """np.load of an .npz archive, without unpickling; anything else (an .npy, a pickle, a
    text file) is named as not an .npz instead of numpy's allow_pickle advice."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{name}={path!r} is not an .npz file (a zip archive of arrays, as np.savez "
            f"writes); its first bytes are {open(path, 'rb').read(8)!r}"
        )
    return np.load(path, allow_pickle=False)


def read_npz(path: str):
    """The arrays 'x' (non-empty) and, if present, 'label' of an .npz file, without unpickling."""
    _require_file(path, "an .npz file with an array 'x'")
    with open_npz(path) as f:
        if "x" not in f.files:
            raise ValueError(f"{path} must hold an array 'x', found {sorted(f.files)}")
        x = np.asarray(f["x"])
        label = np.asarray(f["label"]) if "label" in f.files else None
    if len(x) == 0:
        raise ValueError(f"{path}: array 'x' is empty (shape {x.shape})")
    return x, label


def read_text(path: str) -> str:
    """The UTF-8 text of a non-empty file."""
    _require_file(path, "a UTF-8 text file")
    with open(path, encoding="utf-8") as f:
        body = f.read()
    if not body:
        raise ValueError(f"config.data.path={path!r} is an empty text file")
    return body


def load_npz(path: str):
    """x [N, ...] float (vectors [N, D] or NHWC images in [-1, 1]) and optional int label [N]."""
    x, label = read_npz(path)
    check_rank(f"{path}['x']", x, (2, 4))
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{path}['x'] must be floating point, got dtype {x.dtype}")
    check_finite(f"{path}['x']", x)
    if x.ndim == 4:
        check_range(f"{path}['x'] (images)", x, -1.0, 1.0)
    return x.astype(np.float32), label


def load_image_folder(path: str):
    """Images under `path` (sub-folders = classes, sorted) as NHWC float32 in [-1, 1]."""
    from PIL import Image

    _require_file(path, "a folder of images")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    entries = (
        [
            (os.path.join(path, c, f), i)
            for i, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(path, c)))
        ]
        if classes
        else [(os.path.join(path, f), 0) for f in sorted(os.listdir(path))]
    )
    entries = [(f, i) for f, i in entries if f.lower().endswith(IMAGE_SUFFIXES)]
    if not entries:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {path!r}")
    images = [np.asarray(Image.open(f)) for f, _ in entries]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images under {path!r} must share one shape, got {sorted(shapes)}")
    x = np.stack(images).astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    x = x / 127.5 - 1.0
    label = np.array([i for _, i in entries], np.int32) if classes else None
    if label is not None:
        check_labels(f"labels of {path!r}", label, len(classes), len(x))
    return x, label


def read_h5ad(path: str, label_key: str = ""):
    """(X as a dense array, labels from obs[label_key] as category codes or None, gene names) of
    an AnnData .h5ad file; needs the optional `anndata` package (pip install -e ".[h5ad]")."""
    _require_file(path, "an AnnData .h5ad file")
    try:
        import anndata
    except ImportError as e:
        raise ImportError(
            f"reading {path!r} needs the optional package anndata: pip install -e '.[h5ad]'"
        ) from e
    adata = anndata.read_h5ad(path)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    if x.shape[0] == 0:
        raise ValueError(f"{path}: X is empty (shape {x.shape})")
    label = None
    if label_key:
        if label_key not in adata.obs:
            raise ValueError(
                f"config.data.label_key={label_key!r} is not a column of {path}'s obs; "
                f"found {sorted(adata.obs.columns)}"
            )
        label = np.asarray(adata.obs[label_key].astype("category").cat.codes, np.int32)
    return x, label, list(map(str, adata.var_names))
