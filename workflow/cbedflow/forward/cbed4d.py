"""Frozen-phonon multislice 4D-STEM of one work unit with abTEM 1.0.11.

A work unit is (structure, thickness, phonon-configuration batch), or
(structure, thickness series, batch) where the thinner samples are the
thickest cut at their thickness: then one propagation records every
thickness at abTEM exit planes. For every configuration of the batch the
potential is built once and reused for every probe position; probe positions
are propagated together in blocks (one batched FFT per slice, as many probes
as fit :data:`WAVE_BUDGET_BYTES`). The configuration mean is
accumulated in memory (one output array; abTEM's own ``to_zarr`` would hold
every configuration's lazy result) and written once as a zarr v3 group under a
temporary name, renamed when complete.

With ``prism_interpolation`` set, each configuration's probes come from
abTEM's PRISM scattering matrix (``SMatrix``, Ophus 2017) instead: one
multislice per plane wave inside the aperture, then every probe as a sum of
them, confined to a window of cell / interpolation
(:func:`prism_patterns`). It pays where a unit has more probes than the
expansion has plane waves (paper-scale units); its error is measured, not
assumed (``benchmarks/prism.py``, docs/performance.md).

Nothing here knows about LAO/STO: the structure carries ``info`` keys
``scan_x0_A`` (x where the scan starts) and ``unit_cell_A`` (the cell length
that scan extents are given in).
"""

from __future__ import annotations

import math
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from .. import __version__
from ..storage import atomic_group, write_attrs
from . import SimulationConfigError, check_device  # noqa: F401 (re-exported)
from .perturb import Perturbation, UnitPerturbation

#: abTEM release the physics was validated with; ``sigmas`` changed meaning
#: between releases, so other versions are refused.
ABTEM_VERSION = "1.0.11"


def check_fft_threading(fft_threads: int, scheduler: str) -> None:
    """Refuse abTEM 1.0.11's unsafe combination of FFTW threads and dask threads.

    Measured: ``fftw.threads`` > 1 under dask's threaded scheduler returns
    silently wrong CBED sums and drops frozen-phonon configurations. This
    package always computes with ``scheduler="synchronous"``.
    """
    if fft_threads < 1:
        raise SimulationConfigError(f"simulation.fft_threads={fft_threads}: must be >= 1")
    if fft_threads > 1 and scheduler != "synchronous":
        raise SimulationConfigError(
            f"simulation.fft_threads={fft_threads} with dask scheduler {scheduler!r} gives "
            "silently wrong results in abTEM 1.0.11; use fft_threads: 1 or the "
            "'synchronous' scheduler"
        )


def smooth_size(n: int, primes: Sequence[int] = (2, 3, 5, 7)) -> int:
    """Smallest integer >= n whose prime factors are all in ``primes``.

    FFT-friendly grid sizes: a 586 = 2 x 293 grid ran 2x slower than a
    7-smooth neighbour (measured with abTEM 1.0.11). Hand-written because
    scipy.fft.next_fast_len is only 5-smooth for some backends and we want the
    rule stated explicitly.
    """
    m = max(1, int(n))
    while True:
        r = m
        for p in primes:
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


