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


def interface_maps(image_yx: np.ndarray, truth: dict, predictions: dict, score: dict,
                   out: str | Path) -> None:
    """Tilt maps of the showcase interface image beside its truth.

    First row: the image (rows = y) and the score. Then one row per map (the
    tilt system, alpha, beta, gamma [deg]): left the prediction of every
    window, drawn at its centre over one stride (a window that straddles the
    interface, not scored, carries a cross); right the truth along x. The
    interface is a dashed line in every panel.

    Parameters
    ----------
    image_yx : ndarray (ny, nx)
        The image predict read, at ``truth["pixel_A"]`` [Å].
    truth : dict
        ``sides`` (name, system, angles_deg, x0_A, x1_A), ``interface_A``,
        ``pixel_A``.
    predictions : dict
        Task -> ``predictions.json`` of predict (classification: the tilt
        system; regression: alpha, beta, gamma).
    score : dict
        ``tasks`` -> :func:`.interface.score_windows`'s dict.
    out : path
        The PNG.
    """
    from .interface import window_sides, window_starts

    sides = truth["sides"]
    px = truth["pixel_A"]
    size = (image_yx.shape[1] * px[0], image_yx.shape[0] * px[1])
    xs = (np.arange(512) + 0.5) * size[0] / 512  # the truth along x
    at = np.clip(window_sides(sides, xs, 0.0, 0.0), 0, None)
    maps = []  # (title, predicted (gx, gy), truth along x, classes, result)
    for task, r in predictions.items():
        grid = r["window_grid"]
        if r["kind"] == "classification":
            classes = list(r["classes"])
            pred = np.argmax(np.asarray(r["probabilities"]), axis=1).reshape(grid)
            true = np.array([classes.index(sides[k]["system"]) for k in at])
            maps.append(("tilt system", pred, true, classes, r))
        else:
            pred = np.asarray(r["predicted"]).reshape(grid + [-1])
            true = np.array([sides[k]["angles_deg"] for k in at])
            for k, (name, unit) in enumerate(zip(r["targets"], r["units"])):
                maps.append((f"{name.replace('_deg', '')} ({unit})", pred[..., k],
                             true[:, k], None, r))
    fig, axes = plt.subplots(1 + len(maps), 2, figsize=(9.5, 1.9 * (1 + len(maps))),
                             squeeze=False, layout="constrained")
    ax = axes[0, 0]
    ax.imshow(image_yx, origin="lower", cmap="gray", extent=(0, size[0], 0, size[1]))
    ax.set_title(f"ABF image: {sides[0]['system']} | {sides[1]['system']}", fontsize=9)
    axes[0, 1].axis("off")
    axes[0, 1].text(0, 1, _score_text(sides, score), va="top", ha="left", fontsize=7,
                    family="monospace", transform=axes[0, 1].transAxes)
    for row, (title, pred, true, classes, r) in enumerate(maps, start=1):
        grid, stride, wpx = r["window_grid"], r["stride_px"], r["pixel_A"]
        ext = (stride[0] * wpx[0] / 2, stride[0] * wpx[0] * (grid[0] + 0.5),
               stride[1] * wpx[1] / 2, stride[1] * wpx[1] * (grid[1] + 0.5))
        if classes:
            kw = dict(cmap="tab10", vmin=-0.5, vmax=len(classes) - 0.5)
        else:
            lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
            kw = dict(cmap="viridis", vmin=lo, vmax=hi + 1e-6)
        a_pred, a_true = axes[row]
        im = a_pred.imshow(pred.T, origin="lower", extent=ext, **kw)
        a_true.imshow(true[None, :], origin="lower", extent=(0, size[0], 0, size[1]),
                      aspect=a_pred.get_aspect(), **kw)
        cb = fig.colorbar(im, ax=[a_pred, a_true], ticks=range(len(classes)) if classes
                          else None, shrink=0.9)
        if classes:
            cb.ax.set_yticklabels(classes, fontsize=6)
        a_pred.set_title(f"{title}: predicted per window", fontsize=8)
        a_true.set_title(f"{title}: truth", fontsize=8)
        x0, width = window_starts(r)
        across = window_sides(sides, x0, width) < 0
        if across.any():
            y0 = np.tile(np.arange(grid[1]) * stride[1] * wpx[1], grid[0])
            a_pred.plot(x0[across] + width / 2, y0[across] + stride[1] * wpx[1], "x",
                        color="w", ms=5, mew=1.2)
    for ax in axes.ravel():
        if ax.axison:
            ax.set_xlim(0, size[0])
            ax.set_ylim(0, size[1])
            ax.axvline(float(truth["interface_A"]), color="r", ls="--", lw=1)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("x (Å)", fontsize=8)
    fig.suptitle(f"Tilt maps of a simulated interface: film {sides[1]['system']} at "
                 f"{'/'.join(f'{a:g}' for a in sides[1]['angles_deg'])} deg on "
                 f"{sides[0]['system']} (dashed: the interface; x: windows across it, not "
                 "scored)", fontsize=9)
    save(fig, out)


def _score_text(sides: list, score: dict) -> str:
    """The score as lines of text (accuracy, MAE per side)."""
    lines = []
    for task, s in score["tasks"].items():
        lines.append(f"{task}: {s['scored']} of {s['windows']} windows")
        if "accuracy" in s:
            lines.append(f"  accuracy {s['accuracy']:.2f}")
            lines += [f"  {k}: {v:.2f}" for k, v in s["accuracy_by_side"].items()]
        if "mae_deg" in s:
            lines.append("  MAE a/b/g (deg) " + "/".join(f"{v:.1f}" for v in s["mae_deg"]))
            lines += [f"  {k}: " + "/".join(f"{v:.1f}" for v in m)
                      for k, m in s["mae_deg_by_side"].items()]
    truth = [f"{s['name']}: {s['system']} " + "/".join(f"{a:g}" for a in s["angles_deg"])
             for s in sides]
    return "\n".join(["truth (deg):", *truth, "", *lines])

