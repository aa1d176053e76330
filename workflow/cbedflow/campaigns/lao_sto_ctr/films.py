"""Random LaAlO3/SrTiO3 films for CTR phase retrieval, drawn as in MAMBA
(Kakhandiki, Min & Disa, seed 004): the forward model is
:func:`cbedflow.forward.ctr.ctr_amplitude`.

A film is ``n_sto`` relaxed SrTiO3 layers on the bulk substrate, then
``n_lao`` LaAlO3 layers (the paper: 8 + 4 = 12), epitaxial (only z varies).
Per film, independently and uniformly:

* every layer's c-spacing ``c_n`` in ``c_nominal ± 0.1`` Å (3.905 Å for both
  materials: the paper gives no separate LaAlO3 value), except the top
  layer's, which no measurement can see (it only scales that layer's
  fractional heights) and is held at its nominal value;
* every small atom (B cation, apical O, planar O pair) displaced from its
  ideal fractional height (0.5, 0, 0.5 of ``c_n``) by up to ±0.05, i.e. ±5 %
  of the layer's c (the paper's "±5 %" of the positions; a relative ±5 % of
  the apical O's ideal height 0 would not move it);
* charge mixing on the 4 layers nearest the LaAlO3/SrTiO3 interface, the top
  2 SrTiO3 and the bottom 2 LaAlO3 layers: A-site Sr fractions
  ``p_1..p_4`` with ``sum p = 2`` and ``0 <= p_n < 1``, uniform on that set
  (the sum 2 is the Sr count of the unmixed (1, 1, 0, 0): mixing swaps Sr and
  La across the interface and conserves both); the other SrTiO3 layers have
  p = 1, the other LaAlO3 layers p = 0; B sites stay Ti / Al;
* optionally (rough top) the top layer's occupancy in [0.3, 1].

Film-thickness variants (the paper's 4 / 12 / 16 / 24 layers and the random
11-13 with a rough top) keep at most 8 relaxed SrTiO3 layers and put the rest
in LaAlO3, at least 2 of each for the mixing window: :func:`split_thickness`
(the paper does not give the split; this is a choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...forward.ctr import (
    A_STO,
    IDEAL_Z_B,
    IDEAL_Z_O_APICAL,
    IDEAL_Z_O_PLANAR,
    FilmLayers,
)

#: Sr fractions: at most this many rejection rounds (acceptance 1/2 each).
MAX_REJECTIONS = 10_000


def split_thickness(n_layers: int, n_sto_max: int = 8, n_mixed_side: int = 2) -> tuple[int, int]:
    """``(n_sto, n_lao)`` of a film of ``n_layers`` variable layers.

    At most ``n_sto_max`` relaxed SrTiO3 layers (the paper's 8), the rest
    LaAlO3, at least ``n_mixed_side`` of each: 4 -> (2, 2), 11 -> (8, 3),
    12 -> (8, 4), 13 -> (8, 5), 16 -> (8, 8), 24 -> (8, 16).
    """
    if n_layers < 2 * n_mixed_side:
        raise ValueError(f"n_layers={n_layers}: need at least {2 * n_mixed_side} layers "
                         f"({n_mixed_side} each side of the mixed interface)")
    n_sto = max(n_mixed_side, min(n_sto_max, n_layers - n_mixed_side))
    return n_sto, n_layers - n_sto


@dataclass(frozen=True)
class FilmOptions:
    """How films are drawn.

    Attributes
    ----------
    n_layers : tuple of int
        Total variable layers; one value drawn uniformly per film when several
        (the paper's variants: (4,), (12,), (16,), (24,), (11, 12, 13)).
    n_sto_max : int
        Relaxed SrTiO3 layers at most (:func:`split_thickness`).
    c_sto, c_lao : float
        Nominal c-spacings, Å.
    c_range : float
        Half-width of the uniform c-spacing variation, Å.
    displacement : float
        Half-width of the uniform small-atom displacement, fraction of ``c_n``.
    n_mixed_side : int
        Charge-mixed layers on each side of the interface (2: p_1..p_4).
    rough_top : bool
        Draw the top layer's occupancy uniformly in ``occupancy_range``.
    occupancy_range : tuple of float
        ``(low, high)`` of the rough top layer's occupancy.
    """

    n_layers: tuple[int, ...] = (12,)
    n_sto_max: int = 8
    c_sto: float = A_STO
    c_lao: float = A_STO
    c_range: float = 0.1
    displacement: float = 0.05
    n_mixed_side: int = 2
    rough_top: bool = False
    occupancy_range: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_layers", tuple(int(n) for n in self.n_layers))
        if not self.n_layers:
            raise ValueError("FilmOptions.n_layers: at least one thickness")
        for n in self.n_layers:
            split_thickness(n, self.n_sto_max, self.n_mixed_side)
        if self.n_mixed_side < 1:
            raise ValueError("FilmOptions.n_mixed_side must be >= 1")
        lo, hi = self.occupancy_range
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"FilmOptions.occupancy_range={self.occupancy_range}: "
                             "need 0 <= low <= high <= 1")
        if self.c_range < 0 or self.displacement < 0:
            raise ValueError("FilmOptions: c_range and displacement must be >= 0")


#: The paper's settings: the 12-layer film, the thickness variants, and the
#: random 11-13-layer film with a rough top layer.
PRESETS: dict[str, FilmOptions] = {
    "paper": FilmOptions(),
    "layers4": FilmOptions(n_layers=(4,)),
    "layers16": FilmOptions(n_layers=(16,)),
    "layers24": FilmOptions(n_layers=(24,)),
    "layers11to13_rough": FilmOptions(n_layers=(11, 12, 13), rough_top=True),
}


@dataclass(frozen=True)
class FilmSample:
    """One drawn film.

    Attributes
    ----------
    layers : FilmLayers
        What the forward model needs.
    n_sto, n_lao : int
        Relaxed SrTiO3 and LaAlO3 layers (``layers`` holds SrTiO3 first).
    mixed : tuple of int
        0-based indices of the charge-mixed layers, from the bottom.
    rough : bool
        Whether the top layer's occupancy is a parameter.
    """

    layers: FilmLayers
    n_sto: int
    n_lao: int
    mixed: tuple[int, ...]
    rough: bool

    def parameters(self) -> tuple[NDArray[np.float64], tuple[str, ...], tuple[str, ...]]:
        """The structural parameters as one flat vector, with names and units.

        Order: ``c_01..c_{N-1}`` (Å; the top layer's ``c_N`` is fixed, see
        :func:`sample_film`), ``zB_01..zB_N``, ``zOap_01..zOap_N``,
        ``zOpl_01..zOpl_N`` (fractional heights within the layer, units of
        ``c_n``), ``p_1..p_M`` of the mixed layers (Sr fraction, 1), then
        ``occ_top`` (1) if rough. Layers are numbered from the interface with
        the bulk upward.

        Returns
        -------
        values : numpy.ndarray
        names : tuple of str
        units : tuple of str
        """
        f = self.layers
        values = [f.c[:-1], f.z_b, f.z_o_apical, f.z_o_planar, f.p_sr[list(self.mixed)]]
        if self.rough:
            values.append(f.occupancy[-1:])
        names, units = parameter_names(f.n_layers, len(self.mixed), self.rough)
        return np.concatenate(values).astype(np.float64), names, units


def parameter_names(n_layers: int, n_mixed: int, rough: bool
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names and units of the parameter vector of a film of ``n_layers``
    layers, ``n_mixed`` charge-mixed layers and (``rough``) a rough top, in
    the order of :meth:`FilmSample.parameters`."""
    idx = [f"{i + 1:02d}" for i in range(n_layers)]
    names = ([f"c_{i}" for i in idx[:-1]] + [f"zB_{i}" for i in idx]
             + [f"zOap_{i}" for i in idx] + [f"zOpl_{i}" for i in idx]
             + [f"p_{j + 1}" for j in range(n_mixed)])
    units = ["Å"] * (n_layers - 1) + ["c_n"] * (3 * n_layers) + ["1"] * n_mixed
    if rough:
        names.append("occ_top")
        units.append("1")
    return tuple(names), tuple(units)


def sample_sr_fractions(rng: np.random.Generator, n: int = 4,
                        total: float = 2.0) -> NDArray[np.float64]:
    """Sr fractions ``p_1..p_n``, uniform on ``{p : sum p = total, 0 <= p_i < 1}``.

    ``total * Dirichlet(1, ..., 1)`` is uniform on the simplex ``{p >= 0, sum p
    = total}`` (the flat Dirichlet has constant density on the standard
    simplex, and scaling by ``total`` is a similarity); keeping only draws with
    every ``p_i < 1`` gives that uniform law conditioned on the subset, i.e.
    the uniform law on the subset (rejection sampling). For n = 4, total = 2
    a draw is accepted with probability 1/2: ``{p_i >= 1}`` is a copy of the
    simplex of sum 1, a fraction (1/2)^3 of the volume, and the four such
    events are disjoint up to measure zero, 1 - 4/8 = 1/2.
    """
    if not 0 < total < n:
        raise ValueError(f"total={total}: need 0 < total < n={n} for p_i < 1")
    for _ in range(MAX_REJECTIONS):
        p = total * rng.dirichlet(np.ones(n))
        if np.all(p < 1):
            return p
    raise RuntimeError(f"no Sr fractions with p < 1 after {MAX_REJECTIONS} draws")


def sample_film(rng: np.random.Generator, options: FilmOptions | None = None) -> FilmSample:
    """Draw one film (see the module docstring). Same generator state, same film.

    Parameters
    ----------
    rng : numpy.random.Generator
    options : FilmOptions, optional
        The paper's 12-layer setting by default.

    Returns
    -------
    FilmSample
    """
    o = options or FilmOptions()
    n = o.n_layers[0] if len(o.n_layers) == 1 else int(rng.choice(o.n_layers))
    n_sto, n_lao = split_thickness(n, o.n_sto_max, o.n_mixed_side)
    sto = np.arange(n) < n_sto
    c_nom = np.where(sto, o.c_sto, o.c_lao)
    c = c_nom + rng.uniform(-o.c_range, o.c_range, n)
    # the top layer's spacing has no observable: nothing lies above the film's
    # last BO2 plane, and inside the layer only the products u * c_top enter
    # U, so c_top is degenerate with the top layer's fractional heights (a
    # fit of the exact U recovers every other parameter and R² < 0 for
    # c_top). It is held at its nominal value and is not a parameter.
    c[-1] = c_nom[-1]
    d = o.displacement
    z_b = IDEAL_Z_B + rng.uniform(-d, d, n)
    z_oap = IDEAL_Z_O_APICAL + rng.uniform(-d, d, n)
    z_opl = IDEAL_Z_O_PLANAR + rng.uniform(-d, d, n)
    mixed = tuple(range(n_sto - o.n_mixed_side, n_sto + o.n_mixed_side))
    p_sr = sto.astype(float)
    p_sr[list(mixed)] = sample_sr_fractions(rng, 2 * o.n_mixed_side, float(o.n_mixed_side))
    occ = np.ones(n)
    if o.rough_top:
        occ[-1] = rng.uniform(*o.occupancy_range)
    layers = FilmLayers(c=c, z_b=z_b, z_o_apical=z_oap, z_o_planar=z_opl, p_sr=p_sr,
                        ti_b=sto.astype(float), occupancy=occ)
    return FilmSample(layers=layers, n_sto=n_sto, n_lao=n_lao, mixed=mixed, rough=o.rough_top)
