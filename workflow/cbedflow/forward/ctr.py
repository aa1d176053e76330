"""Kinematic X-ray crystal-truncation-rod (CTR) scattering of an epitaxial
perovskite film on a semi-infinite perovskite substrate (MAMBA, Kakhandiki,
Min & Disa, "Epitaxial thin film interface imaging with deep learning", eq. 2).

Geometry and units
------------------
Lengths are in ångström (Å); momentum transfers ``q`` in 1/Å (``q = 4π sinθ/λ``);
rod coordinates ``(h, k, L)`` in reciprocal lattice units (r.l.u.) of the
substrate: ``q = 2π (h/a, k/a, L/c)`` with the substrate's in-plane ``a`` and
out-of-plane ``c`` (bulk SrTiO3: ``a = c = 3.905`` Å). Amplitudes are in
electrons (atomic form factors ``f0`` in electrons), intensities in electrons².

The substrate is bulk perovskite ABO3 (SrTiO3): A at (0, 0, 0), B at
(½, ½, ½), O at (½, ½, 0), (½, 0, ½), (0, ½, ½) in each cubic cell; cell ``m``
(m = 1, 2, ...) below the interface has its A plane at ``z = -m c``. On top of
it sit the variable layers ``n = 0 .. N-1`` (from the interface upward; the
paper's 8 relaxed SrTiO3 layers then 4 LaAlO3 layers). Layer ``n`` has its A
site at the cumulative height ``z_n = c_0 + ... + c_{n-1}`` (``z_0 = 0``) and
the in-plane lattice of the substrate (epitaxy: only z varies); within the
layer, at fractional heights (fractions of the layer's own ``c_n``):

* the apical O, in the AO plane under the B site, at (½, ½, ``u_Oap``), ideal 0;
* the B cation (Ti or Al), at (½, ½, ``u_B``), ideal ½;
* two planar O, at (½, 0, ``u_Opl``) and (0, ½, ``u_Opl``), ideal ½.

The A site is a pseudo-atom ``f_A = p f_Sr + (1 - p) f_La`` (charge mixing,
eq. 1); the B site likewise ``t f_Ti + (1 - t) f_Al``. A layer's structure
factor is multiplied by its occupancy (1, or a rough top layer's fraction).
The film terminates with the top layer's BO2 plane.

The amplitude (eq. 2, the delta functions fixing integer ``h, k`` dropped)::

    F(h, k, L) = F_bulk(h, k, L) S(L) + U(h, k, L)
    S(L) = sum_{m=1}^{inf} exp(-2πi L m) exp(-eps m) = x / (1 - x),
           x = exp(-2πi L - eps)
    U(h, k, L) = sum_n occ_n F_n(h, k, L) exp(i q_z z_n)

``S`` is the paper's ``sum_{n3=-N_c}^{-1} exp(i n3 q_c c)`` with N_c → ∞ and an
amplitude attenuation ``exp(-eps)`` per substrate cell; it equals the often
quoted ``1/(1 - exp(-2πiL) exp(-eps))`` minus one, the cell at ``n3 = 0`` being
the first variable layer. ``U`` is the film field of the paper ("the E-field
component that corresponds to the film scattering", with
``F^{-1}(U) = ρ_film``): the coherent sum over every variable layer (relaxed
SrTiO3 and LaAlO3 alike), phases referred to the A plane of the first variable
layer (z = 0, the top of the ideal substrate). The substrate term does not
depend on the film, so ``F - U`` is the same for every film on a grid.

Functions
---------
:func:`form_factor` (Waasmaier-Kirfel f0 from ``periodictable``, cached),
:class:`FilmLayers`, :func:`rod_grid`, :func:`ctr_amplitude` (vectorised),
:func:`ctr_amplitude_explicit` (slow reference: a loop over every atom of a
truncated stack), :func:`ctr_intensity`, :func:`log10_intensity`,
:func:`density_profile` (ρ(z) from the 00 rod's U).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Bulk SrTiO3 lattice parameter (cubic), Å.
A_STO = 3.905

#: Amplitude attenuation per substrate cell in the semi-infinite bulk sum.
#: exp(-1e-3) per 3.905 Å cell is a 1/e amplitude depth of ~3.9 µm, the order
#: of the X-ray penetration depth of SrTiO3 (33 µm intensity attenuation
#: length at 10 keV at normal incidence, ``periodictable.xsf``; less in a
#: grazing CTR geometry). It keeps integer L finite: the Bragg-peak amplitude
#: is capped at ``|F_bulk| e^{-eps} / (1 - e^{-eps})`` ≈ 1000 ``|F_bulk|``.
DEFAULT_EPS = 1e-3

#: Ideal fractional heights (fractions of c_n) of the small atoms in a layer.
IDEAL_Z_B = 0.5
IDEAL_Z_O_APICAL = 0.0
IDEAL_Z_O_PLANAR = 0.5

ELEMENTS = ("Sr", "La", "Ti", "Al", "O")

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


# --------------------------------------------------------------------------
# atomic form factors
# --------------------------------------------------------------------------

@lru_cache(maxsize=128)
def _form_factor_cached(element: str, shape: tuple[int, ...], q_bytes: bytes) -> FloatArray:
    import periodictable

    q = np.frombuffer(q_bytes, dtype=np.float64).reshape(shape)
    el = periodictable.elements.symbol(element)
    # Xray.f0 -> periodictable.cromermann.fxrayatq: the Waasmaier-Kirfel
    # five-Gaussian f0 (Acta Cryst. A51 (1995) 416), valid to Q = 24π 1/Å
    f = np.asarray(el.xray.f0(q), dtype=np.float64).reshape(shape)
    if not np.all(np.isfinite(f)):
        raise ValueError(f"f0({element}) undefined for q beyond the table's range (max q "
                         f"{float(np.max(q)):.3g} 1/Å; valid 0..24π)")
    f.setflags(write=False)
    return f


def form_factor(element: str, q: ArrayLike) -> FloatArray:
    """Non-resonant atomic X-ray form factor f0 of a neutral atom.

    Parameters
    ----------
    element : str
        Element symbol, e.g. ``"Sr"``.
    q : array_like
        Momentum transfer ``|q| = 4π sinθ/λ`` in 1/Å, 0 <= q <= 24π.

    Returns
    -------
    numpy.ndarray
        f0 in electrons, the shape of ``q`` (read-only; cached per element and
        q grid). From ``periodictable`` (``Element.xray.f0``, the
        Waasmaier-Kirfel parametrisation); f0(0) ≈ Z.
    """
    qa = np.asarray(q, dtype=np.float64)
    return _form_factor_cached(element, qa.shape, qa.tobytes())  # tobytes: C order


# --------------------------------------------------------------------------
# the film
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class FilmLayers:
    """The variable layers of the film, from the interface with the bulk upward.

    Every field is a 1-D array with one entry per variable layer.

    Attributes
    ----------
    c : numpy.ndarray
        Layer c-spacing ``c_n`` in Å: the A site of layer n+1 sits ``c_n``
        above that of layer n.
    z_b : numpy.ndarray
        Fractional height of the B cation within the layer (fraction of
        ``c_n``; ideal 0.5).
    z_o_apical : numpy.ndarray
        Fractional height of the apical O (in the AO plane under B; ideal 0).
    z_o_planar : numpy.ndarray
        Fractional height of the two planar O of the BO2 plane (ideal 0.5).
    p_sr : numpy.ndarray
        A-site composition: fraction Sr, the rest La (eq. 1), in [0, 1].
    ti_b : numpy.ndarray
        B-site composition: fraction Ti, the rest Al, in [0, 1].
    occupancy : numpy.ndarray
        Layer occupancy in [0, 1]; multiplies the layer's structure factor (a
        rough top layer: a value in [0.3, 1]).
    """

    c: FloatArray
    z_b: FloatArray
    z_o_apical: FloatArray
    z_o_planar: FloatArray
    p_sr: FloatArray
    ti_b: FloatArray
    occupancy: FloatArray

    def __post_init__(self) -> None:
        n = None
        for name in ("c", "z_b", "z_o_apical", "z_o_planar", "p_sr", "ti_b", "occupancy"):
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if arr.ndim != 1:
                raise ValueError(f"FilmLayers.{name}: one value per layer (1-D), "
                                 f"got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"FilmLayers.{name}: {arr.shape[0]} values, other fields have {n}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"FilmLayers.{name}: non-finite values")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if np.any(self.c <= 0):
            raise ValueError("FilmLayers.c: spacings must be > 0 Å")
        for name in ("p_sr", "ti_b", "occupancy"):
            arr = getattr(self, name)
            if np.any((arr < 0) | (arr > 1)):
                raise ValueError(f"FilmLayers.{name}: values must lie in [0, 1]")

    @property
    def n_layers(self) -> int:
        """Number of variable layers."""
        return int(self.c.shape[0])

    @property
    def z_a(self) -> FloatArray:
        """Height of each layer's A site above the ideal substrate, Å (``z_0 = 0``)."""
        return np.concatenate([[0.0], np.cumsum(self.c)[:-1]])

    @property
    def thickness(self) -> float:
        """Sum of the c-spacings, Å."""
        return float(np.sum(self.c))

    @classmethod
    def ideal(cls, n_sto: int = 8, n_lao: int = 4, *, c_sto: float = A_STO,
              c_lao: float = A_STO) -> FilmLayers:
        """Unperturbed film: ``n_sto`` SrTiO3 then ``n_lao`` LaAlO3 layers.

        Parameters
        ----------
        n_sto, n_lao : int
            Numbers of variable SrTiO3 and LaAlO3 layers.
        c_sto, c_lao : float
            Their c-spacings, Å.
        """
        if n_sto < 0 or n_lao < 0 or n_sto + n_lao < 1:
            raise ValueError(f"need at least one layer (n_sto={n_sto}, n_lao={n_lao})")
        n = n_sto + n_lao
        sto = np.arange(n) < n_sto
        return cls(c=np.where(sto, c_sto, c_lao), z_b=np.full(n, IDEAL_Z_B),
                   z_o_apical=np.full(n, IDEAL_Z_O_APICAL),
                   z_o_planar=np.full(n, IDEAL_Z_O_PLANAR),
                   p_sr=sto.astype(float), ti_b=sto.astype(float), occupancy=np.ones(n))