@dataclass(frozen=True)
class ScanSettings:
    """Probe positions, in units of the structure's ``unit_cell_A``.

    Parameters
    ----------
    start_cells : float
        Scan start along x relative to ``scan_x0_A`` [unit cells].
    extent_cells : float
        Scan length along x [unit cells]; the end point is included.
    positions_x : int
        Probe positions along x (one line scan across the interface).
    positions_y : int
        Line scans along y, spread over one unit cell (end point excluded).
    """

    start_cells: float = 0.0
    extent_cells: float = 3.0
    positions_x: int = 13
    positions_y: int = 4

    def positions(self, atoms: Atoms) -> np.ndarray:
        """Probe positions [Å], shape (positions_x, positions_y, 2)."""
        a = float(atoms.info["unit_cell_A"])
        x0 = float(atoms.info["scan_x0_A"]) + self.start_cells * a
        xs = x0 + np.linspace(0.0, self.extent_cells * a, self.positions_x)
        ys = np.arange(self.positions_y) * (a / self.positions_y)
        grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1)
        return grid.astype(np.float64)


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that defines a 4D-STEM simulation, with units.

    Parameters
    ----------
    energy_kV : float
        Beam energy [kV].
    semiangle_mrad : float
        Probe convergence semi-angle [mrad].
    aberrations_A : dict
        Aberration coefficients in abTEM's polar notation [Å] (e.g. C10
        (= -defocus), C30 (= Cs)).
    sampling_A : float
        Largest allowed real-space sampling of the potential [Å]; the grid
        is rounded up to a 7-smooth size so the actual sampling is finer.
    slice_thickness_A : float
        Multislice slice thickness [Å].
    detector_max_angle_mrad : float
        Outer angle of the pixelated detector [mrad].
    sigmas_A : dict
        Frozen-phonon displacement standard deviation per element and per
        Cartesian direction [Å] (abTEM 1.0.11 meaning: sigma^2 = U_iso).
    parametrization : str
        Atomic potential parametrization (``lobato`` or ``kirkland``).
    haadf_mrad : tuple of (float or None)
        Inner and outer angle of the virtual annular (HAADF) detector
        recorded per probe position [mrad]; inner None = 3x
        ``semiangle_mrad``, outer None = abTEM's antialiasing cutoff (2/3
        of the Nyquist angle of the grid).
    device : str
        ``cpu`` or ``gpu`` (cupy).
    fft_threads : int
        FFTW threads (computation is always dask-synchronous).
    scan : ScanSettings
        Probe positions.
    prism_interpolation : int or None
        None: multislice of every probe. n >= 1: PRISM (abTEM ``SMatrix``)
        with interpolation factor n along x and y, so every probe is confined
        to a window of (cell / n) [Å]; n = 1 equals multislice to float32
        rounding. The grid is rounded up to a 7-smooth multiple of n.
    """

    energy_kV: float = 200.0
    semiangle_mrad: float = 20.0
    aberrations_A: dict = field(default_factory=dict)
    sampling_A: float = 0.08
    slice_thickness_A: float = 1.9525
    detector_max_angle_mrad: float = 40.0
    sigmas_A: dict = field(default_factory=dict)
    parametrization: str = "lobato"
    haadf_mrad: tuple = (None, None)
    device: str = "cpu"
    fft_threads: int = 1
    scan: ScanSettings = field(default_factory=ScanSettings)
    prism_interpolation: int | None = None

    @classmethod
    def from_config(cls, config: dict) -> "SimulationSettings":
        """Settings from a validated campaign config."""
        sim, mic = config["simulation"], config["microscope"]
        return cls(
            energy_kV=mic["energy_kV"],
            semiangle_mrad=mic["semiangle_mrad"],
            aberrations_A=dict(mic["aberrations_A"]),
            sampling_A=sim["sampling_A"],
            slice_thickness_A=sim["slice_thickness_A"],
            detector_max_angle_mrad=sim["detector_max_angle_mrad"],
            sigmas_A=dict(sim["phonons"]["sigmas_A"]),
            parametrization=sim["parametrization"],
            haadf_mrad=(sim["haadf"]["inner_mrad"], sim["haadf"]["outer_mrad"]),
            device=config["device"],
            fft_threads=sim["fft_threads"],
            scan=ScanSettings(**sim["scan"]),
            prism_interpolation=sim.get("prism_interpolation"),
        )

    def gpts(self, atoms: Atoms) -> tuple[int, int]:
        """FFT-friendly grid points covering the cell at <= ``sampling_A``
        (with PRISM, a multiple of the interpolation factor, so that the
        probe window is a whole number of grid points)."""
        f = self.prism_interpolation or 1
        out = []
        for i in (0, 1):
            n = smooth_size(math.ceil(atoms.cell[i, i] / self.sampling_A))
            while n % f:
                n = smooth_size(n + 1)
            out.append(n)
        return tuple(out)

    @property
    def haadf_inner_mrad(self) -> float:
        """Inner angle of the virtual HAADF detector [mrad]."""
        inner = self.haadf_mrad[0]
        return 3.0 * self.semiangle_mrad if inner is None else float(inner)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["haadf_mrad"] = list(self.haadf_mrad)
        d["scan"] = dict(self.scan.__dict__)
        return d


def configure_abtem(settings: SimulationSettings) -> None:
    """Set abTEM's global config for a deterministic, safe run."""
    import abtem

    if abtem.__version__ != ABTEM_VERSION:
        raise SimulationConfigError(
            f"abTEM {abtem.__version__} is installed; cbedflow needs {ABTEM_VERSION} "
            "(frozen-phonon sigmas and lazy results differ between releases)"
        )
    check_fft_threading(settings.fft_threads, "synchronous")
    if settings.device == "gpu":
        size_cupy_plan_cache()
    abtem.config.set({
        "device": settings.device,
        "precision": "float32",
        "fftw.threads": settings.fft_threads,
        # FFTW_MEASURE may pick different algorithms run to run, which breaks
        # bit-identical reruns; ESTIMATE is deterministic.
        "fftw.planning_effort": "FFTW_ESTIMATE",
        "diagnostics.progress_bar": False,
    })


