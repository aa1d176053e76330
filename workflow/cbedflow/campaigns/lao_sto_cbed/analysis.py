"""Detector-space analysis of CBED stacks: angular grids and virtual detectors."""

from __future__ import annotations

import numpy as np


def angle_grid_mrad(shape: tuple[int, int], angular_sampling_mrad) -> np.ndarray:
    """Scattering angle [mrad] of every pixel of a centred (fftshifted) pattern.

    abTEM puts the zero beam at index ``n // 2`` along each axis.
    """
    (nkx, nky), (dx, dy) = shape, angular_sampling_mrad
    ax = (np.arange(nkx) - nkx // 2) * dx
    ay = (np.arange(nky) - nky // 2) * dy
    return np.hypot(ax[:, None], ay[None, :])


def virtual_detector(cbed: np.ndarray, angular_sampling_mrad, inner_mrad: float,
                     outer_mrad: float, reduce: str = "mean") -> np.ndarray:
    """Integrate (or average) ``cbed`` (..., kx, ky) over an annulus [mrad].

    ``reduce='mean'`` gives the mean intensity per detector pixel in the
    annulus, as the paper's dark-field image (mean CBED intensity).
    """
    theta = angle_grid_mrad(cbed.shape[-2:], angular_sampling_mrad)
    mask = (theta >= inner_mrad) & (theta < outer_mrad)
    if not mask.any():
        raise ValueError(f"annulus {inner_mrad}-{outer_mrad} mrad holds no detector pixel")
    total = np.tensordot(cbed, mask.astype(cbed.dtype), axes=([-2, -1], [0, 1]))
    return total / mask.sum() if reduce == "mean" else total


def dark_field(cbed: np.ndarray, angular_sampling_mrad, semiangle_mrad: float,
               margin: float = 1.2) -> np.ndarray:
    """Dark-field image: mean CBED intensity beyond the bright-field disc.

    Pixels beyond ``margin * semiangle_mrad`` up to the detector edge.
    """
    theta = angle_grid_mrad(cbed.shape[-2:], angular_sampling_mrad)
    return virtual_detector(cbed, angular_sampling_mrad, margin * semiangle_mrad,
                            float(theta.max()) + 1.0)