# --------------------------------------------------------------------------
# the reciprocal-space grid
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class RodGrid:
    """Rods ``(h, k)`` sampled at the same ``L`` values.

    Attributes
    ----------
    hk : numpy.ndarray
        ``(n_rods, 2)`` integer rod indices, r.l.u.
    L : numpy.ndarray
        ``(n_L,)`` out-of-plane coordinate, r.l.u. of the substrate c.
    """

    hk: NDArray[np.int64]
    L: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rods, n_L)``."""
        return (int(self.hk.shape[0]), int(self.L.shape[0]))

    @property
    def h(self) -> NDArray[np.int64]:
        """``(n_rods, 1)``, broadcasts against :attr:`l_row`."""
        return self.hk[:, :1]

    @property
    def k(self) -> NDArray[np.int64]:
        """``(n_rods, 1)``."""
        return self.hk[:, 1:]

    @property
    def l_row(self) -> FloatArray:
        """``(1, n_L)``."""
        return self.L[None, :]


def rod_grid(h_max: int = 3, k_max: int = 3, l_step: float = 0.025,
             l_max: float = 6.0) -> RodGrid:
    """The paper's grid: rods h = 0..h_max, k = 0..k_max (h outer, k inner),
    ``L = l_step, 2 l_step, ..., l_max`` r.l.u.

    The default is 16 rods x 240 points (3,840 per sample); L hits the
    integers (Bragg peaks) exactly, where :data:`DEFAULT_EPS` keeps the
    amplitude finite.
    """
    n_l = round(l_max / l_step)
    if n_l < 1 or abs(n_l * l_step - l_max) > 1e-9 * max(1.0, l_max):
        raise ValueError(f"l_max={l_max} is not a multiple of l_step={l_step}")
    hk = np.array([(h, k) for h in range(h_max + 1) for k in range(k_max + 1)], dtype=np.int64)
    L = np.round(np.arange(1, n_l + 1) * l_step, 12)
    return RodGrid(hk=hk, L=L)


# --------------------------------------------------------------------------
# the forward model
# --------------------------------------------------------------------------

class CTRField(NamedTuple):
    """Complex amplitudes in electrons, the broadcast shape of ``(h, k, L)``."""

    total: ComplexArray
    """``F = F_bulk S + U``: what the detector sees is ``|F|²``."""
    film: ComplexArray
    """``U``: the variable layers' coherent sum (origin: top of the ideal substrate)."""


