"""Figures of the BiFeO3 polarization campaign: the dataset overview and the
polarization maps (arrows over the image, magnitude and direction colours;
truth, prediction and difference as the seed's Fig. 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import plt, save


#: Arrow length: 1 Å per this many pm of P (50 pm: half a 3.97 Å cell).
ARROW_PM = 25.0


def direction_colours(p: np.ndarray, vmax_pm: float) -> np.ndarray:
    """RGB of vectors ``p`` (..., 2) [pm]: hue = direction, value = magnitude
    (saturating at ``vmax_pm``), the seed's colour wheel."""
    from matplotlib.colors import hsv_to_rgb

    ang = (np.arctan2(p[..., 1], p[..., 0]) / (2 * np.pi)) % 1.0
    mag = np.clip(np.linalg.norm(p, axis=-1) / max(vmax_pm, 1e-9), 0, 1)
    return hsv_to_rgb(np.stack([ang, np.ones_like(ang), mag], -1))


def draw_field(ax, image: np.ndarray | None, pixel_A: float, centres_px: np.ndarray,
               p_pm: np.ndarray, vmax_pm: float, title: str, arrow_scale: float = 1.0) -> None:
    """One map: the image in grey (if given), a colour square per cell
    (direction and magnitude) and an arrow of P (``arrow_scale`` Å per
    ``ARROW_PM`` pm) at every centre [pixels]."""
    c = np.asarray(centres_px, float) * pixel_A
    p = np.asarray(p_pm, float).reshape(-1, 2)
    if image is not None:
        ax.imshow(image.T, origin="lower", cmap="gray",
                  extent=(0, image.shape[0] * pixel_A, 0, image.shape[1] * pixel_A))
        ax.scatter(c[:, 0], c[:, 1], c=direction_colours(p, vmax_pm), s=18, marker="s",
                   edgecolors="none", alpha=0.7)
    else:
        ax.scatter(c[:, 0], c[:, 1], c=direction_colours(p, vmax_pm), s=160, marker="s",
                   edgecolors="none")
    ok = np.isfinite(p).all(axis=1)
    ax.quiver(c[ok, 0], c[ok, 1], p[ok, 0] / ARROW_PM * arrow_scale,
              p[ok, 1] / ARROW_PM * arrow_scale,
              angles="xy", scale_units="xy", scale=1, width=0.006, color="w" if image is not
              None else "k")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("x (Å)", fontsize=8)


#: Colour saturation of a difference panel (its title starts with "Δ" or
#: contains " - ") [pm].
DIFFERENCE_VMAX_PM = 10.0


def field_maps(image, pixel_A: float, centres_px, panels: list[tuple[str, np.ndarray]],
               out: str | Path, suptitle: str, vmax_pm: float = 50.0) -> None:
    """Maps side by side (``panels``: (title, P (n, 2) [pm])), the first over
    the image; a difference panel (title with " - ") saturates at
    ``DIFFERENCE_VMAX_PM`` and its arrows are 5x longer; colour wheel legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for k, (ax, (title, p)) in enumerate(zip(axes[0], panels)):
        diff = " - " in title
        vmax = DIFFERENCE_VMAX_PM if diff else vmax_pm
        draw_field(ax, image if k == 0 else None, pixel_A, centres_px, p, vmax,
                   f"{title}\n(colour to {vmax:.0f} pm{', arrows x5' if diff else ''})",
                   arrow_scale=5.0 if diff else 1.0)
    # colour-wheel legend
    ins = fig.add_axes([0.002, 0.02, 0.05, 0.05 * 3.4 * len(panels) / 3.6])
    g = np.linspace(-1, 1, 41)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    wheel = direction_colours(np.stack([gx, gy], -1) * vmax_pm, vmax_pm)
    wheel[np.hypot(gx, gy) > 1] = 1.0
    ins.imshow(wheel.transpose(1, 0, 2), origin="lower")
    ins.set_axis_off()
    ins.set_title("direction,\n|P| = brightness", fontsize=6)
    fig.suptitle(suptitle, fontsize=9)
    save(fig, out)


def dataset_overview(dataset: str | Path, out: str | Path) -> None:
    """The first image of every field kind: the HAADF image with its true
    polarization (arrows, colour = direction and magnitude)."""
    import zarr

    ds = zarr.open_group(str(dataset), mode="r")
    kinds = list(ds.attrs["field_kinds"])
    kind_idx = ds["field_kind"][...]
    present = [k for k in range(len(kinds)) if (kind_idx == k).any()]
    px = float(ds.attrs["pixel_A"])
    ppc = int(ds.attrs["pixels_per_cell"])
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present) + 0.5, 3.6),
                             squeeze=False)
    comps = list(ds.attrs["compositions"])
    for ax, k in zip(axes[0], present):
        i = int(np.flatnonzero(kind_idx == k)[0])
        field = ds["polarization_pm"][i]
        nx, ny = field.shape[:2]
        ij = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), -1) + 0.5
        centres = (ij + field / 100.0 / float(ds.attrs["a_A"])) * ppc
        draw_field(ax, ds["haadf"][i], px, centres.reshape(-1, 2), field.reshape(-1, 2), 50.0,
                   f"{kinds[k]}, {comps[int(ds['composition'][i])]}, "
                   f"{float(ds['thickness_A'][i]):.0f} Å\nmax |P| "
                   f"{float(ds['magnitude_pm'][i]):.0f} pm")
    fig.suptitle(f"BiFeO3 [001]pc HAADF {ds.attrs['haadf_range_mrad'][0]:.0f}-"
                 f"{ds.attrs['haadf_range_mrad'][1]:.0f} mrad: first image of every field kind "
                 f"(arrows: 1 Å per {ARROW_PM:.0f} pm; colour: direction, brightness |P| up to 50 pm)",
                 fontsize=8)
    save(fig, out)
