"""Campaign ``lao_sto_ctr``: X-ray crystal-truncation-rod (CTR) phase retrieval
of LaAlO3/SrTiO3 films (MAMBA: Kakhandiki, Min & Disa, seed 004).

The method, as for every campaign: draw many slightly different films
(:mod:`.films`), compute what the experiment measures, the CTR intensities
on 16 rods x 240 L (:mod:`cbedflow.forward.ctr`, kinematic, eq. 2), train a
1D U-Net that maps log10 I to the complex film field U (the phase the
measurement loses), and read the structure out of the predicted U: a least-
squares fit of every layer parameter (:mod:`.fit`; the readout
``layer_parameters``), judged against a ridge regression from log10 I
straight to the parameters.

Work units are shards of ``films.per_unit`` films (``s00000``...); a unit
stores the signal (log10 I), the film field and the parameter vector as
arrays, so collect needs no label in JSON.

Differences from the paper, by choice: one U-Net predicts Re U and Im U as
two output channels (the paper trains one per part); the top layer's
c-spacing is held at its nominal value (:func:`.films.sample_film`: it is
unobservable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .. import Campaign, Label
from ...tasks import Task

#: Parameter-name prefix -> group (the paper's Fig. 3c per atom type).
GROUPS = {"c_": "c spacing", "zB_": "B-site z", "zOap_": "apical O z",
          "zOpl_": "planar O z", "p_": "Sr fraction p", "occ_": "top occupancy"}


def parameter_group(name: str) -> str:
    """The group of a parameter name (``c_03`` -> ``c spacing``)."""
    for prefix, group in GROUPS.items():
        if name.startswith(prefix):
            return group
    raise ValueError(f"parameter {name!r} belongs to no group ({', '.join(GROUPS)})")


class LaoStoCtr(Campaign):
    """X-ray CTRs of LaAlO3/SrTiO3 films -> film field U -> layer parameters."""

    name = "lao_sto_ctr"
    title = "X-ray CTR phase retrieval of LaAlO3/SrTiO3 films (MAMBA)"
    signal = "log10_intensity"
    signal_dims = ("rod", "L")
    signal_unit = "log10 of the intensity [electrons²]"
    labels = (
        Label("film_field", "float32", "e",
              "Film field U (Re, Im) at every rod point, rods concatenated: (points, 2)",
              dims=("point", "re_im")),
        Label("parameters", "float32", "",
              "Layer parameters (films.FilmSample.parameters), NaN past a thinner film",
              dims=("parameter",)),
        Label("n_layers", "int16", "", "Variable layers of the film"),
        Label("thickness_A", "float32", "Å", "Film thickness (sum of the c-spacings)"),
    )
    tasks = {
        "film_field": Task(
            "film_field", "film_field", kind="regression", targets=("Re_U", "Im_U"),
            units=("e", "e"), network="unet1d", transform="identity", input_scaling=True,
            loss="mae", readout="layer_parameters"),
    }
    unit_sections = ("seed", "films", "rods")
    augment_sections = ("rods",)
    augment_meta = {"counts_median": ("float32", float("inf"))}
    geometry_keys = ("rod_hk", "l_values")
    packages = ("numpy", "zarr", "periodictable", "cbedflow")
    baseline_name = "ridge regression from standardised log10 I"

    # -- films --------------------------------------------------------------
    def film_options(self):
        from .films import FilmOptions

        f = self.config["films"]
        return FilmOptions(n_layers=tuple(f["n_layers"]), n_sto_max=f["n_sto_max"],
                           c_range=f["c_range_A"], displacement=f["displacement"],
                           rough_top=f["rough_top"],
                           occupancy_range=tuple(f["occupancy_range"]))

    def grid(self):
        from ...forward.ctr import rod_grid

        r = self.config["rods"]
        return rod_grid(r["h_max"], r["k_max"], r["l_step"], r["l_max"])

    def film(self, index: int):
        """Film ``index``, drawn from (seed, index) alone."""
        from .films import sample_film

        return sample_film(np.random.default_rng([self.config["seed"], 41, index]),
                           self.film_options())

    def parameter_names(self, n_layers: int | None = None) -> tuple[list[str], list[str]]:
        """Names and units of the parameter vector of a film of ``n_layers``
        (default: the thickest film; a thinner film's missing layers are NaN
        there)."""
        from .films import parameter_names

        o = self.film_options()
        names, units = parameter_names(n_layers or max(o.n_layers), 2 * o.n_mixed_side,
                                       o.rough_top)
        return list(names), list(units)

    # -- samples and units ----------------------------------------------------
    def units(self) -> list[tuple[str, str, int]]:
        f = self.config["films"]
        n = -(-f["count"] // f["per_unit"])
        return [(f"s{i:05d}", "films", 0) for i in range(n)]

    def unit_key(self, name: str, part: str) -> str:
        from ...config import config_hash

        return config_hash({k: self.config[k] for k in self.unit_sections} | {"unit": name})

    def shard(self, name: str) -> range:
        f = self.config["films"]
        i = int(name[1:])
        return range(i * f["per_unit"], min(f["count"], (i + 1) * f["per_unit"]))

    def simulate_unit(self, name: str, part: str, batch: int, out: str,
                      progress: Callable[[str], None] = print) -> None:
        import time

        from ...forward.ctr import ctr_amplitude
        from ...storage import atomic_group, write_attrs

        g = self.grid()
        eps = self.config["rods"]["eps"]
        films = self.shard(name)
        names, units = self.parameter_names()
        pos = {n: i for i, n in enumerate(names)}
        sig = np.zeros((len(films),) + g.shape, np.float32)
        field = np.zeros((len(films), g.shape[0] * g.shape[1], 2), np.float32)
        params = np.full((len(films), len(names)), np.nan, np.float32)
        labels = []
        t0 = time.perf_counter()
        for j, i in enumerate(films):
            s = self.film(i)
            amp = ctr_amplitude(g.h, g.k, g.l_row, s.layers, eps=eps)
            inten = amp.total.real ** 2 + amp.total.imag ** 2
            sig[j] = np.log10(inten)
            field[j, :, 0] = amp.film.real.ravel()
            field[j, :, 1] = amp.film.imag.ravel()
            values, own, _ = s.parameters()
            params[j, [pos[n] for n in own]] = values  # a thinner film's rest stays NaN
            labels.append({"structure": f"film-{i:07d}", "thickness_A": s.layers.thickness,
                           "n_layers": s.layers.n_layers})
        with atomic_group(out) as grp:
            grp.create_array(self.signal, data=sig)
            grp.create_array("film_field", data=field)
            grp.create_array("parameters", data=params)
            write_attrs(grp, {
                "plane_labels": labels, "num_configs": 1,
                "rod_hk": g.hk.tolist(), "l_values": g.L.tolist(), "eps": eps,
                "parameter_names": names, "parameter_units": units,
                "provenance": {"unit_key": self.unit_key(name, part)}, "complete": True})
        progress(f"{name}: {len(films)} films in {time.perf_counter() - t0:.2f} s")

    @property
    def thicknesses(self) -> dict[str, float]:
        from ...forward.ctr import A_STO

        return {f"{n}L": n * A_STO for n in self.config["films"]["n_layers"]}

    def sample_classes(self, task) -> dict[str, int]:
        return {f"film-{i:07d}": 0 for i in range(self.config["films"]["count"])}

    # -- collect --------------------------------------------------------------
    def dataset_attrs(self, unit_attrs: dict) -> dict:
        keep = ("rod_hk", "l_values", "eps", "parameter_names", "parameter_units")
        out = {k: unit_attrs[k] for k in keep}
        out["parameter_groups"] = [parameter_group(n) for n in unit_attrs["parameter_names"]]
        return out

    def describe_dataset(self, ds) -> list[str]:
        s = ds[self.signal].shape
        return [f"  {s[0]} films, {s[1]} rods x {s[2]} L points; "
                f"{len(ds.attrs['parameter_names'])} layer parameters"]

    # -- examples -------------------------------------------------------------
    def cut_examples(self, signal: np.ndarray, task, config: dict, sample: int = 0,
                     split: str = "test", aux: dict | None = None,
                     reference: dict | None = None, target=None):
        """One example per film: the rods concatenated (rod-major), log10 I."""
        return [(np.asarray(signal).reshape(-1), {})]

    def example_attrs(self, dataset_attrs: dict, config: dict, task) -> dict:
        return {"dims": ["example", "point"], "rod_hk": dataset_attrs["rod_hk"],
                "l_values": dataset_attrs["l_values"]}

    def augment_example(self, x: np.ndarray, rng: np.random.Generator, config: dict):
        """Counting noise and a scale factor per rod on log10 I.

        The expected counts are ``I * s_rod * k``: ``s_rod = exp(N(0,
        rod_scale_sigma))`` per rod, ``k`` such that the median point gets
        ``counts_median`` counts (log-uniform in its range); Poisson counts,
        0 floored at 0.5, back to log10 intensity in the original units.
        """
        a = config["augment"]
        n_rods = len(self.grid().hk)
        lo, hi = np.log(a["counts_median"])
        counts_median = float(np.exp(rng.uniform(lo, hi)))
        inten = 10.0 ** x.reshape(n_rods, -1)
        scale = np.exp(rng.normal(0.0, a["rod_scale_sigma"], (n_rods, 1)))
        k = counts_median / np.median(inten)
        counts = rng.poisson(inten * scale * k).astype(np.float64)
        noisy = np.maximum(counts, 0.5) / k
        return np.log10(noisy).reshape(x.shape), {"counts_median": counts_median}

    def augment_attrs(self, config: dict) -> dict:
        a = config["augment"]
        return {"counts_median": list(a["counts_median"]),
                "rod_scale_sigma": a["rod_scale_sigma"]}

    # -- readout: the layer parameters ------------------------------------------
    def readout_truth(self, task, dataset: str | Path, structure_index: np.ndarray) -> dict:
        """The true layer parameters of the films ``structure_index``."""
        import zarr

        ds = zarr.open_group(str(dataset), mode="r")
        names = list(ds.attrs["parameter_names"])
        return {"names": names, "units": list(ds.attrs["parameter_units"]),
                "groups": list(ds.attrs["parameter_groups"]),
                "truth": ds["parameters"][...][np.asarray(structure_index)].astype(np.float64)}

    def readout(self, task, predicted: np.ndarray, structure_index: np.ndarray,
                dataset: str | Path, config: dict,
                progress: Callable[[str], None] = print,
                measured: np.ndarray | None = None) -> dict:
        """Fit the layer parameters to every predicted film field (the first
        ``evaluate.fit_films`` films); with the truth for the metrics. With
        ``evaluate.direct_refinement`` and the network's inputs
        (``measured``, log10 I), also the reference without a network: a
        least-squares fit of the parameters to log10 I from the ideal film
        (:func:`.fit.refine_to_intensity`); with ``evaluate.network_refinement``
        the fit to U refined against log10 I (the network's U as the start)."""
        import time

        from .fit import FilmModel, fit_best_thickness, refine_from_network, refine_to_intensity

        n = min(len(predicted), int(config["evaluate"]["fit_films"]))
        direct = config["evaluate"]["direct_refinement"] and measured is not None
        refine = config["evaluate"]["network_refinement"] and measured is not None
        eps = self.config["rods"]["eps"]
        out = self.readout_truth(task, dataset, structure_index[:n])
        g = self.grid()
        opts = self.film_options()
        nominal = (config.get("model") or {}).get("thickness_A")
        if nominal:  # a model of one thickness (train.variants per_thickness): fit that one
            from dataclasses import replace

            from ...forward.ctr import A_STO

            opts = replace(opts, n_layers=(int(round(nominal / A_STO)),))
        pos = {name: i for i, name in enumerate(out["names"])}
        fitted = np.full((n, len(out["names"])), np.nan)
        refined = np.full_like(fitted, np.nan)
        net_refined = np.full_like(fitted, np.nan)
        layers = np.zeros(n, int)
        t0 = time.perf_counter()
        for i in range(n):
            U = (predicted[i, :, 0] + 1j * predicted[i, :, 1]).reshape(g.shape)
            nl, theta, _ = fit_best_thickness(g, opts, U)
            model = FilmModel(g, nl, opts)
            names = self.parameter_names(nl)[0]
            for v, name in zip(theta, names):
                fitted[i, pos[name]] = v
            layers[i] = nl
            cols = [pos[name] for name in names]
            if refine:
                # the network's U gave the start; the exact model against log10 I finishes
                net_refined[i, cols], _ = refine_from_network(
                    model, measured[i].reshape(g.shape), theta, eps=eps)
            if direct:
                # no network: least squares against log10 I from the ideal film
                refined[i, cols], _ = refine_to_intensity(
                    model, measured[i].reshape(g.shape), model.ideal(), eps=eps)
            if (i + 1) % max(1, n // 10) == 0 or i == n - 1:
                progress(f"fit {i + 1}/{n} films ({time.perf_counter() - t0:.1f} s)")
        out.update(predicted=fitted, n_layers=layers)
        out["alternatives"] = {}
        if refine:
            out["alternatives"]["network + fit, refined to log10 I"] = net_refined
        if direct:
            out["alternatives"]["direct fit to log10 I (no network)"] = refined
        return out

    def readout_measured(self, task, prediction: dict, data_path, config: dict,
                         progress: Callable[[str], None] = print) -> dict:
        """Layer parameters of a measured set with standard errors, three ways:

        * ``network + fit``: the fit to the predicted U on the measured grid
          points (masked ones dropped; every thickness of ``films.n_layers``
          tried, the best kept);
        * ``network + fit, refined to log10 I``: that fit refined against the
          measured log10 I (:func:`.fit.refine_from_network`), weighted by
          ``1 / sigma_log10²`` from the set's sigma, its absolute scale a free
          offset (:func:`.fit.refine_to_intensity`);
        * ``direct fit to log10 I (no network)`` (``evaluate.direct_refinement``):
          the same refinement from the ideal film.

        Standard errors from the Jacobian at the solution, scaled by the
        residual variance (:func:`.fit.standard_errors`); ``chi2_red`` of a
        refinement near 1 says the model fits within the stated sigma.
        """
        import time

        from ...campaigns import CampaignError
        from .fit import FilmModel, fit_parameters, refine_from_network, refine_to_intensity
        from .measured import read_table, resample

        g = self.grid()
        if not np.allclose(np.asarray(prediction["l_values"], float), g.L):
            raise CampaignError(f"{data_path}: the prediction's L grid is not this config's "
                                "rods section; use the config the model was trained with")
        cols, meta = read_table(data_path)
        logi, mask, info = resample(cols, meta, g.hk, g.L, where=str(data_path))
        sig = info["sigma_log10"]
        pred = np.asarray(prediction["predicted"], float)[0]
        U = (pred[:, 0] + 1j * pred[:, 1]).reshape(g.shape)
        opts = self.film_options()
        eps = self.config["rods"]["eps"]
        t0 = time.perf_counter()
        best = None
        for nl in opts.n_layers:
            model = FilmModel(g, nl, opts)
            theta, cost, std = fit_parameters(model, U, weights=mask.astype(float),
                                              with_std=True)
            if best is None or cost < best[1]:
                best = (model, cost, theta, std)
        model, cost_u, theta, std = best
        progress(f"fit to the predicted U: {model.n_layers} layers, "
                 f"{time.perf_counter() - t0:.1f} s")
        w = np.where(mask, 1.0 / np.maximum(sig, 1e-6) ** 2, 0.0)
        methods = {"network + fit": (theta, std, {"cost_e2": cost_u})}
        starts = {"network + fit, refined to log10 I": (refine_from_network, theta)}
        if config["evaluate"]["direct_refinement"]:
            starts["direct fit to log10 I (no network)"] = (refine_to_intensity, model.ideal())
        for name, (refine, start) in starts.items():
            th, chi2, sd = refine(model, logi, start, eps=eps, weights=w, free_scale=True,
                                  with_std=True)
            dof = max(1, int(mask.sum()) - len(th) - 1)
            methods[name] = (th, sd, {"chi2_red": chi2 * logi.size / dof})
            progress(f"{name}: chi2_red {methods[name][2]['chi2_red']:.3g}, "
                     f"{time.perf_counter() - t0:.1f} s")
        names, units = self.parameter_names(model.n_layers)
        groups = [parameter_group(n) for n in names]
        return {"names": names, "units": units, "groups": groups,
                "n_layers": int(model.n_layers),
                "masked_fraction": info["masked_fraction"],
                "methods": {k: {"values": [float(v) for v in th],
                                "std": [float(v) for v in sd], **extra}
                            for k, (th, sd, extra) in methods.items()}}

    def plot_measured_readout(self, result: dict, out) -> None:
        from .plots import measured_readout

        measured_readout(result, out)

    # -- measured data --------------------------------------------------------
    def read_measured(self, path, options: dict, manifest: dict, task):
        """A measured CTR set (CSV or HDF5 of h, k, L, I, sigma), resampled
        and masked (:mod:`.measured`)."""
        from .measured import read_measured

        return read_measured(path, options, manifest, task)

    def plot_measured(self, data, info: dict, result: dict, out: str | Path) -> None:
        from .plots import measured_prediction

        measured_prediction(data, info, result, out)

    def plot_readout(self, result: dict, dataset: str | Path, out_dir: str | Path) -> list:
        from .plots import readout_figures

        return readout_figures(self, result, dataset, out_dir)

    # -- plots ----------------------------------------------------------------
    def plot_dataset(self, dataset: str | Path, out: str | Path) -> None:
        from .plots import dataset_overview

        dataset_overview(dataset, out)

    # -- config ---------------------------------------------------------------
    def check_config(self, config: dict) -> None:
        from ...config import ConfigError

        try:
            type(self)(config).film_options()
        except ValueError as exc:
            raise ConfigError(f"config key 'films': {exc}") from None
        r = config["rods"]
        n = r["l_max"] / r["l_step"]
        if abs(n - round(n)) > 1e-9:
            raise ConfigError(f"config key 'rods.l_max': value {r['l_max']} is not a multiple "
                              f"of rods.l_step={r['l_step']}; valid: l_max = n * l_step")
        a = config["augment"]["counts_median"]
        if a[0] > a[1]:
            raise ConfigError(f"config key 'augment.counts_median': value {a} is invalid; "
                              "valid: [low, high] with low <= high")

    def summary_info(self) -> dict:
        f = self.config["films"]
        return {"films": f["count"], "n_layers": list(f["n_layers"]),
                "rough_top": f["rough_top"]}


__all__ = ["LaoStoCtr", "parameter_group", "GROUPS"]