def _q_abs(h: FloatArray, k: FloatArray, L: FloatArray, a: float, c: float) -> FloatArray:
    return 2 * np.pi * np.sqrt((h * h + k * k) / (a * a) + (L * L) / (c * c))


def bulk_structure_factor(h: ArrayLike, k: ArrayLike, L: ArrayLike, *, a: float = A_STO,
                          c: float = A_STO) -> ComplexArray:
    """Structure factor of one cubic SrTiO3 substrate cell, electrons.

    ``f_Sr + f_Ti e^{iπ(h+k+L)} + f_O (e^{iπ(h+k)} + e^{iπ(h+L)} + e^{iπ(k+L)})``,
    with f0 at ``|q| = 2π sqrt((h²+k²)/a² + L²/c²)`` (a, c in Å; h, k, L in r.l.u.).
    """
    h, k, L = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(h, k, L))
    q = _q_abs(h, k, L, a, c)
    f = {el: form_factor(el, q) for el in ("Sr", "Ti", "O")}
    e = lambda x: np.exp(1j * np.pi * x)
    return f["Sr"] + f["Ti"] * e(h + k + L) + f["O"] * (e(h + k) + e(h + L) + e(k + L))


def bulk_sum(L: ArrayLike, eps: float = DEFAULT_EPS) -> ComplexArray:
    """Semi-infinite, attenuated sum over the substrate cells below the interface.

    ``S(L) = sum_{m>=1} exp(-2πi L m - eps m) = x / (1 - x)``, ``x = exp(-2πi L - eps)``.

    Parameters
    ----------
    L : array_like
        r.l.u. of the substrate c.
    eps : float
        Amplitude attenuation per cell (> 0); finite at integer L: ``|S| ≈ 1/eps``.
    """
    if not eps > 0:
        raise ValueError(f"eps={eps}: the semi-infinite sum needs eps > 0")
    x = np.exp(-2j * np.pi * np.asarray(L, dtype=np.float64) - eps)
    return x / (1 - x)


