"""A toy campaign: the whole method in seconds, for the generic stages' tests.

Samples are single Gaussian "atomic columns" in a small image: a round or an
elongated column (classification task ``shape``), displaced from the image
centre by (x0, y0) [pm] (regression task ``offset``), at a thickness of 10 or
20 Å that scales the column's intensity. The forward model is analytic
(the image of a 2D Gaussian, integrated over every pixel with error
functions, plus a constant background), and every batch of a unit moves the
column by a seeded random jitter that collect averages, as frozen phonons
are averaged. A unit holds several samples (``plane_labels``), so the
generic collect stage's several-samples path runs too.

Configs name it ``campaign: toy_campaign:ToyCampaign`` with ``tests/`` on
``PYTHONPATH``; nothing in ``workflow/`` knows it.
"""

from __future__ import annotations

import numpy as np

from cbedflow.campaigns import Campaign, Label
from cbedflow.config import ConfigError, config_hash
from cbedflow.storage import atomic_group, write_attrs
from cbedflow.tasks import Task

SCHEMA = {
    "toy": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "The toy campaign's samples and images.",
        "properties": {
            "samples": {"type": "integer", "minimum": 4, "default": 200,
                        "description": "Samples (columns) in the campaign."},
            "samples_per_unit": {"type": "integer", "minimum": 1, "default": 20,
                                 "description": "Samples one simulation unit computes."},
            "batches": {"type": "integer", "minimum": 1, "default": 2,
                        "description": "Jitter batches per unit, averaged by collect."},
            "image_px": {"type": "integer", "minimum": 4, "default": 16,
                         "description": "Image side [pixels]."},
            "pixel_pm": {"type": "number", "exclusiveMinimum": 0, "default": 25.0,
                         "description": "Pixel size [pm]."},
            "max_offset_pm": {"type": "number", "minimum": 0, "default": 60.0,
                              "description": "Column offsets are drawn uniformly from "
                                             "+-max_offset_pm [pm]."},
            "jitter_pm": {"type": "number", "minimum": 0, "default": 4.0,
                          "description": "Random displacement of every batch [pm]."},
        },
    },
    "augment": {"properties": {
        "dose_e_per_image": {
            "type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
            "minItems": 2, "maxItems": 2, "default": [2000.0, 20000.0],
            "description": "Range of the electron dose per image for Poisson noise [e-]."},
    }},
}

#: Column widths (sigma_x, sigma_y) [pm] of the two shapes.
WIDTHS_PM = {0: (45.0, 45.0), 1: (35.0, 65.0)}
#: Background intensity per pixel (fraction of the column's total).
BACKGROUND = 0.002


def column_image(n: int, pixel_pm: float, x0: float, y0: float, sx: float, sy: float,
                 amplitude: float) -> np.ndarray:
    """Image (n, n) of a 2D Gaussian of total ``amplitude`` centred at (x0,
    y0) [pm] from the image centre, integrated exactly over each pixel."""
    from scipy.special import erf

    edges = (np.arange(n + 1) - n / 2) * pixel_pm
    fx = np.diff(0.5 * erf((edges - x0) / (np.sqrt(2) * sx)))
    fy = np.diff(0.5 * erf((edges - y0) / (np.sqrt(2) * sy)))
    return amplitude * fx[:, None] * fy[None, :] + BACKGROUND * amplitude