#: cuFFT plans CuPy keeps per device and thread. Its default, 16, is fewer
#: than one packed job's distinct FFT shapes can reach (probe blocks of
#: several sizes, detection, potential, S-matrix), and a rebuilt plan cost
#: ~30 % of a GPU run in abTEM's own report.
CUPY_FFT_PLANS = 128

#: GPU memory for the cached plans' work areas [bytes]. CuPy's default is no
#: limit; a batched plan's work area can be as large as its data (1 GiB for a
#: block of 486 probes on a 525 x 525 grid), so more plans need a bound:
#: least recently used plans are dropped beyond it.
CUPY_FFT_PLAN_BYTES = 2 * 2**30


def size_cupy_plan_cache(n: int = CUPY_FFT_PLANS,
                         memsize: int = CUPY_FFT_PLAN_BYTES) -> tuple[int, int]:
    """Grow CuPy's cuFFT plan cache to at least ``n`` plans and bound its
    work areas to ``memsize`` bytes where CuPy leaves them unlimited (never
    shrink what a site configured); returns (size, memsize) now set."""
    import cupy

    cache = cupy.fft.config.get_plan_cache()
    if 0 < cache.get_size() < n:  # 0: disabled, -1: unlimited
        cache.set_size(n)
    if cache.get_memsize() < 0:
        cache.set_memsize(memsize)
    return cache.get_size(), cache.get_memsize()


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "get"):  # cupy
        array = array.get()
    return np.asarray(array)


#: Memory for the probe waves of one abTEM scan call [bytes], per device.
#: Probes are propagated together (one batched FFT per slice) in blocks that
#: fit; one call per scan row of 1-4 probes cost 6-16x the bare FFTs on small
#: grids (per-call overhead), see docs/performance.md. The GPU budget fits a
#: 16 GB V100 (Summit) with the potential of a 300 Å sample beside it.
WAVE_BUDGET_BYTES = {"cpu": 256 * 2**20, "gpu": 4 * 2**30}