def ctr_amplitude(h: ArrayLike, k: ArrayLike, L: ArrayLike, film: FilmLayers, *,
                  a: float = A_STO, c: float = A_STO, eps: float = DEFAULT_EPS) -> CTRField:
    """CTR amplitude of substrate + film (eq. 2), vectorised over rods and L.

    Parameters
    ----------
    h, k : array_like
        Rod indices, r.l.u. of the substrate's in-plane a (integers on a rod).
    L : array_like
        Out-of-plane coordinate, r.l.u. of the substrate c (``q_z = 2π L / c``).
        ``h, k, L`` broadcast together (e.g. ``(16, 1)``, ``(16, 1)``, ``(1, 240)``;
        see :class:`RodGrid`).
    film : FilmLayers
        The variable layers.
    a, c : float
        Substrate in-plane and out-of-plane lattice parameters, Å.
    eps : float
        Attenuation per substrate cell (see :func:`bulk_sum`).

    Returns
    -------
    CTRField
        ``total = F_bulk S + U`` and ``film = U`` (module docstring), complex,
        electrons, the broadcast shape.
    """
    h, k, L = (np.asarray(v, dtype=np.float64) for v in (h, k, L))
    shape = np.broadcast_shapes(h.shape, k.shape, L.shape)
    nd = len(shape)
    # the phases along z depend on L only: computed on L's own (unbroadcast) shape
    Lz = L.reshape((1,) * (nd - L.ndim) + L.shape)
    qz = (2 * np.pi / c) * Lz
    q = _q_abs(h, k, L, a, c)
    if q.shape != shape:
        q = np.broadcast_to(q, shape)
    f = {el: form_factor(el, q) for el in ELEMENTS}

    # U = sum_n occ_n sum_{j in layer n} f_j e^{i q·r_j}. The in-plane phases are
    # those of the layer's columns, the same in every layer, so each species'
    # z-phases are summed over layers first (weights (n,) . phases (n, .., n_L)),
    # then multiplied by its form factor on the whole grid.
    col = (slice(None),) + (None,) * nd

    def layer_sum(weight: FloatArray, height: FloatArray) -> ComplexArray:
        """sum_n weight_n exp(i q_z height_n), heights in Å: L's shape."""
        return np.tensordot(weight, np.exp(1j * qz * height[col]), axes=1)

    occ, p, t, cn, z_a = film.occupancy, film.p_sr, film.ti_b, film.c, film.z_a
    z_b = z_a + film.z_b * cn
    col_bo = np.exp(1j * np.pi * (h + k))  # in-plane phase of the (½, ½) column
    planar = np.exp(1j * np.pi * h) + np.exp(1j * np.pi * k)  # (½, 0) and (0, ½)
    U = (f["Sr"] * layer_sum(occ * p, z_a) + f["La"] * layer_sum(occ * (1 - p), z_a)
         + col_bo * (f["Ti"] * layer_sum(occ * t, z_b) + f["Al"] * layer_sum(occ * (1 - t), z_b)
                     + f["O"] * layer_sum(occ, z_a + film.z_o_apical * cn))
         + planar * f["O"] * layer_sum(occ, z_a + film.z_o_planar * cn))
    if U.shape != shape:
        U = np.broadcast_to(U, shape).copy()
    F = bulk_structure_factor(h, k, L, a=a, c=c) * bulk_sum(L, eps) + U
    return CTRField(total=F, film=U)