class ToyCampaign(Campaign):
    """Gaussian columns: shape (classification) and offset (regression)."""

    name = "toy_campaign:ToyCampaign"
    title = "toy: shape and offset of a Gaussian column"
    signal = "image"
    signal_dims = ("x", "y")
    labels = (
        Label("elongated", "int8", "", "1 for an elongated column", classes=("round",
                                                                           "elongated")),
        Label("x0_pm", "float32", "pm", "column offset along x"),
        Label("y0_pm", "float32", "pm", "column offset along y"),
        Label("thickness_A", "float32", "Å", "sample thickness"),
    )
    tasks = {
        "shape": Task("shape", "elongated", classes=("round", "elongated"), network="cnn2d",
                      transform="standardize"),
        "offset": Task("offset", ("x0_pm", "y0_pm"), kind="regression", units=("pm", "pm"),
                       network="cnn2d", transform="standardize"),
        # one network, two heads: the shape (classes) and the offset (regression)
        "shape_and_offset": Task("shape_and_offset", "elongated",
                                 classes=("round", "elongated"), network="cnn2d",
                                 transform="standardize", aux=("x0_pm", "y0_pm"),
                                 aux_units=("pm", "pm")),
    }
    unit_sections = ("seed", "toy")
    augment_meta = {"dose_e_per_image": ("float32", float("inf"))}
    geometry_keys = ("pixel_pm",)
    baseline_name = "image-moment linear model"

    @classmethod
    def schema_fragment(cls) -> dict:
        return SCHEMA

    @property
    def thicknesses(self) -> dict[str, float]:
        return {"10": 10.0, "20": 20.0}

    def samples(self) -> list[dict]:
        """Every sample's parameters, drawn from (seed, index) alone."""
        t = self.config["toy"]
        out = []
        for i in range(t["samples"]):
            rng = np.random.default_rng([self.config["seed"], 11, i])
            out.append({"structure": f"col-{i:04d}", "elongated": int(i % 2),
                        "x0_pm": float(rng.uniform(-1, 1) * t["max_offset_pm"]),
                        "y0_pm": float(rng.uniform(-1, 1) * t["max_offset_pm"]),
                        "thickness_A": 10.0 if (i // 2) % 2 == 0 else 20.0})
        return out

    def units(self) -> list[tuple[str, str, int]]:
        t = self.config["toy"]
        n_units = -(-t["samples"] // t["samples_per_unit"])
        return [(f"u{u:03d}", "all", b) for u in range(n_units) for b in range(t["batches"])]

    def unit_key(self, name: str, part: str) -> str:
        return config_hash({k: self.config[k] for k in self.unit_sections} | {"unit": name})

    def simulate_unit(self, name, part, batch, out, progress=print) -> None:
        t = self.config["toy"]
        u = int(name[1:])
        samples = self.samples()[u * t["samples_per_unit"]:(u + 1) * t["samples_per_unit"]]
        rng = np.random.default_rng([self.config["seed"], 12, u, batch])
        images = []
        for s in samples:
            sx, sy = WIDTHS_PM[s["elongated"]]
            jx, jy = rng.normal(0.0, t["jitter_pm"], 2)
            images.append(column_image(t["image_px"], t["pixel_pm"], s["x0_pm"] + jx,
                                       s["y0_pm"] + jy, sx, sy, s["thickness_A"] / 10.0))
        with atomic_group(out) as g:
            g.create_array(self.signal, data=np.asarray(images, np.float32))
            write_attrs(g, {"plane_labels": samples, "num_configs": 1, "pixel_pm": t["pixel_pm"],
                            "provenance": {"unit_key": self.unit_key(name, part)},
                            "complete": True})
        progress(f"{name} batch {batch}: {len(samples)} columns")

    def sample_classes(self, task) -> dict[str, int]:
        if task.is_regression:
            return {s["structure"]: 0 for s in self.samples()}
        return {s["structure"]: s[task.label] for s in self.samples()}

    def check_signal(self, where: str, data: np.ndarray) -> None:
        from cbedflow.storage import CorruptOutputError

        super().check_signal(where, data)
        if data.min() < 0:
            raise CorruptOutputError(f"{where}: negative intensity {data.min():g}")

    def dataset_attrs(self, unit_attrs: dict) -> dict:
        return {"pixel_pm": unit_attrs["pixel_pm"]}

    def example_attrs(self, ds_attrs: dict, config: dict, task) -> dict:
        return {"dims": ["example", "x", "y"], "pixel_pm": ds_attrs["pixel_pm"]}

    def augment_example(self, x, rng, config):
        lo, hi = np.log(config["augment"]["dose_e_per_image"])
        dose = float(np.exp(rng.uniform(lo, hi)))
        return rng.poisson(np.clip(x, 0, None) * dose) / dose, {"dose_e_per_image": dose}

    def baseline_features(self, x: np.ndarray, config: dict) -> np.ndarray:
        """Total intensity, centroid and second moments of every image."""
        x = np.clip(np.asarray(x, np.float64), 0, None)
        n = x.shape[-1]
        c = np.arange(n) - (n - 1) / 2
        tot = x.sum(axis=(1, 2))
        mx = (x.sum(axis=2) * c).sum(axis=1) / tot
        my = (x.sum(axis=1) * c).sum(axis=1) / tot
        vx = (x.sum(axis=2) * c ** 2).sum(axis=1) / tot - mx ** 2
        vy = (x.sum(axis=1) * c ** 2).sum(axis=1) / tot - my ** 2
        return np.column_stack([tot, mx, my, vx, vy, vx - vy])

    def read_measured(self, path, options, manifest, task):
        x = np.load(path)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != tuple(manifest["geometry"]["input_shape"]):
            raise ValueError(f"{path}: images of shape {x.shape}; expected (n, "
                             f"{', '.join(map(str, manifest['geometry']['input_shape']))})")
        return x, {"examples": "one per image", "data": x}

    def plot_measured(self, data, info, result, out) -> None:
        from cbedflow.plots import plt, save

        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(data[0].T, origin="lower", cmap="gray")
        ax.set_title(str(result["predicted"][0])[:40], fontsize=7)
        save(fig, out)

    def plot_dataset(self, dataset, out) -> None:
        import zarr

        from cbedflow.plots import plt, save

        ds = zarr.open_group(str(dataset), mode="r")
        fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
        for i, ax in enumerate(axes):
            ax.imshow(ds[self.signal][i].T, origin="lower", cmap="gray")
            ax.set_title(f"{('round', 'elongated')[int(ds['elongated'][i])]}, "
                         f"({ds['x0_pm'][i]:.0f}, {ds['y0_pm'][i]:.0f}) pm", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        save(fig, out)

    def check_config(self, config: dict) -> None:
        d = config["augment"]["dose_e_per_image"]
        if d[0] > d[1]:
            raise ConfigError(f"config key 'augment.dose_e_per_image': value {d} is invalid; "
                              "valid: [min, max] with min <= max")

    def summary_info(self) -> dict:
        return {"samples": self.config["toy"]["samples"]}


__all__ = ["ToyCampaign", "column_image"]
