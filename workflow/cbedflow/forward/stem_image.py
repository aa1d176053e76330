"""Frozen-phonon STEM images (annular bright field and HAADF at once) of a
crystal that is periodic in the image plane, with abTEM 1.0.11.

One image is one in-plane period of the projected structure (for a tilted
perovskite in the (110)pc projection: 2 sqrt(2) a x 2 a, the whole tilt
pattern), scanned on a fixed number of probe positions per period, so every
image of a campaign has the same shape whatever the lattice parameter. The
potential is the period tiled ``tile`` times in-plane so the probe's tails do
not overlap their periodic images (:mod:`benchmarks.abf_convergence`
measures the error of each shortcut). Two propagation methods:

* ``multislice``: every probe position propagated (abTEM ``Probe.scan``), the
  reference;
* ``prism``: the plane-wave expansion (abTEM ``SMatrix``, Ophus 2017) with
  interpolation factor = ``tile``, so the probe window is one period; the
  probe's aberrations enter at the reduction (abTEM ``CTF``).

Residual aberrations (defocus, two-fold astigmatism, axial coma) are drawn
per image by the campaign; a mistilt of the specimen is a shear of the atom
positions (x, y += z tan(theta)): abTEM's ``SMatrix`` has no tilt, and the
shear equals a tilted beam up to the projected-thickness factor
1/cos(theta) - 1 < 1e-5 at 5 mrad.

Nothing here knows about perovskites or tilts.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from . import SimulationConfigError

#: Propagation methods (:class:`ImagingSettings.method`).
METHODS = ("multislice", "prism")


@dataclass(frozen=True)
class Residuals:
    """Residual aberrations and specimen mistilt of one image.

    Parameters
    ----------
    defocus_A : float
        Defocus [Å] (positive = underfocus; abTEM C10 = -defocus).
    astigmatism_A : float
        Two-fold astigmatism magnitude C12 [Å].
    astigmatism_angle_rad : float
        Its azimuth phi12 [rad].
    coma_A : float
        Axial coma magnitude C21 [Å].
    coma_angle_rad : float
        Its azimuth phi21 [rad].
    mistilt_mrad : tuple of float
        Specimen tilt about the image axes (x, y) [mrad].
    """

    defocus_A: float = 0.0
    astigmatism_A: float = 0.0
    astigmatism_angle_rad: float = 0.0
    coma_A: float = 0.0
    coma_angle_rad: float = 0.0
    mistilt_mrad: tuple[float, float] = (0.0, 0.0)

    def aberrations(self) -> dict[str, float]:
        """abTEM polar aberration coefficients [Å, rad]."""
        return {"C10": -self.defocus_A, "C12": self.astigmatism_A,
                "phi12": self.astigmatism_angle_rad, "C21": self.coma_A,
                "phi21": self.coma_angle_rad}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mistilt_mrad"] = list(self.mistilt_mrad)
        return d


@dataclass(frozen=True)
class ImagingSettings:
    """Everything that defines an ABF/HAADF image simulation, with units.

    Parameters
    ----------
    energy_kV : float
        Beam energy [kV].
    semiangle_mrad : float
        Probe convergence semi-angle alpha [mrad].
    abf_mrad : tuple of (float or None)
        ABF detector inner and outer angle [mrad]; None = alpha/2 and alpha.
    haadf_mrad : tuple of (float or None)
        HAADF detector inner and outer angle [mrad]; None = 3 alpha and
        abTEM's antialiasing cutoff (2/3 of the grid's Nyquist angle).
    sampling_A : float
        Largest real-space sampling of the potential [Å] (the grid is
        rounded up to 7-smooth sizes, so the actual sampling is finer).
    slice_thickness_A : float
        Multislice slice thickness [Å].
    pixels : tuple of int
        Probe positions per in-plane period (x, y); the image shape.
    tile : tuple of int
        Repeats of the period in the potential (x, y).
    interpolation : tuple of int or None
        PRISM's interpolation factor (x, y): the probe window is the tiled
        cell divided by it. None = ``tile`` (a window of one period).
    method : str
        ``multislice`` or ``prism``.
    sigmas_A : dict
        Frozen-phonon displacement standard deviation per element [Å]
        (abTEM 1.0.11: per Cartesian direction).
    parametrization : str
        abTEM potential parametrization (``lobato`` or ``kirkland``).
    device : str
        ``cpu`` or ``gpu``.
    fft_threads : int
        FFTW threads (computation is always dask-synchronous).
    """

    energy_kV: float = 300.0
    semiangle_mrad: float = 25.0
    abf_mrad: tuple = (None, None)
    haadf_mrad: tuple = (None, None)
    sampling_A: float = 0.05
    slice_thickness_A: float = 2.0
    pixels: tuple[int, int] = (44, 32)
    tile: tuple[int, int] = (2, 2)
    interpolation: tuple[int, int] | None = None
    method: str = "prism"
    sigmas_A: dict = field(default_factory=dict)
    parametrization: str = "lobato"
    device: str = "cpu"
    fft_threads: int = 1

    def __post_init__(self):
        if self.method not in METHODS:
            raise SimulationConfigError(f"imaging method {self.method!r} is invalid; "
                                        f"valid: {', '.join(METHODS)}")

    @property
    def abf_range_mrad(self) -> tuple[float, float]:
        lo, hi = self.abf_mrad
        a = self.semiangle_mrad
        return (a / 2 if lo is None else float(lo), a if hi is None else float(hi))

    def cutoff_mrad(self, gpts: Sequence[int], extent_A: Sequence[float]) -> float:
        """abTEM's antialiasing cutoff angle [mrad] of a grid: 2/3 of the
        Nyquist angle along the coarser axis."""
        from . import wavelength_A

        lam = wavelength_A(self.energy_kV)
        nyquist = min(g / (2 * e) for g, e in zip(gpts, extent_A))
        return 2 / 3 * nyquist * lam * 1e3

    def haadf_range_mrad(self, gpts: Sequence[int], extent_A: Sequence[float]
                         ) -> tuple[float, float]:
        lo, hi = self.haadf_mrad
        cut = self.cutoff_mrad(gpts, extent_A)
        return (3 * self.semiangle_mrad if lo is None else float(lo),
                cut if hi is None else float(hi))

    def gpts(self, period_A: Sequence[float]) -> tuple[int, int]:
        """7-smooth grid of the tiled potential at <= ``sampling_A``."""
        from .cbed4d import smooth_size

        return tuple(smooth_size(math.ceil(t * p / self.sampling_A))
                     for t, p in zip(self.tile, period_A))

    def check(self, period_A: Sequence[float]) -> None:
        """Refuse detectors the grid cannot record (one line each)."""
        g = self.gpts(period_A)
        ext = [t * p for t, p in zip(self.tile, period_A)]
        cut = self.cutoff_mrad(g, ext)
        lo, hi = self.abf_range_mrad
        if not 0 <= lo < hi:
            raise SimulationConfigError(f"ABF detector {lo}-{hi} mrad is empty; valid: "
                                        "inner < outer")
        hlo, hhi = self.haadf_range_mrad(g, ext)
        if hhi > cut + 1e-9 or hlo >= hhi:
            raise SimulationConfigError(
                f"HAADF detector {hlo:.1f}-{hhi:.1f} mrad does not fit below the "
                f"{cut:.1f} mrad antialiasing cutoff of {self.sampling_A} Å sampling; valid: "
                f"a finer sampling_A (<= {self.sampling_A * cut / max(hlo * 1.2, 1e-9):.3f} Å) "
                "or a smaller inner angle")
        if self.method == "prism" and hi > cut:
            raise SimulationConfigError(f"ABF outer angle {hi} mrad exceeds the {cut:.1f} mrad "
                                        "cutoff; valid: a finer sampling_A")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("abf_mrad", "haadf_mrad", "pixels", "tile", "interpolation"):
            d[k] = None if d[k] is None else list(d[k])
        return d


@dataclass
class StemImage:
    """One simulated image pair.

    Attributes
    ----------
    abf, haadf : ndarray (pixels_x, pixels_y), float32
        Fraction of the incident probe intensity on each detector, mean over
        the frozen-phonon configurations.
    pixel_A : tuple of float
        Probe step (x, y) [Å].
    abf_range_mrad, haadf_range_mrad : tuple of float
        The detectors' angular ranges [mrad].
    gpts : tuple of int
        Grid of the tiled potential.
    seconds : float
        Wall time.
    """

    abf: np.ndarray
    haadf: np.ndarray
    pixel_A: tuple[float, float]
    abf_range_mrad: tuple[float, float]
    haadf_range_mrad: tuple[float, float]
    gpts: tuple[int, int]
    seconds: float


def shear_for_mistilt(atoms: Atoms, mistilt_mrad: Sequence[float]) -> Atoms:
    """``atoms`` with x, y shifted by z tan(theta) (a specimen tilted by
    ``mistilt_mrad`` about (y, x) as seen by a beam along z), wrapped into
    the in-plane cell."""
    tx, ty = (math.tan(t * 1e-3) for t in mistilt_mrad)
    out = atoms.copy()
    if tx == 0 and ty == 0:
        return out
    z = out.positions[:, 2] - out.positions[:, 2].min()
    out.positions[:, 0] += z * tx
    out.positions[:, 1] += z * ty
    out.wrap()
    return out


def simulate_image(atoms: Atoms, settings: ImagingSettings, config_seeds: Sequence[int],
                   residuals: Residuals = Residuals(),
                   progress: Callable[[str], None] = lambda m: None) -> StemImage:
    """Simulate the ABF and HAADF images of one in-plane period.

    Parameters
    ----------
    atoms : ase.Atoms
        Orthogonal cell: one in-plane period (x, y) [Å], the sample
        thickness along z (the beam).
    settings : ImagingSettings
        Microscope and numerical settings.
    config_seeds : sequence of int
        One seed per frozen-phonon configuration (averaged).
    residuals : Residuals
        The image's residual aberrations and mistilt.
    progress : callable
        Receives one line per configuration.
    """
    import abtem

    from .cbed4d import SimulationSettings, configure_abtem, phonon_potential

    configure_abtem(SimulationSettings(device=settings.device,
                                       fft_threads=settings.fft_threads))
    cell = np.asarray(atoms.cell)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
        raise SimulationConfigError("simulate_image needs an orthogonal cell (abTEM); "
                                    "use abtem.orthogonalize_cell first")
    period = (float(cell[0, 0]), float(cell[1, 1]))
    settings.check(period)
    gpts = settings.gpts(period)
    extent = [t * p for t, p in zip(settings.tile, period)]
    abf_range = settings.abf_range_mrad
    haadf_range = settings.haadf_range_mrad(gpts, extent)
    detectors = [abtem.AnnularDetector(inner=abf_range[0], outer=abf_range[1]),
                 # default outer: None = abTEM's own largest simulated angle (PRISM's
                 # downsampled grid ends 0.3 % below the multislice cutoff)
                 abtem.AnnularDetector(inner=haadf_range[0], outer=settings.haadf_mrad[1])]
    scan = abtem.GridScan(start=(0.0, 0.0), end=period, gpts=tuple(settings.pixels),
                          endpoint=False)
    tiled = shear_for_mistilt(atoms, residuals.mistilt_mrad) * (*settings.tile, 1)
    sums = np.zeros((2,) + tuple(settings.pixels), np.float64)
    t0 = time.perf_counter()
    for ic, seed in enumerate(config_seeds):
        # none given (sigmas_A empty): the static lattice (validation runs)
        potential = phonon_potential(tiled, settings, seed, gpts)
        energy = settings.energy_kV * 1e3
        if settings.method == "multislice":
            probe = abtem.Probe(energy=energy, semiangle_cutoff=settings.semiangle_mrad,
                                **residuals.aberrations())
            meas = probe.scan(potential.build(lazy=False), scan=scan, detectors=detectors,
                              lazy=True)
        else:
            s_matrix = abtem.SMatrix(potential=potential, energy=energy,
                                     semiangle_cutoff=settings.semiangle_mrad,
                                     interpolation=tuple(settings.interpolation
                                                         or settings.tile),
                                     device=settings.device)
            ctf = abtem.CTF(energy=energy, semiangle_cutoff=settings.semiangle_mrad,
                            aberration_coefficients=residuals.aberrations())
            meas = s_matrix.scan(scan=scan, detectors=detectors, ctf=ctf, lazy=True)
        # one propagation, two detectors (abTEM's ComputableList)
        abf, haadf = meas.compute(scheduler="synchronous")
        sums[0] += _host(abf.array)
        sums[1] += _host(haadf.array)
        progress(f"config {ic + 1}/{len(config_seeds)} ({time.perf_counter() - t0:.1f} s)")
    mean = (sums / len(config_seeds)).astype(np.float32)
    return StemImage(abf=mean[0], haadf=mean[1],
                     pixel_A=(period[0] / settings.pixels[0], period[1] / settings.pixels[1]),
                     abf_range_mrad=abf_range, haadf_range_mrad=haadf_range, gpts=gpts,
                     seconds=time.perf_counter() - t0)


def _host(array) -> np.ndarray:
    from .cbed4d import _to_numpy

    return np.asarray(_to_numpy(array), np.float64)
