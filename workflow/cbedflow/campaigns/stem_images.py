"""What the STEM-image campaigns (``abf_tilts``, ``bfo_polarization``) share:
images as samples in shards of ``<section>.per_unit`` (units ``s00000``...),
frozen-phonon seeds per image, residual aberrations and mistilt drawn per
image, the probe-fraction check of a detector image, and the range checks of
the ``residuals`` section. A campaign subclasses :class:`StemImageCampaign`
and sets :attr:`~StemImageCampaign.shard_section` and
:attr:`~StemImageCampaign.phonon_salt`; it defines ``n_samples``, and its
package holds ``measured.py`` (``read_measured``, ``plot_maps``) and
``plots.py`` (``dataset_overview``)."""

from __future__ import annotations

import importlib
import zlib
from pathlib import Path

import numpy as np

from . import Campaign

#: Keys of the ``residuals`` config section, each a [low, high] range.
RESIDUAL_RANGES = ("defocus_A", "astigmatism_A", "coma_A", "mistilt_mrad")


def draw_residuals(rng: np.random.Generator, r: dict):
    """Residual aberrations and mistilt of one image, uniform in the ranges of
    the ``residuals`` section ``r`` (azimuths and the mistilt direction
    uniform), in the order the campaigns have always drawn them."""
    from ..forward.stem_image import Residuals

    def uniform(lo_hi):
        return float(rng.uniform(*lo_hi))

    tilt = uniform(r["mistilt_mrad"])
    tilt_dir = float(rng.uniform(0, 2 * np.pi))
    defocus = uniform(r["defocus_A"])
    astig = uniform(r["astigmatism_A"])
    astig_angle = float(rng.uniform(0, np.pi))
    coma = uniform(r["coma_A"])
    coma_angle = float(rng.uniform(0, 2 * np.pi))
    return Residuals(defocus_A=defocus, astigmatism_A=astig, astigmatism_angle_rad=astig_angle,
                     coma_A=coma, coma_angle_rad=coma_angle,
                     mistilt_mrad=(float(tilt * np.cos(tilt_dir)),
                                   float(tilt * np.sin(tilt_dir))))


def check_residual_ranges(config: dict) -> None:
    """Refuse a ``residuals`` range whose low end exceeds its high end."""
    from ..config import ConfigError

    for key in RESIDUAL_RANGES:
        a, b = config["residuals"][key]
        if a > b:
            raise ConfigError(f"config key 'residuals.{key}': value {[a, b]} is invalid; "
                              "valid: [low, high] with low <= high")


class StemImageCampaign(Campaign):
    """A campaign whose samples are simulated STEM images, computed in shards."""

    #: Config section holding ``per_unit`` (images per simulation unit).
    shard_section: str = ""
    #: Salt of the frozen-phonon seed stream (kept per campaign: the seeds of
    #: every image ever simulated stay the same).
    phonon_salt: int = 0

    @property
    def n_samples(self) -> int:
        raise NotImplementedError

    def phonon_seeds(self, structure: str) -> list[int]:
        """Frozen-phonon seeds of one image (from the campaign seed and its id)."""
        key = zlib.crc32(structure.encode())
        n = self.config["imaging"]["phonons"]["num_configs"]
        return [int(np.random.SeedSequence([self.config["seed"], self.phonon_salt, key, j])
                    .generate_state(1)[0]) for j in range(n)]

    def units(self) -> list[tuple[str, str, int]]:
        n = -(-self.n_samples // self.config[self.shard_section]["per_unit"])
        return [(f"s{u:05d}", "images", 0) for u in range(n)]

    #: (section, key) of the options that only say how many images exist
    #: (each image is drawn from (seed, index) alone): left out of a unit's
    #: key, which names the unit's image indices instead, so a campaign grown
    #: to more images keeps every unit already simulated.
    count_keys: tuple[tuple[str, str], ...] = ()

    def unit_key(self, name: str, part: str) -> str:
        """What a unit's images depend on: the ``unit_sections`` (without
        the ``count_keys``), the unit's image indices and the device."""
        from ..config import config_hash

        sections = {k: self.config[k] for k in self.unit_sections}
        extra = {}
        for section, key in self.count_keys:
            sections[section] = {k: v for k, v in sections[section].items() if k != key}
            r = self.shard(name)
            extra["images"] = [r.start, r.stop]
        return config_hash(sections | extra
                           | {"unit": name, "device": self.config.get("device", "cpu")})

    def shard(self, name: str) -> range:
        """The image indices of unit ``name``."""
        per = self.config[self.shard_section]["per_unit"]
        u = int(name[1:])
        return range(u * per, min(self.n_samples, (u + 1) * per))

    @property
    def threads_per_rank(self) -> int:
        return int(self.config["imaging"]["fft_threads"])

    def check_signal(self, where: str, data: np.ndarray) -> None:
        """Finite, and within [0, 1] of the incident probe intensity."""
        from ..storage import CorruptOutputError

        super().check_signal(where, data)
        if data.min() < 0 or data.max() > 1.0 + 1e-3:
            raise CorruptOutputError(f"{where}: {self.signal} outside [0, 1] of the probe "
                                     f"intensity ({data.min():.3g}..{data.max():.3g})")

    def write_unit(self, out: str, name: str, part: str, arrays: dict, labels: list,
                   img, settings) -> None:
        """Write one unit atomically: ``arrays`` (array name -> one entry per
        image) as float32, the per-image ``labels``, and the detectors, grid
        and settings of the unit's images (``img``: the last StemImage)."""
        from ..storage import atomic_group, write_attrs

        with atomic_group(out) as grp:
            for key, values in arrays.items():
                grp.create_array(key, data=np.asarray(values, np.float32))
            write_attrs(grp, {
                "plane_labels": labels,
                "num_configs": self.config["imaging"]["phonons"]["num_configs"],
                "abf_range_mrad": list(img.abf_range_mrad),
                "haadf_range_mrad": list(img.haadf_range_mrad), "gpts": list(img.gpts),
                "settings": settings.to_dict(),
                "provenance": {"unit_key": self.unit_key(name, part)}, "complete": True})

    # -- measured data and plots: the campaign package's measured.py / plots.py --
    def _part(self, name: str):
        return importlib.import_module(f"{type(self).__module__}.{name}")

    def read_measured(self, path, options: dict, manifest: dict, task):
        """A measured image as examples of the model (the package's
        ``measured.read_measured``)."""
        return self._part("measured").read_measured(path, options, manifest, task)

    def plot_measured(self, data, info: dict, result: dict, out: str | Path) -> None:
        self._part("measured").plot_maps(data, info, result, out)

    def plot_dataset(self, dataset: str | Path, out: str | Path) -> None:
        self._part("plots").dataset_overview(dataset, out)
