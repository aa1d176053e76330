"""Campaign ``bfo_polarization``: polarization maps of (Sm-doped) BiFeO3 from
HAADF-STEM images (Ghosh et al., seed 003).

The method, as for every campaign: build many BiFeO3 films viewed along
[001]pc whose B-site (Fe) columns are displaced per unit cell by a
polarization field (uniform domains, stripe domains with 71/109 deg walls,
smooth random fields, or none; :mod:`.structures`), with Sm on a random
fraction of the A sites; simulate the HAADF image of the periodic supercell
with frozen phonons and residual aberrations and specimen mistilt drawn per
image (:mod:`cbedflow.forward.stem_image`); cut sub-images centred on every
B site (the seed's atom-finding variant) or on a regular grid (its
non-centred variant); train a 2D CNN that regresses P = (P_x, P_y) [pm] of
the cell. The baseline is the traditional method, with no training: find
the columns, fit each with a 2D Gaussian, P = Fe minus the mean of its four
Bi neighbours (:mod:`.columns`), on the same noisy test sub-images.

Label convention (the seed's): P of a cell is the projected vector from the
centre of its four A-site columns to its B-site column [pm]. The physical
polarization of BiFeO3 points the other way.

Samples are images: image ``i`` has composition ``compositions[i % n]`` and
everything else (field kind, magnitude, Sm sites, thickness, residuals,
phonon seeds) drawn from (seed, i) alone. Work units are shards of
``film.per_unit`` images (``s00000``...). Held-out images are scored at
every dose of ``noise.doses_e_per_A2`` (Poisson counting noise and scan-line
jitter on the whole image before it is cut), the training split gets
noisy copies at doses drawn between them (``augment``).
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from .. import Label
from ...tasks import Task
from ..stem_images import StemImageCampaign, check_residual_ranges, draw_residuals
from .structures import FIELDS

#: Polarization-field kinds, index = the ``field_kind`` label.
FIELD_KINDS: tuple[str, ...] = tuple(FIELDS)
#: Where sub-images are centred (``patches.centre``).
CENTRES = ("b_site", "grid")


def _task(name: str, train_only=None) -> Task:
    return Task(name, "polarization_pm", kind="regression", targets=("P_x_pm", "P_y_pm"),
                units=("pm", "pm"), network="cnn2d", transform="standardize",
                breakdown="dose_e_per_A2", breakdown_title="dose (e/Å²; inf = noise-free)",
                also_by=("composition", "field_kind"), vector=True, train_only=train_only)


def jitter_lines(img: np.ndarray, sigma_px: float, rng: np.random.Generator,
                 periodic: bool) -> np.ndarray:
    """Scan-line jitter: every line along the fast scan axis (x, axis 0)
    shifted along x by its own normal offset of ``sigma_px`` pixels (linear
    interpolation; ``periodic``: the image wraps, else edges are held)."""
    if sigma_px <= 0:
        return img
    nx = img.shape[0]
    x = np.arange(nx, dtype=float)
    out = np.empty_like(img, dtype=float)
    for j, s in enumerate(rng.normal(0.0, sigma_px, img.shape[1])):
        if periodic:
            out[:, j] = np.interp((x - s) % nx, x, img[:, j], period=nx)
        else:
            out[:, j] = np.interp(np.clip(x - s, 0, nx - 1), x, img[:, j])
    return out


def noisy(img: np.ndarray, dose_e_per_A2: float, pixel_A: float, jitter_pm: float,
          rng: np.random.Generator, periodic: bool) -> np.ndarray:
    """``img`` (fraction of the probe intensity per pixel) as recorded at a
    dose [e/Å²]: scan-line jitter [pm], then Poisson counts of dose x pixel
    area electrons per probe position, divided back by that number."""
    out = jitter_lines(np.asarray(img, float), jitter_pm / 100.0 / pixel_A, rng, periodic)
    n = dose_e_per_A2 * pixel_A ** 2
    return rng.poisson(np.clip(out, 0, None) * n) / n


class BfoPolarization(StemImageCampaign):
    """HAADF-STEM sub-images -> the projected polarization P of the cell [pm]."""

    name = "bfo_polarization"
    shard_section = "film"
    phonon_salt = 64
    title = "Polarization of (Sm-doped) BiFeO3 from HAADF-STEM images (Ghosh et al.)"
    signal = "haadf"
    signal_dims = ("x", "y")
    signal_unit = "fraction of the incident probe intensity"
    aux_signals = {"abf": ("x", "y")}
    labels = (
        Label("polarization_pm", "float32", "pm",
              "Per cell: B-site column minus the centre of its four A-site columns, projected",
              dims=("cell_x", "cell_y", "component")),
        Label("field_kind", "int8", "", "Kind of polarization field", classes=FIELD_KINDS),
        Label("magnitude_pm", "float32", "pm", "Field magnitude (largest cell |P|)"),
        Label("composition", "int8", "", "Index into film.compositions"),
        Label("doped", "int8", "", "1 if the composition has a dopant fraction > 0"),
        Label("dopant_fraction", "float32", "", "Realised fraction of A sites with the dopant"),
        Label("thickness_A", "float32", "Å", "Sample thickness along the beam"),
        Label("defocus_A", "float32", "Å", "Residual defocus (positive = underfocus)"),
        Label("mistilt_x_mrad", "float32", "mrad", "Specimen mistilt about y (x shift with z)"),
        Label("mistilt_y_mrad", "float32", "mrad", "Specimen mistilt about x (y shift with z)"),
    )
    tasks = {
        "polarization": _task("polarization"),
        "polarization_undoped": _task("polarization_undoped", ("doped", 0)),
        "polarization_doped": _task("polarization_doped", ("doped", 1)),
    }
    unit_sections = ("seed", "film", "imaging", "residuals")
    example_sections = ("patches", "noise", "film", "imaging")
    augment_sections = ("noise", "film", "imaging")
    baseline_sections = ("film", "imaging")
    example_meta = {"dose_e_per_A2": "float32", "composition": "int8", "field_kind": "int8",
                    "cell_x": "int16", "cell_y": "int16"}
    augment_meta = {"train_dose_e_per_A2": ("float32", float("inf"))}
    geometry_keys = ("pixel_A", "window_px", "centre", "a_A", "energy_kV", "semiangle_mrad",
                     "haadf_range_mrad")
    packages = ("numpy", "zarr", "ase", "abtem", "cbedflow")
    baseline_name = "Gaussian fits of the five columns, P = Fe - mean(Bi) (no training)"
    baseline_direct = True

    # -- samples ------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.config["film"]["images"])

    @property
    def cells(self) -> tuple[int, int]:
        return tuple(int(c) for c in self.config["film"]["cells"])

    @property
    def pixel_A(self) -> float:
        """Probe step [Å]: ``pixels_per_cell`` per pseudocubic cell."""
        return self._pixel(self.config)

    def sample(self, i: int) -> dict:
        """Everything about image ``i``, drawn from (seed, i) alone."""
        from .structures import polarization_field

        f, im, r = self.config["film"], self.config["imaging"], self.config["residuals"]
        rng = np.random.default_rng([self.config["seed"], 61, i])
        comp = i % len(f["compositions"])
        c = f["compositions"][comp]
        # sorted: the draw must not depend on the order of the config's keys
        # (a job receives them sorted, a YAML file lists them as written)
        kinds = sorted(k for k, w in f["fields"].items() if w > 0)
        w = np.array([f["fields"][k] for k in kinds], float)
        kind = str(kinds[int(rng.choice(len(kinds), p=w / w.sum()))])
        magnitude = float(rng.uniform(*c["magnitude_pm"]))
        options = {"stripes": {"wall_width_cells": f["wall_width_cells"]},
                   "random": {"correlation_cells": f["correlation_cells"]}}.get(kind, {})
        field = polarization_field(kind, self.cells, magnitude,
                                   np.random.default_rng([self.config["seed"], 62, i]), **options)
        field[:f["substrate_cells"]] = 0.0  # the SrTiO3 substrate is paraelectric
        repeats = int(rng.choice(im["thickness_repeats"]))
        res = draw_residuals(rng, r)
        return {"structure": f"bfo-{i:07d}", "composition": comp, "kind": kind,
                "magnitude_pm": magnitude, "field_pm": field, "repeats": repeats,
                "residuals": res}

    def structure(self, i: int, s: dict | None = None):
        """Image ``i``'s supercell (ase.Atoms, orthogonal, ``repeats`` cells thick)."""
        from .structures import build_bfo

        s = s or self.sample(i)
        f = self.config["film"]
        c = f["compositions"][s["composition"]]
        return build_bfo(s["field_pm"], s["repeats"], a_A=f["a_A"],
                         dopant_fraction=c["dopant_fraction"],
                         rng=np.random.default_rng([self.config["seed"], 63, i]),
                         a_site=f["a_site"], dopant=c.get("dopant", "Sm"), b_site=f["b_site"],
                         oxygen_follow=f["oxygen_follow"], substrate_cells=f["substrate_cells"],
                         substrate=(f["substrate"]["a_site"], f["substrate"]["b_site"]))

    def imaging_settings(self):
        from ...forward.stem_image import ImagingSettings

        im = self.config["imaging"]
        ppc = im["pixels_per_cell"]
        return ImagingSettings(
            energy_kV=im["energy_kV"], semiangle_mrad=im["semiangle_mrad"],
            haadf_mrad=tuple(im["haadf_mrad"]), sampling_A=im["sampling_A"],
            slice_thickness_A=im["slice_thickness_A"],
            pixels=(self.cells[0] * ppc, self.cells[1] * ppc), tile=(1, 1),
            interpolation=tuple(im["interpolation"]), method=im["method"],
            sigmas_A=dict(im["phonons"]["sigmas_A"]), parametrization=im["parametrization"],
            device=self.config.get("device", "cpu"), fft_threads=im["fft_threads"])

    # -- units ----------------------------------------------------------------
    def simulate_unit(self, name: str, part: str, batch: int, out: str,
                      progress: Callable[[str], None] = print) -> None:
        import time

        from ...forward.stem_image import simulate_image
        from ...storage import CorruptOutputError
        from .structures import measure_polarization

        settings = self.imaging_settings()
        f = self.config["film"]
        idx = self.shard(name)
        haadf, abf, fields, labels = [], [], [], []
        t0 = time.perf_counter()
        img = None
        for j, i in enumerate(idx):
            s = self.sample(i)
            atoms = self.structure(i, s)
            # the label is what the atoms hold (an independent measurement)
            got = measure_polarization(atoms, self.cells, f["a_A"],
                                       a_sites=(f["a_site"], *self._dopants(),
                                                f["substrate"]["a_site"]),
                                       b_site=(f["b_site"], f["substrate"]["b_site"]))
            if np.abs(got - s["field_pm"]).max() > 1e-3:
                raise CorruptOutputError(f"{name}: image {i}: the built atoms hold a field "
                                         f"{np.abs(got - s['field_pm']).max():.3g} pm off "
                                         "the drawn one")
            img = simulate_image(atoms, settings, self.phonon_seeds(s["structure"]),
                                 s["residuals"])
            haadf.append(img.haadf)
            abf.append(img.abf)
            fields.append(got)
            res = s["residuals"]
            labels.append({
                "structure": s["structure"], "thickness_A": float(atoms.cell[2, 2]),
                "field_kind": FIELD_KINDS.index(s["kind"]), "magnitude_pm": s["magnitude_pm"],
                "composition": s["composition"],
                "doped": int(f["compositions"][s["composition"]]["dopant_fraction"] > 0),
                "dopant_fraction": float(atoms.info["dopant_fraction"]),
                "defocus_A": res.defocus_A, "mistilt_x_mrad": res.mistilt_mrad[0],
                "mistilt_y_mrad": res.mistilt_mrad[1], "residuals": res.to_dict(),
                "pixel_A": list(img.pixel_A)})
            progress(f"{name}: image {j + 1}/{len(idx)} ({s['kind']}, "
                     f"{s['magnitude_pm']:.0f} pm, "
                     f"{f['compositions'][s['composition']]['name']}, "
                     f"{float(atoms.cell[2, 2]):.1f} Å) {img.seconds:.1f} s; "
                     f"{time.perf_counter() - t0:.1f} s in all")
        self.write_unit(out, name, part, {self.signal: haadf, "abf": abf,
                                          "polarization_pm": fields}, labels, img, settings)

    def _dopants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.get("dopant", "Sm")
                                   for c in self.config["film"]["compositions"]))

    @property
    def thicknesses(self) -> dict[str, float]:
        """Nominal thickness [Å] of every ``imaging.thickness_repeats``."""
        a = float(self.config["film"]["a_A"])
        return {f"{r}c": float(r * a) for r in self.config["imaging"]["thickness_repeats"]}

    def sample_classes(self, task) -> dict[str, int]:
        return {f"bfo-{i:07d}": 0 for i in range(self.n_samples)}

    # -- collect --------------------------------------------------------------
    def dataset_attrs(self, unit_attrs: dict) -> dict:
        im, f = self.config["imaging"], self.config["film"]
        return {"pixel_A": self.pixel_A, "cells": list(self.cells), "a_A": f["a_A"],
                "pixels_per_cell": im["pixels_per_cell"], "energy_kV": im["energy_kV"],
                "semiangle_mrad": im["semiangle_mrad"],
                "haadf_range_mrad": unit_attrs["haadf_range_mrad"],
                "abf_range_mrad": unit_attrs["abf_range_mrad"],
                "field_kinds": list(FIELD_KINDS),
                "compositions": [c["name"] for c in f["compositions"]]}

    def describe_dataset(self, ds) -> list[str]:
        s = ds[self.signal].shape
        c = ds.attrs["cells"]
        return [f"  {s[0]} HAADF images of {c[0]} x {c[1]} cells ({s[1]} x {s[2]} pixels of "
                f"{ds.attrs['pixel_A']:.3f} Å)"]

    # -- examples -------------------------------------------------------------
    def window_px(self, config: dict | None = None) -> int:
        """Sub-image width [pixels], odd so a pixel sits at its centre."""
        c = config or self.config
        w = int(round(c["patches"]["window_cells"] * c["imaging"]["pixels_per_cell"]))
        return w + 1 - w % 2

    def centres_px(self, field_pm: np.ndarray, config: dict, sample: int) -> np.ndarray:
        """Pixel (x, y) at the centre of every cell's sub-image, (nx, ny, 2):
        the nearest pixel to its B-site column (``b_site``) or a regular grid
        at an offset drawn per image (``grid``)."""
        ppc = config["imaging"]["pixels_per_cell"]
        nx, ny = field_pm.shape[:2]
        ij = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), -1) + 0.5
        if config["patches"]["centre"] == "b_site":
            pos = ij + field_pm / 100.0 / float(config["film"]["a_A"])
        else:
            rng = np.random.default_rng([config["seed"], 65, sample])
            pos = ij + rng.uniform(-0.5, 0.5, 2)
        return np.rint(pos * ppc).astype(int)

    @staticmethod
    def windows(img: np.ndarray, centres: np.ndarray, w: int) -> np.ndarray:
        """(n, w, w) sub-images of a periodic image around pixel ``centres`` (n, 2)."""
        h = w // 2
        off = np.arange(-h, h + 1)
        ix = (centres[:, 0, None] + off) % img.shape[0]
        iy = (centres[:, 1, None] + off) % img.shape[1]
        return img[ix[:, :, None], iy[:, None, :]]

    def cut_examples(self, signal: np.ndarray, task, config: dict, sample: int = 0,
                     split: str = "test", aux: dict | None = None,
                     reference: dict | None = None, target=None):
        """One sub-image per cell, its target the cell's P [pm]. Training:
        the noise-free image (the augment stage adds noise); validation and
        test: the whole image recorded at every dose of
        ``noise.doses_e_per_A2`` (seeded per image, dose and split)."""
        field = np.asarray(target, float)
        centres = self.centres_px(field, config, sample).reshape(-1, 2)
        cells = np.stack(np.meshgrid(*map(np.arange, field.shape[:2]), indexing="ij"),
                         -1).reshape(-1, 2)
        ys = field.reshape(-1, 2)
        w = self.window_px(config)
        doses = [float("inf")] if split == "train" else config["noise"]["doses_e_per_A2"]
        out = []
        for k, dose in enumerate(doses):
            img = np.asarray(signal, float)
            if np.isfinite(dose):
                rng = np.random.default_rng([config["seed"], 66, sample, k,
                                             zlib.crc32(split.encode())])
                img = noisy(img, dose, self._pixel(config), config["noise"]["scan_jitter_pm"],
                            rng, periodic=True)
            for x, (cx, cy), y in zip(self.windows(img, centres, w), cells, ys):
                out.append((x, {"y": y, "cell_x": int(cx), "cell_y": int(cy),
                                "dose_e_per_A2": dose}))
        return out

    @staticmethod
    def _pixel(config: dict) -> float:
        """Probe step [Å] of a config (the stages get their sections, not the campaign's)."""
        return float(config["film"]["a_A"]) / config["imaging"]["pixels_per_cell"]

    def example_attrs(self, dataset_attrs: dict, config: dict, task) -> dict:
        return {"dims": ["example", *self.signal_dims], "window_px": self.window_px(config),
                "centre": config["patches"]["centre"],
                **{k: dataset_attrs[k] for k in self.geometry_keys
                   if k not in ("window_px", "centre")},
                "doses_e_per_A2": list(config["noise"]["doses_e_per_A2"])}

    def augment_example(self, x: np.ndarray, rng: np.random.Generator, config: dict):
        """Scan-line jitter and Poisson noise at a dose drawn log-uniformly
        between the smallest and largest ``noise.doses_e_per_A2``."""
        d = config["noise"]["doses_e_per_A2"]
        dose = float(np.exp(rng.uniform(np.log(min(d)), np.log(max(d)))))
        return (noisy(x, dose, self._pixel(config), config["noise"]["scan_jitter_pm"], rng,
                      periodic=False), {"train_dose_e_per_A2": dose})

    def augment_attrs(self, config: dict) -> dict:
        d = config["noise"]["doses_e_per_A2"]
        return {"train_dose_e_per_A2": [min(d), max(d)],
                "scan_jitter_pm": config["noise"]["scan_jitter_pm"]}

    # -- baseline -------------------------------------------------------------
    def baseline_features(self, x: np.ndarray, config: dict) -> np.ndarray:
        """The traditional estimate of P [pm] of every sub-image
        (:func:`.columns.gaussian_fit_polarization_batch`); NaN where it
        finds no cell."""
        from .columns import gaussian_fit_polarization_batch

        return gaussian_fit_polarization_batch(np.asarray(x, float), self._pixel(config),
                                               float(config["film"]["a_A"]))

    # -- config ---------------------------------------------------------------
    @classmethod
    def schema_fragment(cls) -> dict:
        """``schema.yaml`` beside this module, with the ``residuals`` section
        of the ABF campaign (one definition of residual aberrations)."""
        from ..abf_tilts import AbfTilts

        frag = super().schema_fragment()
        frag["residuals"] = AbfTilts.schema_fragment()["residuals"]
        return frag

    def check_config(self, config: dict) -> None:
        from ...config import ConfigError
        from ...forward import SimulationConfigError
        from .structures import polarization_field

        f, im = config["film"], config["imaging"]
        camp = type(self)(config)
        check_residual_ranges(config)
        if not any(w > 0 for w in f["fields"].values()):
            raise ConfigError(f"config key 'film.fields': value {f['fields']} is invalid; "
                              "valid: a weight > 0 for at least one field kind")
        limit = 25.0 * f["a_A"]  # the builder's: |P| < a/4
        for c in f["compositions"]:
            lo, hi = c["magnitude_pm"]
            if lo > hi or hi >= limit:
                raise ConfigError(f"config key 'film.compositions': {c['name']} magnitude_pm "
                                  f"{[lo, hi]} is invalid; valid: [low, high], low <= high < "
                                  f"{limit:.0f} pm (a/4)")
        elements = {f["a_site"], f["b_site"], "O"} | {c.get("dopant", "Sm")
                                                      for c in f["compositions"]}
        if f["substrate_cells"]:
            elements |= {f["substrate"]["a_site"], f["substrate"]["b_site"]}
            if f["substrate_cells"] >= camp.cells[0]:
                raise ConfigError(f"config key 'film.substrate_cells': value "
                                  f"{f['substrate_cells']} is invalid; valid: 0 .. "
                                  f"{camp.cells[0] - 1} (fewer than film.cells[0])")
        missing = sorted(elements - set(im["phonons"]["sigmas_A"]))
        if missing:
            raise ConfigError(f"config key 'imaging.phonons.sigmas_A': no value for "
                              f"{', '.join(missing)}; valid: one sigma [Å] per element")
        if f["fields"].get("stripes", 0) > 0 and max(camp.cells) < 2:
            raise ConfigError(f"config key 'film.cells': value {list(camp.cells)} is invalid "
                              "for stripes; valid: at least 2 cells along one axis")
        try:
            polarization_field("random", camp.cells, 1.0, np.random.default_rng(0),
                               correlation_cells=f["correlation_cells"])
        except ValueError as exc:
            raise ConfigError(f"config key 'film': {exc}") from None
        ext = [c * f["a_A"] for c in camp.cells]
        win = [e / i for e, i in zip(ext, im["interpolation"])]
        if min(win) < f["a_A"]:
            raise ConfigError(f"config key 'imaging.interpolation': value {im['interpolation']} "
                              f"is invalid for {list(camp.cells)} cells; valid: a probe window "
                              "(cells / interpolation) of at least one cell")
        try:
            camp.imaging_settings().check(ext)
        except SimulationConfigError as exc:
            raise ConfigError(f"config key 'imaging': {exc}") from None
        if camp.window_px(config) > min(camp.cells) * im["pixels_per_cell"]:
            raise ConfigError(f"config key 'patches.window_cells': value "
                              f"{config['patches']['window_cells']} is invalid; valid: at most "
                              f"the supercell ({min(camp.cells)} cells)")

    def summary_info(self) -> dict:
        f = self.config["film"]
        return {"images": self.n_samples, "cells_per_image": int(np.prod(self.cells)),
                "compositions": [c["name"] for c in f["compositions"]],
                "fields": dict(f["fields"])}


__all__ = ["BfoPolarization", "FIELD_KINDS", "jitter_lines", "noisy"]
