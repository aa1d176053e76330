"""Figures of the CTR campaign: the dataset's rods, and the readout (the
paper's Fig. 3a-c: predicted vs true parameters, R² per parameter; Fig. 2a:
the electron-density profile of a held-out film from the predicted and the
true U)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plots import plt, save


def dataset_overview(dataset: str | Path, out: str | Path) -> None:
    """log10 I and |U| of the 00 and 11 rods of three films."""
    import zarr

    ds = zarr.open_group(str(dataset), mode="r")
    hk = [tuple(v) for v in ds.attrs["rod_hk"]]
    L = np.asarray(ds.attrs["l_values"])
    n_l = len(L)
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.5), sharex=True)
    for col, rod in enumerate([(0, 0), (1, 1)]):
        if rod not in hk:
            continue
        r = hk.index(rod)
        for i in range(min(3, ds["log10_intensity"].shape[0])):
            axes[0, col].plot(L, ds["log10_intensity"][i, r], lw=0.8, label=f"film {i}")
            u = ds["film_field"][i, r * n_l:(r + 1) * n_l]
            axes[1, col].plot(L, np.hypot(u[:, 0], u[:, 1]), lw=0.8)
        axes[0, col].set_title(f"rod {rod[0]}{rod[1]}")
        axes[1, col].set_xlabel("L (r.l.u.)")
    axes[0, 0].set_ylabel("log10 I (e²)")
    axes[1, 0].set_ylabel("|U| (e)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("CTR dataset: intensities (what is measured) and film field U (the target)")
    save(fig, out)


def readout_figures(camp, result: dict, dataset: str | Path, out_dir: str | Path) -> list:
    """R² per parameter, two parity plots and a density profile; returns the paths."""
    from ...forward.ctr import density_profile
    from ...metrics import regression_metrics

    out_dir = Path(out_dir)
    names = result["names"]
    truth, pred = np.asarray(result["truth"]), np.asarray(result["predicted"])
    m = regression_metrics(truth, pred, names, result["units"])["targets"]
    base = result.get("baseline_targets") or {}
    paths = []

    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(names)), 3.6))
    x = np.arange(len(names))
    bars = [("U-Net + fit", [m[n]["r2"] for n in names])]
    refined = (result.get("alternatives") or {}).get("network + fit, refined to log10 I")
    if refined is not None:
        mr = regression_metrics(truth, np.asarray(refined), names, result["units"])["targets"]
        bars.append(("U-Net + fit, refined to log10 I", [mr[n]["r2"] for n in names]))
    if base:
        bars.append(("ridge baseline", [base.get(n, {}).get("r2", np.nan) for n in names]))
    width = 0.8 / len(bars)
    for i, (label, r2) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, r2, width, label=label)
    ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.set_ylim(min(0.0, np.nanmin([m[n]["r2"] for n in names])), 1.02)
    ax.axhline(0.99, color="k", lw=0.6, ls="--")
    ax.set_ylabel("R² (held-out films)")
    ax.legend(fontsize=7)
    ax.set_title("Layer parameters from the predicted film field")
    p = out_dir / "r2_per_parameter.png"
    save(fig, p)
    paths.append(p)

    # a mid-film c-spacing and p_1, of the parameters these films have (a thinner
    # film's missing layers are NaN)
    present = [n for j, n in enumerate(names) if np.isfinite(truth[:, j]).any()]
    cs = [n for n in present if n.startswith("c_")]
    pick = cs[len(cs) // 2:][:1] + [n for n in present if n.startswith("p_")][:1]
    fig, axes = plt.subplots(1, len(pick), figsize=(3.4 * len(pick), 3.3))
    for ax, name in zip(np.atleast_1d(axes), pick):
        j = names.index(name)
        ax.scatter(truth[:, j], pred[:, j], s=6)
        lims = [np.nanmin(truth[:, j]), np.nanmax(truth[:, j])]
        ax.plot(lims, lims, "k--", lw=0.7)
        ax.set_xlabel(f"true {name} ({result['units'][j]})")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(f"{name}: R² {m[name]['r2']:.3f}", fontsize=9)
    p = out_dir / "parameter_parity.png"
    save(fig, p)
    paths.append(p)

    if result.get("field_predicted") is not None:
        import zarr

        ds = zarr.open_group(str(dataset), mode="r")
        L = np.asarray(ds.attrs["l_values"])
        n_l = len(L)
        z = np.linspace(-4, 4 + 3.905 * max(camp.config["films"]["n_layers"]), 800)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for label, u, style in (("true U", result["field_true"], "k-"),
                                ("predicted U", result["field_predicted"], "C1--")):
            u00 = u[:n_l, 0] + 1j * u[:n_l, 1]  # the 00 rod comes first
            ax.plot(z, density_profile(L, u00, z), style, lw=1, label=label)
        ax.set_xlabel("z above the substrate (Å)")
        ax.set_ylabel("ρ(z) (e/Å, + const)")
        ax.set_title("Electron-density profile of a held-out film (00 rod)")
        ax.legend(fontsize=7)
        p = out_dir / "density_profile.png"
        save(fig, p)
        paths.append(p)
    return paths


def measured_prediction(data: dict, info: dict, result: dict, out: str | Path) -> None:
    """A measured set: its resampled log10 I on the 00 and 11 rods (masked
    points grey), the predicted |U| with its MC-dropout spread, and the
    electron-density profile from the predicted U of the 00 rod."""
    from ...forward.ctr import A_STO, density_profile

    x, mask = data["log10_intensity"], data["mask"]
    rods = info["rods"]
    L = np.asarray(result["l_values"])
    n_l = len(L)
    mean = np.asarray(result["predicted"])[0]
    std = np.asarray(result["predicted_std"])[0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for rod in ("00", "11"):
        if rod in rods:
            r = rods.index(rod)
            axes[0].plot(L, x[r], lw=0.8, label=f"rod {rod}")
            axes[0].plot(L[~mask[r]], x[r][~mask[r]], ".", color="0.6", ms=2)
            u = mean[r * n_l:(r + 1) * n_l]
            s = std[r * n_l:(r + 1) * n_l]
            amp = np.hypot(u[:, 0], u[:, 1])
            axes[1].plot(L, amp, lw=0.8, label=f"rod {rod}")
            axes[1].fill_between(L, amp - np.hypot(s[:, 0], s[:, 1]),
                                 amp + np.hypot(s[:, 0], s[:, 1]), alpha=0.3)
    axes[0].set_xlabel("L (r.l.u.)")
    axes[0].set_ylabel("log10 I (training scale)")
    axes[0].set_title(f"measured, {100 * info['masked_fraction']:.0f} % of the grid masked",
                      fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("L (r.l.u.)")
    axes[1].set_ylabel("|U| predicted (e)")
    axes[1].legend(fontsize=7)
    u00 = mean[:n_l, 0] + 1j * mean[:n_l, 1]
    z = np.linspace(-4, 60, 800)
    axes[2].plot(z, density_profile(L, u00, z, c=A_STO), lw=1)
    axes[2].set_xlabel("z above the substrate (Å)")
    axes[2].set_ylabel("ρ(z) (e/Å, + const)")
    axes[2].set_title("density from the predicted U (00 rod)", fontsize=9)
    save(fig, out)


def measured_readout(result: dict, out: str | Path) -> None:
    """The layer parameters of a measured set per layer, one panel per
    group, with standard errors, for every method of the readout."""
    groups = list(dict.fromkeys(result["groups"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.1 * len(groups), 3.2), squeeze=False)
    markers = "os^"
    for gi, group in enumerate(groups):
        ax = axes[0, gi]
        idx = [i for i, g in enumerate(result["groups"]) if g == group]
        layer = np.arange(1, len(idx) + 1)
        for mi, (m, v) in enumerate(result["methods"].items()):
            vals = np.asarray(v["values"])[idx]
            std = np.asarray(v["std"])[idx]
            std = np.where(np.isfinite(std), std, 0.0)
            ax.errorbar(layer + 0.12 * (mi - 1), vals, yerr=std, fmt=markers[mi % 3], ms=3,
                        lw=0.8, capsize=2, label=m)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("layer (1 = on the substrate)" if group != "Sr fraction p"
                      else "mixed layer")
        unit = result["units"][idx[0]]
        ax.set_ylabel(unit or "fraction")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"layer parameters of {Path(result['input']).name} "
                 f"({result['n_layers']} layers, {100 * result['masked_fraction']:.0f} % "
                 "of the grid masked); bars: standard errors", fontsize=9)
    save(fig, out)