def probes_per_call(n_probes: int, gpts: tuple[int, int],
                    budget: int = WAVE_BUDGET_BYTES["cpu"]) -> int:
    """Probe positions per abTEM call: as many as keep ~4 complex64 copies
    of their waves (wave, FFT work, propagator product, detector) within
    ``budget``, at least one."""
    per_probe = 4 * gpts[0] * gpts[1] * 8
    return max(1, min(n_probes, budget // per_probe))


def exit_plane_indices(thicknesses_A: Sequence[float], slice_thickness_A: float,
                       sample_thickness_A: float) -> tuple[int, ...]:
    """abTEM exit-plane indices (the slice after which the wave is recorded)
    of a thickness series [Å] in a sample of ``sample_thickness_A``.

    Raises :class:`SimulationConfigError` unless every thickness is a whole
    number of slices (otherwise the exit wave would belong to a different
    sample than the label says) and the thickest is the sample itself.
    """
    out = []
    for t in thicknesses_A:
        n = t / slice_thickness_A
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise SimulationConfigError(
                f"exit thickness {t:.4f} Å is not a whole number of "
                f"{slice_thickness_A} Å slices; valid: multiples of the slice thickness")
        out.append(int(round(n)) - 1)
    if abs(max(thicknesses_A) - sample_thickness_A) > 1e-6:
        raise SimulationConfigError(
            f"thickest exit plane {max(thicknesses_A):.4f} Å differs from the sample "
            f"thickness {sample_thickness_A:.4f} Å")
    if sorted(set(out)) != out:
        raise SimulationConfigError(
            f"exit thicknesses {list(thicknesses_A)} Å must be distinct and increasing")
    return tuple(out)


def check_prefix_series(frames: Sequence[Atoms]) -> None:
    """Refuse a thickness series whose thinner samples are not the thickest
    cut at their thickness (the exit planes of one propagation would then
    belong to other samples than the frames describe).

    ``frames`` are ordered by thickness; atoms are compared by element and
    position [Å] (to 1e-6 Å), order-independently.
    """
    thick = frames[-1]

    def key(atoms: Atoms) -> list:
        pos = np.round(atoms.positions, 6)
        return sorted(zip(atoms.get_chemical_symbols(), map(tuple, pos.tolist())))

    for f in frames[:-1]:
        t = float(f.cell[2, 2])
        cut = thick[thick.positions[:, 2] < t - 1e-6]
        if key(cut) != key(f) or np.abs(f.cell[:2] - thick.cell[:2]).max() > 1e-9:
            raise SimulationConfigError(
                f"structure {f.info.get('structure')!r} at {t:.4f} Å is not the "
                f"{float(thick.cell[2, 2]):.4f} Å sample cut at {t:.4f} Å; its thickness "
                "series cannot come from exit planes of one propagation")


def unit_detectors(settings: SimulationSettings, atoms: Atoms) -> list:
    """The two abTEM detectors of a unit: the pixelated detector out to
    ``detector_max_angle_mrad`` (resampled to square pixels on a non-square
    cell) and the virtual annular (HAADF) detector."""
    import abtem

    square = abs(atoms.cell[0, 0] - atoms.cell[1, 1]) < 1e-6
    return [abtem.PixelatedDetector(max_angle=settings.detector_max_angle_mrad,
                                    resample=False if square else "uniform"),
            abtem.AnnularDetector(inner=settings.haadf_inner_mrad,
                                  outer=settings.haadf_mrad[1])]


def phonon_potential(atoms: Atoms, settings, seed: int, gpts: tuple[int, int],
                     exit_planes=None):
    """abTEM potential (lazy) of one frozen-phonon configuration of ``atoms``:
    every atom displaced by ``settings.sigmas_A`` [Å] with ``seed``; no
    sigmas (an empty dict) leaves the static lattice (validation runs).
    ``settings``: any settings with ``sigmas_A``, ``slice_thickness_A`` [Å],
    ``parametrization`` and ``device`` (:class:`SimulationSettings`, the
    STEM images' ``ImagingSettings``)."""
    import abtem

    displaced = atoms
    if settings.sigmas_A:
        fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas=settings.sigmas_A,
                                 seed=(int(seed),))
        displaced = fp.randomize(atoms)
    return abtem.Potential(
        displaced, gpts=gpts, slice_thickness=settings.slice_thickness_A,
        parametrization=settings.parametrization, projection="infinite",
        device=settings.device, exit_planes=exit_planes)


class StageTimes:
    """Wall time per stage of :func:`simulate_unit` [s], for the benchmarks.

    Stages: ``potential`` (phonon displacement and potential build),
    ``s_matrix`` (PRISM only), ``multislice+detection`` (abTEM's scan: the
    propagation and both detectors in one call), ``accumulation`` (the
    configuration mean), ``host copy`` (device to host, chunk by chunk) and
    ``write`` (zarr). With ``sync`` (e.g. cupy's device synchronize) every
    stage waits for the device before and after, so asynchronous GPU work is
    charged to the stage that queued it; that costs a little time itself.
    """

    def __init__(self, sync: Callable[[], None] | None = None):
        self.seconds: dict[str, float] = {}
        self._sync = sync or (lambda: None)

    @contextmanager
    def stage(self, name: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def _untimed(name: str):
    yield


def simulate_unit(
    atoms: Atoms,
    settings: SimulationSettings,
    config_seeds: Sequence[int],
    out: str | Path,
    provenance: dict | None = None,
    progress: Callable[[str], None] = print,
    series: Sequence[Atoms] | None = None,
    perturbation: "UnitPerturbation | None" = None,
    stages: StageTimes | None = None,
) -> Path:
    """Simulate one work unit and write it as a zarr v3 group at ``out``.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure, with labels and scan geometry in ``info``.
    settings : SimulationSettings
        Microscope and numerical settings.
    config_seeds : sequence of int
        One seed per frozen-phonon configuration of this batch.
    out : path
        Output group; written to a temporary sibling and renamed.
    provenance : dict, optional
        Extra provenance stored in the group's attributes.
    progress : callable
        Receives one line of progress per block of probe positions.
    series : sequence of ase.Atoms, optional
        A thickness series recorded from one propagation through ``atoms``
        (abTEM exit planes): the thinner samples, each ``atoms`` cut at its
        thickness (checked, :func:`check_prefix_series`), with their own
        labels in ``info``. ``atoms`` itself is the last plane.
    perturbation : UnitPerturbation, optional
        Imperfections of this unit's structure
        (:mod:`cbedflow.forward.perturb`): defocus and Cs added to the
        probe's aberrations, the mistilt as abTEM's probe ``tilt`` [mrad]
        (a sheared specimen: abTEM tilts the propagator), configuration j's
        probes displaced by ``source_offsets_A[j]`` [Å] (source size), and
        the ``perturb_*`` values added to every plane's labels (attribute
        ``perturbation`` holds the draw). None (default): the ideal
        microscope, exactly as before perturbations existed.
    stages : StageTimes, optional
        Receives the wall time of each stage (benchmarks); None: untimed.

    Returns
    -------
    Path to the completed group. Arrays: ``cbed`` (scan_x, scan_y, kx, ky)
    float32, the mean over the batch's configurations, in fractions of the
    incident probe intensity, and ``haadf`` (scan_x, scan_y), the fraction of
    the probe scattered into the virtual annular detector
    (attribute ``haadf_range_mrad``); with ``series`` both have a leading
    exit_plane axis and the attribute ``plane_labels`` holds one ``labels``
    per plane.

    Notes
    -----
    The mean is accumulated in memory on the computing device (one output
    array; cupy on ``gpu``) and written once, one chunk at a time (copied to
    the host chunk by chunk), so memory is the output plus one potential plus
    one block of waves; a read-modify-write of the zarr array per
    configuration cost 40% of a paper-scale unit on a GPU
    (docs/performance.md).
    """
    import abtem
    from abtem.core.backend import get_array_module

    configure_abtem(settings)
    frames = list(series or []) + [atoms]
    frames.sort(key=lambda f: float(f.cell[2, 2]))
    if frames[-1] is not atoms:
        raise SimulationConfigError("the series must be thinner than the simulated sample")
    planes = None  # no exit planes: the wave after the last slice
    if series and settings.prism_interpolation:
        raise SimulationConfigError(
            "a thickness series (exit planes) with PRISM (simulation.prism_interpolation): "
            "abTEM 1.0.11's SMatrix does not build exit planes; valid: "
            "simulation.exit_planes: false, or prism_interpolation: null")
    if series:
        check_prefix_series(frames)
        planes = exit_plane_indices([float(f.cell[2, 2]) for f in frames],
                                    settings.slice_thickness_A, float(atoms.cell[2, 2]))
    gpts = settings.gpts(atoms)
    positions = settings.scan.positions(atoms)
    nx, ny = positions.shape[:2]
    if perturbation is None:
        probe = abtem.Probe(
            energy=settings.energy_kV * 1e3,
            semiangle_cutoff=settings.semiangle_mrad,
            **settings.aberrations_A,
        )
        offsets = np.zeros((len(config_seeds), 2))
    else:
        if settings.prism_interpolation and any(perturbation.perturbation.tilt_xy_mrad):
            raise SimulationConfigError(
                f"a mistilt of {perturbation.perturbation.tilt_mrad:.3g} mrad with PRISM "
                "(simulation.prism_interpolation): abTEM's SMatrix has no tilt; valid: "
                "simulation.perturbations.max_tilt_mrad: 0, or prism_interpolation: null")
        probe = perturbed_probe(settings, perturbation.perturbation)
        offsets = np.asarray(perturbation.source_offsets_A, dtype=np.float64).reshape(-1, 2)
        if len(offsets) != len(config_seeds):
            raise SimulationConfigError(
                f"{len(offsets)} source offsets for {len(config_seeds)} phonon "
                "configurations; valid: one per configuration")
    detector, haadf = unit_detectors(settings, atoms)
    n_cfg, n_planes = len(config_seeds), len(frames)
    flat = positions.reshape(-1, 2)  # scan_x-major, as the output
    n_probes = len(flat)
    per_call = probes_per_call(n_probes, gpts, WAVE_BUDGET_BYTES[settings.device])
    timed = stages.stage if stages is not None else _untimed
    t0 = time.perf_counter()
    acc = None
    for ic, seed in enumerate(config_seeds):
        with timed("potential"):
            potential = phonon_potential(atoms, settings, seed, gpts,
                                         exit_planes=planes).build(lazy=False)
        probe.grid.match(potential)
        if settings.prism_interpolation:  # one S-matrix per configuration, all probes
            with timed("s_matrix"):
                s_matrix = abtem.SMatrix(
                    potential=potential, energy=settings.energy_kV * 1e3,
                    semiangle_cutoff=settings.semiangle_mrad,
                    interpolation=settings.prism_interpolation, downsample=False,
                    device=settings.device).build(lazy=False)
            ctf = abtem.CTF(energy=settings.energy_kV * 1e3,
                            semiangle_cutoff=settings.semiangle_mrad,
                            aberration_coefficients=dict(probe.aberrations.aberration_coefficients))
        for p0 in range(0, n_probes, per_call):
            p1 = min(n_probes, p0 + per_call)
            # one propagation, two detectors: the pixelated patterns and the
            # virtual HAADF signal of the same probes
            where = flat[p0:p1] if perturbation is None else flat[p0:p1] + offsets[ic]
            with timed("multislice+detection"):
                if settings.prism_interpolation:
                    meas, ring = prism_patterns(s_matrix, where, [detector, haadf], ctf)
                else:
                    meas, ring = probe.scan(potential, scan=abtem.CustomScan(where),
                                            detectors=[detector, haadf], max_batch=p1 - p0,
                                            lazy=True).compute(scheduler="synchronous")
            block = meas.array.reshape((n_planes, p1 - p0) + meas.array.shape[-2:])
            block = block.astype(np.float32, copy=False)
            if acc is None:
                # on the device that computed the patterns (cupy on gpu): no
                # per-block host transfers, one copy of the mean at the end
                xp = get_array_module(block)
                acc = xp.zeros((n_planes, n_probes) + block.shape[-2:], dtype=np.float32)
                acc_haadf = xp.zeros((n_planes, n_probes), dtype=np.float32)
                kx, ky = meas.sampling[-2:]
                angular = meas.angular_sampling[-2:]
                haadf_range = [settings.haadf_inner_mrad,
                               float(settings.haadf_mrad[1] if settings.haadf_mrad[1]
                                     is not None else min(probe.cutoff_angles))]
            with timed("accumulation"):
                block /= n_cfg  # in place: the same float32 result as block / n_cfg
                acc[:, p0:p1] += block
                acc_haadf[:, p0:p1] += xp.asarray(ring.array, dtype=np.float32).reshape(
                    n_planes, p1 - p0) / n_cfg
            del block, meas, ring
            progress(f"config {ic + 1}/{n_cfg} probes {p0 + 1}-{p1}/{n_probes} "
                     f"({ic * n_probes + p1}/{n_cfg * n_probes}, "
                     f"{time.perf_counter() - t0:.1f} s)")
    acc = acc.reshape((n_planes, nx, ny) + acc.shape[-2:])  # still on the device
    with atomic_group(out) as group:
        data = acc if series else acc[0]
        # uncompressed: zstd saved 7% on simulated float32 patterns, and on a
        # GPU compressing a series unit took longer than simulating it
        # (docs/performance.md)
        cbed = group.create_array("cbed", shape=data.shape, dtype="float32",
                                  chunks=(1,) * (data.ndim - 3) + data.shape[-3:],
                                  fill_value=0.0, compressors=None)
        # one chunk (scan row) per write, copied from the device chunk by
        # chunk: zarr encodes every chunk of a whole-array write at once,
        # which doubled the peak memory, and a whole-array device-to-host
        # copy would put the output in host memory a second time
        for idx in np.ndindex(data.shape[:-3]):
            with timed("host copy"):
                chunk = _to_numpy(data[idx])
            with timed("write"):
                cbed[idx] = chunk
        with timed("host copy"):
            ring = _to_numpy(acc_haadf).reshape((n_planes, nx, ny))
        ring = ring if series else ring[0]
        group.create_array("haadf", shape=ring.shape, dtype="float32",
                           chunks=ring.shape, fill_value=0.0)[...] = ring
        extra = perturbation.labels if perturbation is not None else {}
        labels = {k: _jsonable(v) for k, v in {**atoms.info, **extra}.items()}
        attrs = {
            "dims": (["exit_plane"] if series else []) + ["scan_x", "scan_y", "kx", "ky"],
            "scan_positions_A": positions.tolist(),
            "scan_step_A": [float(positions[1, 0, 0] - positions[0, 0, 0]) if nx > 1 else 0.0,
                            float(positions[0, 1, 1] - positions[0, 0, 1]) if ny > 1 else 0.0],
            "real_space_sampling_A": [atoms.cell[0, 0] / gpts[0], atoms.cell[1, 1] / gpts[1]],
            "gpts": list(gpts),
            "reciprocal_sampling_invA": [float(kx), float(ky)],
            "angular_sampling_mrad": [float(angular[0]), float(angular[1])],
            "haadf_range_mrad": haadf_range,
            "num_configs": n_cfg,
            "config_seeds": [int(s) for s in config_seeds],
            "labels": labels,
            "settings": settings.to_dict(),
            "abtem_version": abtem.__version__,
            "cbedflow_version": __version__,
            "provenance": provenance or {},
            "complete": True,
        }
        if series:
            attrs["exit_thicknesses_A"] = [float(f.cell[2, 2]) for f in frames]
            attrs["exit_plane_slices"] = list(planes)
            attrs["plane_labels"] = [{k: _jsonable(v) for k, v in {**f.info, **extra}.items()}
                                     for f in frames]
        if perturbation is not None:
            attrs["perturbation"] = perturbation.attrs()
        write_attrs(group, attrs)
    progress(f"done: {out} in {time.perf_counter() - t0:.1f} s")
    return Path(out)


def prism_patterns(s_matrix, positions_A: np.ndarray, detectors: Sequence, ctf) -> list:
    """Detect PRISM probes at ``positions_A`` [Å] as multislice probes are.

    abTEM's reduction of an interpolated S-matrix returns each probe cropped
    to its window (cell / interpolation); its diffraction pattern would be
    sampled ``interpolation`` times more coarsely than a multislice pattern.
    Each window is therefore zero-padded to the full grid (the PRISM probe
    is zero outside its window, so this is that probe's exact pattern, and
    its position inside the padded cell only changes a phase) and handed to
    the same abTEM detectors as multislice, which crop the same pixels.
    Intensities are divided by the interpolation factors' product: abTEM
    normalises the window, not the padded cell. With interpolation 1 this
    is multislice to float32 rounding (a test checks it).

    Parameters
    ----------
    s_matrix : abtem SMatrixArray
        Built (``downsample=False``, so the window keeps the grid's sampling).
    positions_A : ndarray, shape (n, 2)
        Probe positions [Å].
    detectors : sequence of abtem detectors
    ctf : abtem.CTF
        The probe's aperture and aberrations.

    Returns
    -------
    One measurement per detector, scan axis first (after any exit-plane axis).
    """
    import abtem
    from abtem.core.backend import get_array_module

    waves = s_matrix.reduce(scan=abtem.CustomScan(positions_A), ctf=ctf,
                            detectors=abtem.WavesDetector())
    waves = waves[0] if isinstance(waves, (list, tuple)) else waves
    waves = waves.compute(scheduler="synchronous") if waves.is_lazy else waves
    window = waves.array
    xp = get_array_module(window)
    padded = xp.zeros(window.shape[:-2] + tuple(s_matrix.gpts), dtype=window.dtype)
    padded[..., :window.shape[-2], :window.shape[-1]] = window
    del window
    full = abtem.Waves(padded, energy=waves.energy, sampling=waves.sampling,
                       ensemble_axes_metadata=waves.ensemble_axes_metadata,
                       metadata=waves.metadata)
    scale = float(np.prod(s_matrix.interpolation))
    out = []
    for detector in detectors:
        m = detector.detect(full)
        if scale != 1.0:
            m.array[...] /= scale
        out.append(m)
    return out


def perturbed_probe(settings: SimulationSettings, p: "Perturbation"):
    """abTEM probe of ``settings`` with perturbation ``p``: its defocus and
    Cs added to ``settings.aberrations_A`` (C10 -= defocus_A, C30 +=
    cs_mm x 1e7 Å) and its mistilt as ``tilt`` [mrad]."""
    import abtem

    return abtem.Probe(energy=settings.energy_kV * 1e3,
                       semiangle_cutoff=settings.semiangle_mrad,
                       tilt=p.tilt_xy_mrad, **p.aberrations_A(settings.aberrations_A))


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) else v
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def unit_seeds(seed: int, structure: str, thickness_cells: int, batch: int,
               batch_size: int) -> list[int]:
    """Frozen-phonon seeds of one batch, derived from the campaign seed.

    Configuration ``j`` of a structure (by name) at a thickness always gets the
    same seed whatever the batching or the number of structures, so changing
    ``batch_size`` or ``per_class`` regroups but does not change the
    configurations that were already simulated.
    """
    key = zlib.crc32(structure.encode())
    out = []
    for j in range(batch * batch_size, (batch + 1) * batch_size):
        ss = np.random.SeedSequence([seed, key, thickness_cells, j])
        out.append(int(ss.generate_state(1)[0]))
    return out