def ctr_intensity(h: ArrayLike, k: ArrayLike, L: ArrayLike, film: FilmLayers,
                  **kwargs: float) -> FloatArray:
    """``I = |F|²`` (electrons²) of :func:`ctr_amplitude` (same arguments)."""
    F = ctr_amplitude(h, k, L, film, **kwargs).total
    return F.real ** 2 + F.imag ** 2


def log10_intensity(intensity: ArrayLike) -> FloatArray:
    """``log10 I`` (the network input, before standardisation)."""
    return np.log10(np.asarray(intensity, dtype=np.float64))


# --------------------------------------------------------------------------
# the slow reference
# --------------------------------------------------------------------------

Atom = tuple[str, float, float, float, float]


def film_atoms(film: FilmLayers, *, a: float = A_STO) -> list[Atom]:
    """Every atom of the variable layers, one entry per species on a site.

    Returns
    -------
    list of (element, weight, x, y, z)
        Positions in Å (z above the ideal substrate); ``weight`` is the site's
        occupancy times the species' fraction (a mixed A site is an Sr and a La
        entry at the same position).
    """
    atoms: list[Atom] = []
    for n in range(film.n_layers):
        occ = float(film.occupancy[n])
        z0, cn = float(film.z_a[n]), float(film.c[n])
        p, t = float(film.p_sr[n]), float(film.ti_b[n])
        atoms.append(("Sr", occ * p, 0.0, 0.0, z0))
        atoms.append(("La", occ * (1 - p), 0.0, 0.0, z0))
        atoms.append(("O", occ, a / 2, a / 2, z0 + float(film.z_o_apical[n]) * cn))
        zb = z0 + float(film.z_b[n]) * cn
        atoms.append(("Ti", occ * t, a / 2, a / 2, zb))
        atoms.append(("Al", occ * (1 - t), a / 2, a / 2, zb))
        zp = z0 + float(film.z_o_planar[n]) * cn
        atoms.append(("O", occ, a / 2, 0.0, zp))
        atoms.append(("O", occ, 0.0, a / 2, zp))
    return atoms


