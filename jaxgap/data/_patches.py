"""RGB patches of photographs shipped inside installed wheels (see :func:`jaxgap.data.load`,
``"patches"``; the photographs, their licences and the counts per split: ``docs/patches.md``).

The photographs are read from the installed packages' folders (scikit-learn's
``datasets/images``, scikit-image's ``data``) with Pillow; neither package is imported and
nothing is downloaded. Patches are the cells of a non-overlapping grid, so two patches never
share a pixel.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import NamedTuple

import numpy as np

from jaxgap._checks import positive_float
from jaxgap.data._dataset import MIN_VAL, Dataset, check_num_val, split_indices, val_size

__all__ = ["PATCH_PHOTOS", "PHOTOS", "load_patches"]


class Photo(NamedTuple):
    """A photograph shipped inside a package: where it is and which split it feeds."""

    name: str
    package: str  # the importable package holding it: "sklearn" or "skimage"
    path: str  # relative to the package's folder
    split: str  # "train" or "val" under split="photo"
    credit: str  # licence and author (docs/patches.md has the sources)


#: The photographs, in label order: a patch's label is the index of its photograph here.
#: scikit-learn's two come first so that ``photos="sklearn"`` keeps the same ids.
PHOTOS = (
    Photo("china", "sklearn", "datasets/images/china.jpg", "train",
          "CC BY 2.0, danielbuechele (Flickr)"),
    Photo("flower", "sklearn", "datasets/images/flower.jpg", "val",
          "CC BY 2.0, vultilion (Flickr)"),
    Photo("astronaut", "skimage", "data/astronaut.png", "train", "public domain, NASA"),
    Photo("chelsea", "skimage", "data/chelsea.png", "val", "CC0, Stefan van der Walt"),
    Photo("coffee", "skimage", "data/coffee.png", "train", "CC0, Rachel Michetti"),
    Photo("rocket", "skimage", "data/rocket.jpg", "train", "public domain, SpaceX"),
)

#: Photograph names by label: ``PATCH_PHOTOS[label]``.
PATCH_PHOTOS = tuple(p.name for p in PHOTOS)

_PHOTO_SETS = {"all": ("sklearn", "skimage"), "sklearn": ("sklearn",)}
_SPLITS = ("photo", "patch")
_PACKAGE_NAMES = {"sklearn": "scikit-learn", "skimage": "scikit-image"}


def package_folder(package: str) -> str | None:
    """The installed folder of a top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def photo_path(photo: Photo, photos: str) -> str:
    """The file of ``photo``; a ValueError naming ``photos`` when it is not installed."""
    folder = package_folder(photo.package)
    path = None if folder is None else os.path.join(folder, *photo.path.split("/"))
    if path is None or not os.path.isfile(path):
        dist = _PACKAGE_NAMES[photo.package]
        why = (f"{dist} is not installed (pip install {dist})" if folder is None else
               f"the installed {dist} lacks {photo.path} (looked in {folder})")
        other = ("; pass photos='sklearn' for scikit-learn's two photographs only"
                 if photo.package != "sklearn" else "")
        raise ValueError(f"photos: expected the photograph {photo.name!r} of {dist} to be "
                         f"installed for photos={photos!r}, got {why}{other}")
    return path


