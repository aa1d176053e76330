"""Figures of the ABF tilt campaign: one ABF and HAADF image per tilt system
(the dataset overview)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import plt, save


def dataset_overview(dataset: str | Path, out: str | Path) -> None:
    """The first image of every tilt system in the dataset: ABF (top) and
    HAADF (bottom), two zone cells wide, with its angles."""
    import zarr

    ds = zarr.open_group(str(dataset), mode="r")
    systems = list(ds.attrs["systems"])
    sys_idx = ds["tilt_system"][...]
    present = [k for k in range(len(systems)) if (sys_idx == k).any()]
    fig, axes = plt.subplots(2, len(present), figsize=(2.2 * len(present) + 1, 5.2),
                             squeeze=False)
    px = ds.attrs["pixel_A"]
    for col, k in enumerate(present):
        i = int(np.flatnonzero(sys_idx == k)[0])
        angles = [float(ds[f"{a}_deg"][i]) for a in ("alpha", "beta", "gamma")]
        for row, name in enumerate(("abf", "haadf")):
            img = np.tile(ds[name][i], (2, 2))
            ax = axes[row, col]
            ax.imshow(img.T, origin="lower", cmap="gray",
                      extent=(0, img.shape[0] * px[0], 0, img.shape[1] * px[1]))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{systems[k]}\n" + "/".join(f"{a:.1f}" for a in angles) + " deg",
                             fontsize=8)
        axes[0, 0].set_ylabel(f"ABF {ds.attrs['abf_range_mrad'][0]:.0f}-"
                              f"{ds.attrs['abf_range_mrad'][1]:.0f} mrad", fontsize=8)
        axes[1, 0].set_ylabel(f"HAADF {ds.attrs['haadf_range_mrad'][0]:.0f}-"
                              f"{ds.attrs['haadf_range_mrad'][1]:.0f} mrad", fontsize=8)
    fig.suptitle(f"ABF tilt dataset ({ds.attrs['zone']}pc projection, 2 x 2 zone cells "
                 f"of {px[0] * ds['abf'].shape[1]:.1f} x {px[1] * ds['abf'].shape[2]:.1f} Å): "
                 "first image of every tilt system, alpha/beta/gamma", fontsize=9)
    save(fig, out)