def ctr_amplitude_explicit(h: ArrayLike, k: ArrayLike, L: ArrayLike, film: FilmLayers, *,
                           n_bulk_cells: int = 20_000, a: float = A_STO, c: float = A_STO,
                           eps: float = DEFAULT_EPS) -> CTRField:
    """Slow reference for :func:`ctr_amplitude`: ``sum_j w_j f_j(|q|) exp(i q·r_j)``
    over every atom of a finite stack, one atom at a time.

    The substrate is truncated at ``n_bulk_cells`` cubic SrTiO3 cells below the
    interface, cell m (A plane at ``z = -m c``) weighted by ``exp(-eps m)`` as
    in :func:`bulk_sum`; the omitted tail is ``|S| e^{-eps N}`` relative, so
    ``eps * n_bulk_cells >= 20`` matches the closed form to ~2e-9 relative
    everywhere, Bragg peaks included.

    Parameters
    ----------
    h, k, L, film, a, c, eps
        As :func:`ctr_amplitude`.
    n_bulk_cells : int
        Substrate cells summed.

    Returns
    -------
    CTRField
    """
    h, k, L = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(h, k, L))
    qx, qy, qz = 2 * np.pi * h / a, 2 * np.pi * k / a, 2 * np.pi * L / c
    q = _q_abs(h, k, L, a, c)
    f = {el: np.array(form_factor(el, q)) for el in ELEMENTS}

    U = np.zeros(L.shape, dtype=np.complex128)
    for el, w, x, y, z in film_atoms(film, a=a):
        U += w * f[el] * np.exp(1j * (qx * x + qy * y + qz * z))

    cell = [("Sr", 0.0, 0.0, 0.0), ("Ti", 0.5, 0.5, 0.5),
            ("O", 0.5, 0.5, 0.0), ("O", 0.5, 0.0, 0.5), ("O", 0.0, 0.5, 0.5)]
    B = np.zeros(L.shape, dtype=np.complex128)
    for m in range(1, n_bulk_cells + 1):
        w = np.exp(-eps * m)
        for el, fx, fy, fz in cell:
            B += w * f[el] * np.exp(1j * (qx * fx * a + qy * fy * a + qz * (fz - m) * c))
    return CTRField(total=B + U, film=U)


# --------------------------------------------------------------------------
# real space
# --------------------------------------------------------------------------

def density_profile(L: ArrayLike, u00: ArrayLike, z: ArrayLike, *, c: float = A_STO,
                    window_sigma: float | None = None, u0: float | None = None) -> FloatArray:
    """Laterally averaged electron density of the film, ρ(z), from the 00 rod's U.

    On the 00 rod ``U(L) = ∫ ρ(z) e^{i q_z z} dz`` with ``q_z = 2π L / c`` and
    ρ(z) in electrons per Å (per substrate unit-cell area). ρ is real, so
    ``U(-L) = conj U(L)`` and the inverse transform over the sampled
    ``L_j = j ΔL`` (a Riemann sum of ``(1/c) ∫ U e^{-2πi L z / c} dL``) is::

        ρ(z) = (ΔL / c) [u0 + 2 sum_j w_j Re(U(L_j) e^{-2πi L_j z / c})]

    with an optional Gaussian window ``w_j = exp(-L_j² / (2 σ²))`` (fewer
    truncation ripples, less resolution; none by default: w = 1). The L = 0
    term ``u0 = U(0)`` (the film's electron count) is not on the grid: without
    it (``u0=None``) ρ is shifted by the constant ``-U(0) ΔL / c``, which moves
    no peak. Resolution: about ``c / (2 L_max)`` (0.33 Å for L_max = 6); the
    profile repeats every ``c / ΔL`` (156 Å for ΔL = 0.025).

    Parameters
    ----------
    L : array_like
        Equally spaced ``ΔL, 2ΔL, ...`` r.l.u. (the 00 rod of :func:`rod_grid`).
    u00 : array_like
        Complex ``U`` on the 00 rod at ``L``, electrons.
    z : array_like
        Heights at which to evaluate ρ, Å above the ideal substrate.
    c : float
        Substrate c, Å.
    window_sigma : float, optional
        Gaussian window width σ in r.l.u.
    u0 : float, optional
        ``U(L=0)``, electrons.

    Returns
    -------
    numpy.ndarray
        ρ(z), electrons / Å, the shape of ``z``.
    """
    L = np.asarray(L, dtype=np.float64)
    u00 = np.asarray(u00, dtype=np.complex128)
    z = np.asarray(z, dtype=np.float64)
    if L.ndim != 1 or u00.shape != L.shape:
        raise ValueError(f"L and u00 must be 1-D of one length, got {L.shape} and {u00.shape}")
    dl = np.diff(L)
    step = float(L[0])
    if not np.allclose(dl, step, rtol=1e-6, atol=1e-12):
        raise ValueError("L must be ΔL, 2ΔL, ... (equally spaced from ΔL)")
    w = np.ones_like(L) if window_sigma is None else np.exp(-0.5 * (L / window_sigma) ** 2)
    phase = np.exp(-2j * np.pi * np.multiply.outer(z, L) / c)
    rho = 2 * np.real(phase @ (w * u00))
    if u0 is not None:
        rho = rho + float(u0)
    return (step / c) * rho