@functools.cache
def photo_pixels(index: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 pixels of ``PHOTOS[index]``, decoded once (read-only)."""
    from PIL import Image

    with Image.open(photo_path(PHOTOS[index], "all")) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    pixels.flags.writeable = False
    return pixels


def grid_patches(pixels: np.ndarray, size: int, downscale: int) -> np.ndarray:
    """``[n, size, size, 3]`` float64 patches in ``[-1, 1]``: a centred non-overlapping grid.

    The photograph is first shrunk by ``downscale`` (the mean of each ``downscale x
    downscale`` block; rows and columns past the last whole block are dropped).
    """
    f = downscale
    h, w = pixels.shape[0] // f, pixels.shape[1] // f
    img = pixels[:h * f, :w * f].astype(np.float64)
    if f > 1:
        img = img.reshape(h, f, w, f, 3).mean(axis=(1, 3))
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    cells = img[top:top + rows * size, left:left + cols * size]
    cells = cells.reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    return cells.reshape(rows * cols, size, size, 3) / 127.5 - 1.0


def flatness(patches: np.ndarray) -> np.ndarray:
    """``[n]`` pixel standard deviation of each patch, per channel, root-mean-square over
    channels (a uniform colour gives 0)."""
    return np.sqrt(patches.var(axis=(1, 2)).mean(axis=-1))


def _choice(value, name: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {list(options)}, got {value!r}")
    return value


def _integer(value, name: str, lo: int, hi: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            lo <= value <= hi):
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}] ({why}), got {value!r}")
    return int(value)


def load_patches(*, seed: int, size: int = 32, downscale: int = 1, min_std: float = 0.02,
                 split: str = "photo", num_val: int | None = None,
                 photos: str = "all") -> Dataset:
    """The ``"patches"`` dataset (the rules: :func:`jaxgap.data.load`)."""
    photos = _choice(photos, "photos", tuple(_PHOTO_SETS))
    split = _choice(split, "split", _SPLITS)
    chosen = [i for i, p in enumerate(PHOTOS) if p.package in _PHOTO_SETS[photos]]
    for i in chosen:  # every file present before anything is decoded
        photo_path(PHOTOS[i], photos)
    pixels = [photo_pixels(i) for i in chosen]
    side = min(min(p.shape[:2]) for p in pixels)
    smallest = PHOTOS[chosen[int(np.argmin([min(p.shape[:2]) for p in pixels]))]].name
    downscale = _integer(downscale, "downscale", 1, side // 2,
                         f"the smallest photograph, {smallest!r}, has {side} pixels on its "
                         f"short side and must hold a patch of at least 2 x 2 pixels")
    size = _integer(size, "size", 2, side // downscale,
                    f"a size x size patch must fit in the smallest photograph, {smallest!r}, "
                    f"{side} pixels on its short side / downscale={downscale}")
    if isinstance(min_std, (bool, str)):
        raise ValueError(f"min_std: expected a finite number >= 0, got {min_std!r}")
    min_std = positive_float(min_std, "min_std", allow_zero=True)

    patches, labels = [], []
    for i, px in zip(chosen, pixels, strict=True):
        cells = grid_patches(px, size, downscale)
        cells = cells[flatness(cells) >= min_std]
        patches.append(cells.reshape(cells.shape[0], 3 * size * size))
        labels.append(np.full(cells.shape[0], i, np.int64))
    image_shape = (size, size, 3)

    if split == "patch":  # a seeded random partition of every photograph's patches
        x, y = np.concatenate(patches), np.concatenate(labels)
        n = x.shape[0]
        if n < MIN_VAL + 1:
            raise ValueError(f"min_std: expected a threshold that keeps at least {MIN_VAL + 1} "
                             f"patches, got {min_std!r} (it keeps {n})")
        num_val = check_num_val(max(MIN_VAL, n // 5) if num_val is None else num_val, n,
                                "patches dataset")
        tr, va = split_indices(n, num_val, seed)
        return Dataset(train=x[tr], val=x[va], name="patches", image_shape=image_shape,
                       train_labels=y[tr], val_labels=y[va])

    # split="photo": validation patches come from photographs no training patch comes from.
    def gather(which):
        rows = [k for k, i in enumerate(chosen) if PHOTOS[i].split == which]
        return (np.concatenate([patches[k] for k in rows]),
                np.concatenate([labels[k] for k in rows]))

    (x_tr, y_tr), (x_va, y_va) = gather("train"), gather("val")
    if x_tr.shape[0] < 1 or x_va.shape[0] < MIN_VAL:
        raise ValueError(f"min_std: expected a threshold that keeps at least 1 training and "
                         f"{MIN_VAL} validation patches, got {min_std!r} (it keeps "
                         f"{x_tr.shape[0]} and {x_va.shape[0]})")
    rng_train, rng_val = np.random.default_rng(seed).spawn(2)
    order_tr = rng_train.permutation(x_tr.shape[0])
    order_va = rng_val.permutation(x_va.shape[0])
    if num_val is not None:
        num_val = val_size(num_val)
        if num_val > x_va.shape[0]:
            raise ValueError(f"num_val: expected an integer in [{MIN_VAL}, {x_va.shape[0]}] "
                             f"(the patches of the validation photographs), got {num_val}")
        order_va = order_va[:num_val]
    return Dataset(train=x_tr[order_tr], val=x_va[order_va], name="patches",
                   image_shape=image_shape, train_labels=y_tr[order_tr],
                   val_labels=y_va[order_va])
