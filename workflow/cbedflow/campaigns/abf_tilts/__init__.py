"""Campaign ``abf_tilts``: the 3D octahedral tilt pattern of perovskites from
annular-bright-field (ABF) STEM images (Laanait & Borisevich, seed 002).

The method, as for every campaign: build many tilted ABO3 perovskites with
rigid, corner-sharing octahedra in Glazer tilt systems (:mod:`.structures`),
simulate what the microscope records, the ABF and HAADF images of one
in-plane period in the (110)pc projection with frozen phonons and residual
aberrations and mistilt drawn per image (:mod:`cbedflow.forward.stem_image`),
and train 2D CNNs that read the tilt system (classification) and the tilt
angles alpha, beta, gamma (regression, deg) from an ABF patch. The baseline
is what a microscopist does without deep learning: the patch's diffractogram
(Fourier amplitudes, where tilts put their superlattice spots) into a
logistic or ridge regression.

Samples are images: sample ``i`` has the system ``systems[i % n]`` and its
angles, composition, thickness and residuals drawn from (seed, i) alone.
Work units are shards of ``tilts.per_unit`` images (``s00000``...).

The seed's one network with two heads is the task ``tilt_joint``: the same
2D CNN with a classification head (tilt system) and a regression head
(alpha, beta, gamma) on the same features, trained on the tilt_system
task's very examples (same rolls and splits), so it is compared with the
two one-head networks ``tilt_system`` and ``tilt_angles`` on the same test
images (docs/abf.md); the angle head's loss weight, 0.3, was chosen on the
validation split (classification validation loss 0.61 against 0.74 at
1.0). Differences from the seed, by choice: one zone cell
per patch (the whole tilt period), rolled by a random offset, instead of
the seed's unstated patch size.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .. import Label
from ...tasks import Task
from ..stem_images import StemImageCampaign, check_residual_ranges, draw_residuals
from .structures import ANGLE_NAMES, GLAZER


def mirror_x(image: np.ndarray) -> np.ndarray:
    """The periodic image (x, y, ...) of the structure mirrored x -> -x.

    The scan starts at x = 0 (``abtem.GridScan`` without endpoint), so the
    mirror maps pixel i to (-i) mod n: a flip along x and a roll by one
    pixel. Exact for a structure mirrored in a plane that contains the beam
    (multislice and PRISM are symmetric under it) when the probe is mirrored
    too (the residual aberrations and the mistilt are drawn with uniform
    azimuths); tests/test_abf_campaign.py compares it with abTEM's image of
    the mirrored structure (5e-6 to 8e-6 of the contrast). The labels stay:
    lab x is a pseudocubic axis in both zones ([001]pc for [110]pc, [010]pc
    for [100]pc), and a mirror normal to a pseudocubic axis keeps every tilt
    system and the magnitudes of alpha, beta and gamma (the test measures
    them on the mirrored structure). The mirrored structure is the twin
    domain, which the structure builder never makes: for a-a-a-, a-b+a- and
    a0b-b- its image is 0.22-0.34 of the contrast away from every roll of
    the original's (a0a0c- and a0a0c+ are their own twins), so mirrored
    images are not more of the same data but the other domain a real film
    also shows (docs/abf.md, "Twin domains").
    """
    return np.roll(np.flip(image, axis=0), 1, axis=0)


#: Tilt systems, index = class (the tilt_system task's classes).
SYSTEMS: tuple[str, ...] = tuple(GLAZER)


class AbfTilts(StemImageCampaign):
    """ABF-STEM image patches -> Glazer tilt system and tilt angles."""

    name = "abf_tilts"
    shard_section = "tilts"
    count_keys = (("tilts", "per_system"),)  # image i is drawn from (seed, i) alone
    phonon_salt = 52
    title = "Octahedral tilts of perovskites from ABF-STEM images (Laanait & Borisevich)"
    signal = "abf"
    signal_dims = ("x", "y")
    signal_unit = "fraction of the incident probe intensity"
    aux_signals = {"haadf": ("x", "y")}
    labels = (
        Label("tilt_system", "int8", "", "Glazer tilt system", classes=SYSTEMS),
        Label("alpha_deg", "float32", "deg", "Octahedral tilt about pseudocubic x"),
        Label("beta_deg", "float32", "deg", "Octahedral tilt about pseudocubic y"),
        Label("gamma_deg", "float32", "deg", "Octahedral tilt about pseudocubic z"),
        Label("max_tilt_deg", "float32", "deg", "Largest of alpha, beta, gamma"),
        Label("max_tilt_bin", "int8", "deg", "Largest tilt angle, start of its 2-degree bin"),
        Label("composition", "int8", "", "Index into tilts.compositions"),
        Label("thickness_A", "float32", "Å", "Sample thickness along the beam"),
        Label("defocus_A", "float32", "Å", "Residual defocus (positive = underfocus)"),
        Label("mistilt_mrad", "float32", "mrad", "Specimen mistilt magnitude"),
    )
    tasks = {
        "tilt_system": Task(
            "tilt_system", "tilt_system", classes=SYSTEMS, network="cnn2d",
            transform="standardize", breakdown="max_tilt_bin",
            breakdown_title="largest tilt angle (deg, bin start)"),
        "tilt_angles": Task(
            "tilt_angles", ("alpha_deg", "beta_deg", "gamma_deg"), kind="regression",
            units=("deg", "deg", "deg"), network="cnn2d", transform="standardize",
            breakdown="tilt_system", breakdown_title="tilt system (class index)"),
        "tilt_joint": Task(
            "tilt_joint", "tilt_system", classes=SYSTEMS, network="cnn2d",
            transform="standardize", breakdown="max_tilt_bin",
            breakdown_title="largest tilt angle (deg, bin start)",
            aux=("alpha_deg", "beta_deg", "gamma_deg"), aux_units=("deg", "deg", "deg"),
            aux_weight=0.3, options={"rolls_of": "tilt_system"}),
    }
    unit_sections = ("seed", "tilts", "imaging", "residuals")
    example_sections = ("patches",)
    example_meta = {"max_tilt_bin": "int8", "tilt_system": "int8", "composition": "int8",
                    "roll_x": "int16", "roll_y": "int16", "mirrored": "int8"}
    augment_meta = {"dose_e_per_pixel": ("float32", float("inf"))}
    geometry_keys = ("zone", "pixels", "pixel_A", "energy_kV", "semiangle_mrad",
                     "abf_range_mrad")
    packages = ("numpy", "zarr", "ase", "spglib", "abtem", "cbedflow")
    target_accuracy = {"tilt_system": 0.95}
    baseline_name = "logistic/ridge regression on the patch's Fourier amplitudes"
    showcase_section = "showcase"
    showcase_sections = ("seed", "tilts", "imaging", "showcase")

    # -- samples ------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        t = self.config["tilts"]
        return t["per_system"] * len(t["systems"])

    def sample(self, i: int) -> dict:
        """Everything about sample ``i``, drawn from (seed, i) alone."""
        t, im, r = self.config["tilts"], self.config["imaging"], self.config["residuals"]
        rng = np.random.default_rng([self.config["seed"], 51, i])
        system = t["systems"][i % len(t["systems"])]
        angles = GLAZER[system].draw(rng, *t["angle_range_deg"])
        comp = int(rng.integers(len(t["compositions"])))
        repeats = int(rng.choice(im["thickness_repeats"]))
        res = draw_residuals(rng, r)
        return {"structure": f"abf-{i:07d}", "system": system,
                "angles": tuple(float(a) for a in angles), "composition": comp,
                "repeats": repeats, "residuals": res}

    def structure(self, i: int, s: dict | None = None):
        """Sample ``i``'s structure, projected along the zone and
        ``repeats`` zone cells thick (ase.Atoms, orthogonal cell)."""
        from .structures import build_tilted_perovskite, project

        s = s or self.sample(i)
        c = self.config["tilts"]["compositions"][s["composition"]]
        atoms = build_tilted_perovskite(s["system"], s["angles"], a_site=c["a_site"],
                                        b_site=c["b_site"], bond_length_A=c["bond_length_A"])
        return project(atoms, self.config["imaging"]["zone"], s["repeats"],
                       max_strain=self.config["tilts"]["max_strain"])

    def imaging_settings(self):
        from ...forward.stem_image import ImagingSettings

        im = self.config["imaging"]
        return ImagingSettings(
            energy_kV=im["energy_kV"], semiangle_mrad=im["semiangle_mrad"],
            abf_mrad=tuple(im["abf_mrad"]), haadf_mrad=tuple(im["haadf_mrad"]),
            sampling_A=im["sampling_A"], slice_thickness_A=im["slice_thickness_A"],
            pixels=tuple(im["pixels"]), tile=tuple(im["tile"]), method=im["method"],
            sigmas_A=dict(im["phonons"]["sigmas_A"]), parametrization=im["parametrization"],
            device=self.config.get("device", "cpu"), fft_threads=im["fft_threads"])

    # -- units ----------------------------------------------------------------
    def simulate_unit(self, name: str, part: str, batch: int, out: str,
                      progress: Callable[[str], None] = print) -> None:
        import time

        from ...forward.stem_image import simulate_image
        from .structures import measure_tilts

        settings = self.imaging_settings()
        idx = self.shard(name)
        abf, haadf, labels = [], [], []
        t0 = time.perf_counter()
        img = None
        for j, i in enumerate(idx):
            s = self.sample(i)
            atoms = self.structure(i, s)
            img = simulate_image(atoms, settings, self.phonon_seeds(s["structure"]),
                                 s["residuals"])
            measured = np.abs(measure_tilts(atoms)).mean(axis=0)
            abf.append(img.abf)
            haadf.append(img.haadf)
            res = s["residuals"]
            labels.append({
                "structure": s["structure"], "thickness_A": float(atoms.cell[2, 2]),
                "tilt_system": SYSTEMS.index(s["system"]),
                **{f"{a}_deg": v for a, v in zip(ANGLE_NAMES, s["angles"])},
                "max_tilt_deg": float(max(s["angles"])),
                "max_tilt_bin": int(2 * (max(s["angles"]) // 2)), "composition": s["composition"],
                "defocus_A": res.defocus_A,
                "mistilt_mrad": float(np.hypot(*res.mistilt_mrad)),
                "residuals": res.to_dict(),
                "measured_tilts_deg": measured.tolist(),
                "strain_pc": [float(v) for v in atoms.info.get("strain_pc", (0, 0, 0))],
                "pixel_A": list(img.pixel_A)})
            progress(f"{name}: image {j + 1}/{len(idx)} ({s['system']}, "
                     f"{', '.join(f'{a:.1f}' for a in s['angles'])} deg, "
                     f"{float(atoms.cell[2, 2]):.1f} Å) {img.seconds:.1f} s; "
                     f"{time.perf_counter() - t0:.1f} s in all")
        self.write_unit(out, name, part, {self.signal: abf, "haadf": haadf}, labels, img,
                        settings)

    @property
    def thicknesses(self) -> dict[str, float]:
        """Nominal thickness [Å] of every ``imaging.thickness_repeats``
        (zone cells of the untilted first composition, a_pc = 2 bond)."""
        a = 2 * self.config["tilts"]["compositions"][0]["bond_length_A"]
        cell = 2 * a * (np.sqrt(2) if self.config["imaging"]["zone"] == "110" else 1.0)
        return {f"{r}c": float(r * cell) for r in self.config["imaging"]["thickness_repeats"]}

    def sample_classes(self, task) -> dict[str, int]:
        t = self.config["tilts"]["systems"]
        if task.is_regression:
            return {f"abf-{i:07d}": 0 for i in range(self.n_samples)}
        return {f"abf-{i:07d}": SYSTEMS.index(t[i % len(t)]) for i in range(self.n_samples)}

    # -- collect --------------------------------------------------------------
    def dataset_attrs(self, unit_attrs: dict) -> dict:
        im = self.config["imaging"]
        pixel = unit_attrs["plane_labels"][0]["pixel_A"]
        return {"zone": im["zone"], "pixels": list(im["pixels"]), "pixel_A": pixel,
                "energy_kV": im["energy_kV"], "semiangle_mrad": im["semiangle_mrad"],
                "abf_range_mrad": unit_attrs["abf_range_mrad"],
                "haadf_range_mrad": unit_attrs["haadf_range_mrad"],
                "systems": list(SYSTEMS),
                "compositions": [c["name"] for c in self.config["tilts"]["compositions"]]}

    def describe_dataset(self, ds) -> list[str]:
        s = ds[self.signal].shape
        return [f"  {s[0]} ABF images of {s[1]} x {s[2]} pixels, zone {ds.attrs['zone']}"]

    # -- examples -------------------------------------------------------------
    def cut_examples(self, signal: np.ndarray, task, config: dict, sample: int = 0,
                     split: str = "test", aux: dict | None = None,
                     reference: dict | None = None, target=None):
        """The periodic image rolled by random offsets (seeded per sample and
        task): ``patches.train_windows`` copies for training, one otherwise;
        with ``patches.train_mirror`` every training copy again as the image
        of the structure mirrored x -> -x (:func:`mirror_x`, labels
        unchanged, metadata ``mirrored``). A task whose ``options`` name
        ``rolls_of`` another takes that task's rolls (the same examples)."""
        n = config["patches"]["train_windows"] if split == "train" else 1
        rolls_of = task.options.get("rolls_of", task.name)
        rng = np.random.default_rng([config["seed"], 53, zlib.crc32(rolls_of.encode()),
                                     sample])
        out = []
        for _ in range(n):
            rx, ry = (int(rng.integers(m)) for m in signal.shape)
            out.append((np.roll(signal, (rx, ry), axis=(0, 1)),
                        {"roll_x": rx, "roll_y": ry, "mirrored": 0}))
        if split == "train" and config["patches"].get("train_mirror", False):
            out += [(mirror_x(x), {**meta, "mirrored": 1}) for x, meta in out]
        return out

    def example_attrs(self, dataset_attrs: dict, config: dict, task) -> dict:
        return {"dims": ["example", *self.signal_dims],
                **{k: dataset_attrs[k] for k in self.geometry_keys}}

    def augment_example(self, x: np.ndarray, rng: np.random.Generator, config: dict):
        """Poisson counting noise at a dose per pixel drawn log-uniformly in
        ``augment.dose_e_per_pixel`` (the image in fractions of the probe)."""
        lo, hi = np.log(config["augment"]["dose_e_per_pixel"])
        dose = float(np.exp(rng.uniform(lo, hi)))
        return rng.poisson(np.clip(x, 0, None) * dose) / dose, {"dose_e_per_pixel": dose}

    def augment_attrs(self, config: dict) -> dict:
        return {"dose_e_per_pixel": list(config["augment"]["dose_e_per_pixel"])}

    # -- baseline -------------------------------------------------------------
    def baseline_features(self, x: np.ndarray, config: dict) -> np.ndarray:
        """Fourier amplitudes |F| of each patch (the diffractogram, which a
        roll leaves unchanged), normalised by the mean intensity."""
        x = np.asarray(x, np.float64)
        f = np.abs(np.fft.rfft2(x, axes=(-2, -1)))
        f /= np.maximum(f[..., :1, :1], 1e-12)
        return f.reshape(len(x), -1)

    # -- showcase: tilt maps of a simulated interface --------------------------
    def showcase_sides(self, config: dict | None = None) -> tuple:
        """The substrate and film (:class:`.interface.Side`) of the
        ``showcase`` section: every free angle of a system at its
        ``tilt_deg`` [deg]."""
        from .interface import Side

        sc = (config or self.config)["showcase"]
        return tuple(Side(sc[k]["system"],
                          GLAZER[sc[k]["system"]].angles(
                              [sc[k]["tilt_deg"]] * GLAZER[sc[k]["system"]].n_free),
                          sc[k]["cells"]) for k in ("substrate", "film"))

    def showcase_image(self, out_dir, progress: Callable[[str], None] = print) -> dict:
        """The interface image (:func:`.interface.simulate_interface`): the ABF
        image resampled to square pixels (:func:`.interface.square_pixels`),
        ``showcase.y_periods`` zone cells tall, as ``image.npy`` (rows = y, as
        a microscope writes it), and ``truth.json``: the two sides
        (:func:`.interface.sides_of`), the zone cells, the film's strain, the
        pixel size [Å] and ``predict_options`` (``scan_step_A``)."""
        import json

        from .interface import simulate_interface, sides_of, square_pixels

        sc = self.config["showcase"]
        substrate, film = self.showcase_sides()
        img, atoms = simulate_interface(self, substrate, film, sc["thickness_repeats"],
                                        progress)
        square = square_pixels(img.abf.T, img.pixel_A)
        px = float(img.pixel_A[0])
        out = Path(out_dir)
        np.save(out / "image.npy", np.tile(square, (sc["y_periods"], 1)))
        truth = {"sides": sides_of(atoms), "cells": atoms.info["cells"],
                 "interface_A": atoms.info["interface_A"],
                 "film_strain": atoms.info["film_strain"], "pixel_A": [px, px],
                 "simulated_pixel_A": list(img.pixel_A), "shape_xy": list(img.abf.shape),
                 "thickness_A": float(atoms.cell[2, 2]), "seconds": round(img.seconds, 1),
                 "settings": img.settings.to_dict(), "predict_options": {"scan_step_A": px}}
        (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        progress(f"interface image {square.shape[1]} x {square.shape[0]} pixels of {px:.4f} Å "
                 f"({substrate.system} | {film.system}) in {img.seconds:.1f} s")
        return truth

    def showcase_maps(self, image, truth: dict, predictions: dict, out) -> dict:
        """Score the windows within one side (:func:`.interface.score_windows`)
        and draw the predicted maps beside the truth
        (:func:`.plots.interface_maps`)."""
        from .interface import score_windows, window_sides, window_starts
        from .plots import interface_maps

        score: dict = {"tasks": {}}
        for task, r in predictions.items():
            x0, width = window_starts(r)
            side = window_sides(truth["sides"], x0, width)
            if r["kind"] == "classification":
                classes = list(r["classes"])
                p = [classes[i] for i in np.argmax(np.asarray(r["probabilities"]), axis=1)]
                score["tasks"][task] = score_windows(truth["sides"], side, systems=p)
            else:
                score["tasks"][task] = score_windows(truth["sides"], side,
                                                     angles_deg=np.asarray(r["predicted"]))
        interface_maps(np.load(image), truth, predictions, score, out)
        return score

    # -- config ---------------------------------------------------------------
    def check_showcase(self, config: dict) -> None:
        """The ``showcase`` section: systems the models learn, tilts that fit
        the systems and the strain limit (before any simulation)."""
        from ...config import ConfigError
        from .interface import build_interface, first_composition

        sc, learned = config["showcase"], config["tilts"]["systems"]
        for k in ("substrate", "film"):
            system, tilt = sc[k]["system"], sc[k]["tilt_deg"]
            if system not in learned:
                raise ConfigError(f"config key 'showcase.{k}.system': value {system!r} is not "
                                  "a tilt system the models learn; valid: one of tilts.systems "
                                  f"({', '.join(learned)})")
            if (GLAZER[system].n_free == 0) != (tilt == 0):
                raise ConfigError(f"config key 'showcase.{k}.tilt_deg': value {tilt!r} is "
                                  f"invalid for {system}; valid: "
                                  + ("0 (untilted)" if GLAZER[system].n_free == 0
                                     else "> 0 deg (a tilted system)"))
        try:
            build_interface(*self.showcase_sides(config), config["imaging"]["zone"], 1,
                            **first_composition(config))
        except ValueError as exc:
            raise ConfigError(f"config key 'showcase': {exc}") from None

    def hashed_section(self, name: str, value):
        """``patches.train_mirror`` off hashes as absent: runs made before the
        option existed are not rerun."""
        if name == "patches" and isinstance(value, dict) and not value.get("train_mirror", True):
            return {k: v for k, v in value.items() if k != "train_mirror"}
        return value

    def check_config(self, config: dict) -> None:
        from ...config import ConfigError
        from ...forward import SimulationConfigError
        from .structures import build_tilted_perovskite, project

        t, im = config["tilts"], config["imaging"]
        lo, hi = t["angle_range_deg"]
        if lo > hi:
            raise ConfigError(f"config key 'tilts.angle_range_deg': value {[lo, hi]} is "
                              "invalid; valid: [low, high] with low <= high")
        check_residual_ranges(config)
        elements = set()
        for c in t["compositions"]:
            elements |= {c["a_site"], c["b_site"], "O"}
        missing = sorted(elements - set(im["phonons"]["sigmas_A"]))
        if missing:
            raise ConfigError(f"config key 'imaging.phonons.sigmas_A': no value for "
                              f"{', '.join(missing)}; valid: one sigma [Å] per element of "
                              "every composition")
        camp = type(self)(config)
        # the largest tilts of every system: the strain of the zone and the detectors
        for system in t["systems"]:
            g = GLAZER[system]
            angles = g.angles([hi] * g.n_free)
            c = t["compositions"][0]
            try:
                atoms = project(build_tilted_perovskite(system, angles, a_site=c["a_site"],
                                                        b_site=c["b_site"],
                                                        bond_length_A=c["bond_length_A"]),
                                im["zone"], 1, max_strain=t["max_strain"])
            except ValueError as exc:
                raise ConfigError(f"config key 'tilts': {system} at {hi} deg: {exc}") from None
        try:
            camp.imaging_settings().check((float(atoms.cell[0, 0]), float(atoms.cell[1, 1])))
        except SimulationConfigError as exc:
            raise ConfigError(f"config key 'imaging': {exc}") from None
        a = config["augment"].get("dose_e_per_pixel", [1, 1])
        if a[0] > a[1]:
            raise ConfigError(f"config key 'augment.dose_e_per_pixel': value {a} is invalid; "
                              "valid: [low, high] with low <= high")
        if config["showcase"]["enabled"]:
            self.check_showcase(config)

    def summary_info(self) -> dict:
        t = self.config["tilts"]
        return {"images": self.n_samples, "systems": list(t["systems"]),
                "compositions": [c["name"] for c in t["compositions"]],
                "angle_range_deg": list(t["angle_range_deg"])}


__all__ = ["AbfTilts", "SYSTEMS"]
