"""Datasets: the embedded 8x8 digits and photograph patches, synthetic data with a known
truth, and user arrays.

Every dataset is a :class:`Dataset` holding flattened host arrays ``train: [n_train, d]`` and
``val: [n_val, d]`` (numpy float32, read-only); JAX consumers convert with ``jnp.asarray``.
Images are flattened in row-major order from ``image_shape`` (height, width, channels: HWC),
so ``ds.train.reshape(-1, *ds.image_shape)`` gives the images back.

Synthetic datasets carry their generating distribution as a :class:`Truth` (a Gaussian
mixture; a single Gaussian is one component), so closed-form denoisers, population losses
and theory can be compared with the finite sample.

Conditions: :func:`conditions` gives every training and validation example an integer
condition id at a granularity of :data:`GRANULARITIES` (``"none"``, ``"coarse"`` groups of
classes, ``"class"``, ``"fine"`` sub-clusters within classes, ``"random"`` ids);
:meth:`Dataset.with_conditions` attaches them to a dataset (``train_cond``, ``val_cond``,
``num_conditions``, ``condition``) and :func:`check_conditions` refuses a condition that
validation examples carry but no training point does.

Data values are checked where they enter: :func:`load` (through :class:`Dataset`) refuses
NaN/inf entries, non-numeric arrays and validation sets of fewer than 2 points, so nothing
downstream reads them back to check again. User files are read as a user expects: a
channels-first image array is detected and moved channels-last, float images in ``[0, 1]``
are mapped to ``[-1, 1]`` like ``uint8`` ones, and what was decided on the user's behalf is
kept in :attr:`Dataset.notes` for a program to show.
The loaders live in private modules (``_builtin``: digits and synthetic data, ``_patches``:
photograph patches, ``_files``: npz/npy arrays, ``_convert``: the layout and scale rules for
files, ``_dataset``: the containers, ``_conditions``: condition ids); import everything from
:mod:`jaxgap.data`.

All randomness comes from ``numpy.random.default_rng(seed)``; the same ``name``, ``seed`` and
keywords give identical arrays, and no global random state is read or written.

Example:
  >>> from jaxgap import data
  >>> ds = data.load("digits", seed=0)
  >>> ds.train.shape, ds.val.shape, ds.image_shape
  ((1497, 64), (300, 64), (8, 8, 1))
  >>> g = data.load("gaussian", dim=16, alpha=1.0, num_train=100)
  >>> g.truth.covs.shape
  (1, 16, 16)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxgap.data._builtin import load_digits, load_gaussian, load_gmm, load_manifold
from jaxgap.data._conditions import GRANULARITIES, Conditions, check_conditions, conditions
from jaxgap.data._dataset import Dataset, Truth
from jaxgap.data._files import load_file
from jaxgap.data._patches import PATCH_PHOTOS, load_patches

__all__ = ["DATASET_NAMES", "GRANULARITIES", "PATCH_PHOTOS", "Conditions", "Dataset",
           "Truth", "check_conditions", "conditions", "load"]

#: Names accepted by :func:`load` (file-backed ones take a path after the colon).
DATASET_NAMES = ("digits", "patches", "gaussian", "gmm", "manifold", "npz:PATH",
                 "npy:PATH")


_BUILTIN: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "gaussian": load_gaussian,
    "gmm": load_gmm,
    "manifold": load_manifold,
    "patches": load_patches,
}


def load(name: str = "digits", *, seed: int = 0, **kwargs: Any) -> Dataset:
    """Load a dataset by name.

    Names and their keywords (defaults shown):

    - ``"digits"`` (``num_val=300``): the 1797 UCI 8x8 handwritten digits shipped with
      scikit-learn (no network). Pixels ``0..16`` are mapped to ``[-1, 1]`` by ``x / 8 - 1``;
      a seeded random split leaves ``1797 - num_val`` training images; labels ``0..9`` kept;
      ``image_shape = (8, 8, 1)``; ``d = 64``.
    - ``"patches"`` (``size=32, downscale=1, min_std=0.02, split="photo", num_val=None,
      photos="all"``): RGB patches of six photographs shipped inside scikit-learn's
      (china, flower) and scikit-image's (astronaut, chelsea, coffee, rocket) wheels, read
      from the installed packages with Pillow (no network; ``photos="sklearn"``: the first
      two only). Each photograph, shrunk by the integer ``downscale`` (the mean of each
      ``downscale x downscale`` block), is cut into a centred grid of non-overlapping
      ``size x size`` patches, so no two patches share a pixel; patches flatter than
      ``min_std`` (the pixel standard deviation per channel, root-mean-square over the
      channels, in ``[-1, 1]`` units; 0.02 is 2.55 of 255 grey levels) are dropped, being near
      copies of one another (sky, backdrop). Pixels ``0..255`` map to ``[-1, 1]`` by
      ``x / 127.5 - 1``; ``image_shape = (size, size, 3)``, ``d = 3 size^2`` (3072 at the
      default); labels are the photographs' indices in :data:`PATCH_PHOTOS`.
      ``split="photo"``: training patches come from china, astronaut, coffee and rocket,
      validation patches from flower and chelsea, never from a training photograph (803
      and 372 patches; at ``size=16``, 2938 and 1279); the seed orders the training
      patches, and ``num_val`` keeps a seeded subset of the validation patches (None:
      all). ``split="patch"``: a seeded random partition of all the patches, ``num_val``
      defaulting to ``max(2, n // 5)``; a photograph feeds both sides (disjoint pixels, shared
      labels), which conditioning on the photograph (``with_conditions("class")``) needs.
      Counts per photograph and licences: ``docs/patches.md``.
    - ``"gaussian"`` (``num_train=1000, num_val=1000, dim=64, alpha=1.0, scale=1.0``):
      ``x ~ N(0, U diag(lambda) U^T)`` with a power-law spectrum and a Haar-random rotation
      ``U`` (sign-fixed QR of a Gaussian matrix):

      .. math::
          \\lambda_k = \\text{scale} \\cdot k^{-\\alpha}, \\quad k = 1, \\dots, d

    - ``"gmm"`` (``num_train=1000, num_val=1000, dim=16, num_components=8,
      component_std=0.3``): equal-weight mixture of isotropic Gaussians
      ``N(mu_k, component_std^2 I)`` with means ``mu_k ~ N(0, I)``; the labels are the
      component indices of each point.
    - ``"manifold"`` (``num_train=1000, num_val=1000, dim=64, intrinsic_dim=4,
      noise_std=0.0``): ``x = A z + noise_std * eps`` with ``A: [dim, intrinsic_dim]``
      orthonormal columns (a random subspace), ``z ~ N(0, I_k)``, ``eps ~ N(0, I_d)``; truth
      covariance ``A A^T + noise_std^2 I`` (singular when ``noise_std = 0``).
    - ``"npz:PATH"`` (``num_val=None, channels_first=None, scale="auto"``): arrays saved
      with ``np.savez``. Training/validation arrays are taken from the first present key of
      ``train, x_train, train_images`` (or else ``x, data, images``) and ``val, x_val,
      val_images, test, x_test, test_images``; labels from ``train_labels, y_train`` (for
      ``x, data, images``: also ``labels, y, label, targets``) and ``val_labels, y_val,
      test_labels, y_test``. A CIFAR-10 export (``x_train: [50000, 32, 32, 3]`` uint8 with
      ``y_train: [50000]`` or ``[50000, 1]``, ``x_test``, ``y_test``) gives
      ``image_shape = (32, 32, 3)``, pixels in ``[-1, 1]`` and its classes as labels.
      Without a validation key, the training array (labels from ``train_labels, y_train,
      labels, y, label, targets``; or else one of ``x, data, images``, or else the
      archive's only non-label array, labels from ``labels, y, label, targets``) is split
      with a seeded permutation, ``num_val`` defaulting to ``max(2, n // 10)``. Pickled
      (object) arrays are refused. The labels define the classes of :func:`conditions`.
    - ``"npy:PATH"`` (``num_val=None, channels_first=None, scale="auto"``): one array saved
      with ``np.save``, split as above.

    File arrays have shape ``[n, d]`` (vectors), ``[n, H, W]`` (grayscale; ``image_shape``
    becomes ``(H, W, 1)``), ``[n, H, W, C]`` or ``[n, C, H, W]``; points are flattened
    row-major (channels last) to ``[n, H * W * C]``. A file is checked by its first bytes
    (an npz is a zip archive, an npy starts with ``b"\\x93NUMPY"``), so a text file or another
    format is named as such. Every validation set has at least 2 points (a standard error
    over examples needs two): ``num_val >= 2``, and a file's validation array too.

    ``channels_first`` (layout): None (default) detects, True moves axis 1 last, False keeps
    the layout. Detection takes ``[n, C, H, W]`` with ``C`` in (1, 3, 4) and a last axis not
    in (1, 3, 4) as channels-first and moves it to ``[n, H, W, C]``, with a note; when both
    axis 1 and the last axis are in (1, 3, 4) (e.g. ``[n, 3, 4, 4]``) the layout is kept as
    ``[n, H, W, C]`` (the documented layout; a guess would silently scramble the other
    reading) and a note names the option; any other shape is kept without a note.

    ``scale`` (values): ``"auto"`` (default), ``"none"`` (values used as they are) or a
    number ``M > 0`` mapping ``[0, M]`` to ``[-1, 1]`` by ``x * 2 / M - 1`` (``scale=255`` for
    pixel values ``0..255`` stored as floats, ``scale=1`` for ``[0, 1]``); values outside
    ``[0, M]`` are refused. ``"auto"`` decides once, on the training and validation arrays
    together, so both are mapped alike:

    - ``uint8`` arrays: ``M = 255`` (``x / 127.5 - 1``), whatever their shape;
    - flat ``[n, d]`` arrays of any other dtype: kept as they are (points, not pixels);
    - image-shaped arrays (``[n, H, W]``, ``[n, H, W, C]``) of any other dtype (float or
      integer): values in ``[0, 1]`` are mapped as ``scale=1``, with a note; values within
      ``[-1, 1]`` with negatives are kept; values outside ``[-1, 1]`` are refused with the
      range found and the options (``scale=255``, ``scale='none'``; on the command line
      ``-D scale=255``, ``-D scale=none``).

    (The ``"gaussian"`` dataset's ``scale`` is its spectrum's scale, unrelated.) What such a
    rule decides on the user's behalf is recorded in :attr:`Dataset.notes`, one sentence
    each; an explicit ``channels_first`` or ``scale`` is obeyed without a note.

    Synthetic datasets draw the truth, the training and the validation points from three
    independent streams spawned from ``default_rng(seed)``: changing ``num_train`` changes
    neither the truth nor the validation set.

    Args:
      name: one of ``"digits"``, ``"patches"``, ``"gaussian"``, ``"gmm"``, ``"manifold"``,
        ``"npz:PATH"``, ``"npy:PATH"`` (``~`` in PATH is expanded).
      seed: non-negative integer seeding every random choice (split, rotation, samples).
      **kwargs: the dataset's keywords listed above; any other keyword is an error.

    Returns:
      A :class:`Dataset` with ``train: [n_train, d]`` and ``val: [n_val, d]`` float32.

    Raises:
      ValueError: unknown name or keyword; missing, unreadable or unusable file; fewer than
        3 points to split, or fewer than 2 validation points; NaN/inf or non-numeric data;
        ``num_val >= n``; non-positive sizes; image values outside ``[-1, 1]`` under
        ``scale="auto"`` or outside ``[0, M]`` under ``scale=M``. The message names the
        offending argument, what was expected and what was received, and the option to
        pass in both spellings (``scale=255``; command line: ``-D scale=255``).

    Example:
      Float images in ``[0, 1]``, channels first: moved and mapped, with a note for each.

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "images.npy")
      >>> np.save(path, np.full((10, 3, 8, 8), 0.75, np.float32))
      >>> ds = load(f"npy:{path}")
      >>> ds.image_shape, ds.num_val, float(ds.train.max())
      ((8, 8, 3), 2, 0.5)
      >>> [note.rsplit("command line: ", 1)[1] for note in ds.notes]
      ['-D channels_first=False) to keep the layout', '-D scale=none)']
    """
    if not isinstance(name, str):
        raise ValueError(f"name: expected a str, one of {list(DATASET_NAMES)}, got "
                         f"{type(name).__name__} {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    seed = int(seed)
    kind, sep, path = name.partition(":")
    if sep and kind in ("npz", "npy"):
        fn: Callable[..., Dataset] = lambda **kw: load_file(kind, path, **kw)
        params = inspect.signature(load_file).parameters
    elif name in _BUILTIN:
        fn = _BUILTIN[name]
        params = inspect.signature(fn).parameters
    else:
        raise ValueError(f"name: expected one of {list(DATASET_NAMES)}, got {name!r}")
    allowed = sorted(p for p, v in params.items()
                     if v.kind is inspect.Parameter.KEYWORD_ONLY and p != "seed")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        label = kind if sep else name
        raise ValueError(f"{', '.join(unknown)}: unknown keyword argument(s) for dataset "
                         f"{label!r}; expected some of {allowed}, got {unknown}")
    return fn(seed=seed, **kwargs)
