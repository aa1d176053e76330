"""Physics of the X-ray CTR forward model (cbedflow.forward.ctr) and the
LaAlO3/SrTiO3 film sampler (MAMBA, seed 004): the vectorised model against a
loop over every atom, closed forms, symmetries, form factors, the sampler's
constraints."""

import time

import numpy as np
import pytest
from cbedflow.campaigns.lao_sto_ctr.films import (
    PRESETS,
    FilmOptions,
    sample_film,
    sample_sr_fractions,
    split_thickness,
)
from cbedflow.forward.ctr import (
    A_STO,
    DEFAULT_EPS,
    FilmLayers,
    bulk_structure_factor,
    bulk_sum,
    ctr_amplitude,
    ctr_amplitude_explicit,
    ctr_intensity,
    density_profile,
    form_factor,
    log10_intensity,
    rod_grid,
)


def _film(seed=0, **opts):
    return sample_film(np.random.default_rng(seed), FilmOptions(**opts))


# --------------------------------------------------------------------------
# form factors and grid
# --------------------------------------------------------------------------

def test_form_factors_at_q0_equal_the_atomic_number():
    import periodictable

    for el in ("Sr", "La", "Ti", "Al", "O"):
        z = periodictable.elements.symbol(el).number
        f = form_factor(el, np.array([0.0, 2.0, 6.0, 12.0]))
        assert abs(f[0] - z) / z < 0.01, (el, f[0], z)
        assert np.all(np.diff(f) < 0), f"f0({el}) must fall with q: {f}"
    # cached per element and q grid: the same array comes back
    q = np.linspace(0, 10, 7)
    assert form_factor("La", q) is form_factor("La", q.copy())
    assert form_factor("La", np.array(0.0)).shape == ()


def test_grid_is_16_rods_of_240_points():
    g = rod_grid()
    assert g.shape == (16, 240)
    assert g.hk.tolist()[:5] == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    assert g.hk.tolist()[-1] == [3, 3]
    assert g.L[0] == 0.025 and g.L[-1] == 6.0
    np.testing.assert_allclose(np.diff(g.L), 0.025, rtol=1e-9)
    assert all(float(v) in set(g.L.tolist()) for v in range(1, 7))  # Bragg peaks on the grid
    F, U = ctr_amplitude(g.h, g.k, g.l_row, _film().layers)
    assert F.shape == U.shape == (16, 240)
    logi = log10_intensity(np.abs(F) ** 2)
    assert logi.shape == (16, 240) and np.all(np.isfinite(logi))
    # the Bragg peaks tower over the rod between them (bulk sum capped by eps)
    i1 = int(np.flatnonzero(g.L == 1.0)[0])
    assert logi[0, i1] - logi[0, i1 + 20] > 4
    assert rod_grid(h_max=1, k_max=2, l_step=0.05, l_max=3.0).shape == (6, 60)


# --------------------------------------------------------------------------
# vectorised model vs the explicit atom loop
# --------------------------------------------------------------------------

def test_vectorised_matches_the_atom_loop():
    """A rough, charge-mixed, displaced 12-layer film on rods 00, 10, 23 at all
    240 L (Bragg peaks included). The loop sums 25,000 substrate cells with
    the same per-cell attenuation exp(-eps m): the omitted tail is
    e^{-eps N} = e^{-25} ~ 1e-11 of the bulk sum, so the two agree at every
    point, at the peaks too."""
    film = _film(3, rough_top=True).layers
    L = rod_grid().l_row
    h = np.array([[0], [1], [2]])
    k = np.array([[0], [0], [3]])
    fast = ctr_amplitude(h, k, L, film)
    t0 = time.perf_counter()
    slow = ctr_amplitude_explicit(h, k, L, film, n_bulk_cells=25_000)
    t_slow = time.perf_counter() - t0
    rel_f = np.abs(fast.total - slow.total) / np.abs(slow.total)
    rel_u = np.abs(fast.film - slow.film) / np.abs(slow.film)
    print(f"\nvectorised vs atom loop (3 rods x 240 L, 25,000 cells, {t_slow:.1f} s): "
          f"max rel err F {rel_f.max():.2e}, U {rel_u.max():.2e}")
    assert rel_f.max() < 1e-6
    assert rel_u.max() < 1e-10
    # not vacuous: a short substrate (100 cells) is visibly wrong at the peaks
    short = ctr_amplitude_explicit(h, k, L, film, n_bulk_cells=100)
    assert (np.abs(fast.total - short.total) / np.abs(fast.total)).max() > 1e-3


def test_bulk_sum_is_the_geometric_series():
    L = np.array([0.3, 1.0, 2.5, 5.975])
    m = np.arange(1, 40_001)
    direct = np.array([np.sum(np.exp(-2j * np.pi * l * m - DEFAULT_EPS * m)) for l in L])
    np.testing.assert_allclose(bulk_sum(L), direct, rtol=1e-9)
    # at a Bragg peak |S| = 1/(e^eps - 1) ~ 1/eps
    assert abs(bulk_sum(1.0)) == pytest.approx(1 / np.expm1(DEFAULT_EPS), rel=1e-9)


# --------------------------------------------------------------------------
# closed forms and symmetries
# --------------------------------------------------------------------------

def _geometric(phase_step, n):
    """sum_{j<n} e^{i j phase_step}, = n where the step is a multiple of 2π."""
    w = np.exp(1j * phase_step)
    near = np.abs(1 - w) < 1e-9
    return np.where(near, n, (1 - w ** n) / np.where(near, 1, 1 - w))


def test_00_rod_of_an_unperturbed_film_closed_form():
    """On the 00 rod only heights matter: a layer is its AO plane (f_A + f_O)
    at z_n and its BO2 plane (f_B + 2 f_O) at z_n + c_n/2. Ideal SrTiO3 layers
    at c = a continue the substrate, ideal LaAlO3 layers at c' repeat with
    their own spacing:

        F00 = F_STO [S(L) + G(q a, 8)] + e^{i q 8a} F_LAO(c') G(q c', 4)
        F_STO = f_Sr + f_O + (f_Ti + 2 f_O) e^{iπL}
        F_LAO = f_La + f_O + (f_Al + 2 f_O) e^{i q c'/2}
        G(φ, N) = sum_{j<N} e^{i j φ},    q = 2π L / a
    """
    c_lao = 3.79
    film = FilmLayers.ideal(8, 4, c_lao=c_lao)
    L = rod_grid().L
    q = 2 * np.pi * L / A_STO
    f = {el: form_factor(el, q) for el in ("Sr", "La", "Ti", "Al", "O")}
    f_sto = f["Sr"] + f["O"] + (f["Ti"] + 2 * f["O"]) * np.exp(1j * np.pi * L)
    f_lao = f["La"] + f["O"] + (f["Al"] + 2 * f["O"]) * np.exp(1j * q * c_lao / 2)
    np.testing.assert_allclose(bulk_structure_factor(0, 0, L), f_sto, rtol=1e-13)
    u_closed = (f_sto * _geometric(q * A_STO, 8)
                + np.exp(8j * q * A_STO) * f_lao * _geometric(q * c_lao, 4))
    f_closed = f_sto * bulk_sum(L) + u_closed
    F, U = ctr_amplitude(0, 0, L, film)
    # rtol and, at the Laue-function zeros (U ~ 1e-13), atol: 1e-12 of the rod's maximum
    np.testing.assert_allclose(U, u_closed, rtol=1e-11, atol=1e-12 * np.abs(u_closed).max())
    np.testing.assert_allclose(F, f_closed, rtol=1e-11, atol=1e-12 * np.abs(f_closed).max())
    # an all-SrTiO3 ideal film is the substrate continued: U = F_STO G(qa, N)
    _, u_sto = ctr_amplitude(0, 0, L, FilmLayers.ideal(12, 0))
    u_closed = f_sto * _geometric(q * A_STO, 12)
    np.testing.assert_allclose(u_sto, u_closed, rtol=1e-11, atol=1e-12 * np.abs(u_closed).max())
    # and its total at the Bragg peaks is the bulk's peak plus N cells in phase
    i = np.flatnonzero(L == 2.0)[0]
    F_sto, _ = ctr_amplitude(0, 0, L[i], FilmLayers.ideal(12, 0))
    assert F_sto == pytest.approx(f_sto[i] * (bulk_sum(2.0) + 12), rel=1e-12)


def test_xy_symmetric_film_gives_I_hkL_equal_I_khL_and_friedel_pairs():
    film = _film(7, rough_top=True).layers
    hk = rod_grid().hk
    h, k = hk[:, :1], hk[:, 1:]
    L = rod_grid().l_row
    i_hk = ctr_intensity(h, k, L, film)
    np.testing.assert_allclose(i_hk, ctr_intensity(k, h, L, film), rtol=1e-12)
    # Friedel: real f0, real attenuation: F(-q) = conj F(q), on the whole grid
    F = ctr_amplitude(h, k, L, film).total
    F_minus = ctr_amplitude(-h, -k, -L, film).total
    np.testing.assert_allclose(F_minus, np.conj(F), rtol=1e-10)
    np.testing.assert_allclose(ctr_intensity(-h, -k, -L, film), i_hk, rtol=1e-10)
    # atoms only at in-plane 0 and 1/2: mirror x -> -x leaves every rod unchanged
    np.testing.assert_allclose(ctr_intensity(-h, k, L, film), i_hk, rtol=1e-12)
    # but the rods are not all alike (the checks above are not trivially true)
    np.testing.assert_allclose(i_hk[1], i_hk[4], rtol=1e-12)  # 01 and 10 alike ...
    assert not np.allclose(i_hk[1], i_hk[2], rtol=1e-2)  # ... 01 vs 02 not


def test_mixing_and_occupancy_enter_linearly():
    """Eq. (1): f_A = p f_Sr + (1 - p) f_La, so U is affine in each p_n; a
    rough top layer scales that layer's structure factor."""
    base = _film(11).layers
    g = rod_grid()

    def u_with(**changes):
        fields = {name: np.array(getattr(base, name)) for name in
                  ("c", "z_b", "z_o_apical", "z_o_planar", "p_sr", "ti_b", "occupancy")}
        for name, (n, v) in changes.items():
            fields[name][n] = v
        return ctr_amplitude(g.h, g.k, g.l_row, FilmLayers(**fields)).film

    n = 8
    u_sr, u_la, u_mix = u_with(p_sr=(n, 1.0)), u_with(p_sr=(n, 0.0)), u_with(p_sr=(n, 0.3))
    np.testing.assert_allclose(u_mix, 0.3 * u_sr + 0.7 * u_la, rtol=1e-10, atol=1e-10)
    assert np.abs(u_sr - u_la).max() > 1  # La and Sr differ by 19 electrons
    top = base.n_layers - 1
    u1, u0 = u_with(occupancy=(top, 1.0)), u_with(occupancy=(top, 0.0))
    u_half = u_with(occupancy=(top, 0.45))
    np.testing.assert_allclose(u_half, u0 + 0.45 * (u1 - u0), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="p_sr"):
        u_with(p_sr=(n, 1.2))


def test_density_profile_puts_the_planes_where_the_atoms_are():
    """ρ(z) from the 00 rod's U (L = 0.025..6) of an unperturbed 8 + 4 film:
    a peak at every AO plane, the LaO planes higher than the SrO planes, and
    nothing below the substrate top (the transform's sign and scale)."""
    film = FilmLayers.ideal(8, 4)
    g = rod_grid()
    U00 = ctr_amplitude(0, 0, g.L, film).film
    z = np.arange(-8.0, film.thickness + 8.0, 0.01)
    u0 = float(ctr_amplitude(0, 0, 0.0, film).film.real)  # the film's electrons
    rho = density_profile(g.L, U00, z, u0=u0, window_sigma=4.0)
    peaks = []
    for z_n in film.z_a:
        near = np.abs(z - z_n) < 0.5
        z_peak = z[near][np.argmax(rho[near])]
        assert abs(z_peak - z_n) < 0.03, (z_n, z_peak)
        peaks.append(rho[near].max())
    assert min(peaks[8:]) > max(peaks[:8])  # LaO (65 e) over SrO (46 e)
    assert np.abs(rho[z < -2]).max() < 0.1 * max(peaks)
    # the electron count: ρ integrates to U(0) over one period c/ΔL
    zz = -60.0 + 0.01 * np.arange(round(A_STO / 0.025 / 0.01))
    total = density_profile(g.L, U00, zz, u0=u0).sum() * 0.01
    assert total == pytest.approx(u0, rel=1e-6)
    assert u0 == pytest.approx(8 * (38 + 22 + 24) + 4 * (57 + 13 + 24), rel=0.01)


# --------------------------------------------------------------------------
# the film sampler
# --------------------------------------------------------------------------

def test_sampled_films_respect_the_papers_ranges():
    films = [_film(s) for s in range(200)]
    for s in films:
        f = s.layers
        assert (s.n_sto, s.n_lao) == (8, 4) and s.mixed == (6, 7, 8, 9)
        p = f.p_sr[list(s.mixed)]
        assert p.sum() == pytest.approx(2.0, abs=1e-12)
        assert np.all((p >= 0) & (p < 1))
        assert np.all(f.p_sr[:6] == 1) and np.all(f.p_sr[10:] == 0)
        assert np.all(f.ti_b[:8] == 1) and np.all(f.ti_b[8:] == 0)
        assert np.all(np.abs(f.c - 3.905) <= 0.1)
        assert np.all(np.abs(f.z_b - 0.5) <= 0.05)
        assert np.all(np.abs(f.z_o_apical) <= 0.05)
        assert np.all(np.abs(f.z_o_planar - 0.5) <= 0.05)
        assert np.all(f.occupancy == 1)
    c = np.concatenate([s.layers.c for s in films])
    zb = np.concatenate([s.layers.z_b for s in films])
    assert np.ptp(c) > 0.19 and np.ptp(zb) > 0.09  # the ranges are used, not just obeyed


def test_same_seed_same_film():
    a, b = _film(42, rough_top=True), _film(42, rough_top=True)
    va, names, units = a.parameters()
    vb, _, _ = b.parameters()
    np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(va, _film(43, rough_top=True).parameters()[0])
    assert len(va) == len(names) == len(units) == 4 * 12 - 1 + 4 + 1  # c_top fixed
    assert len(set(names)) == len(names)
    assert names[0] == "c_01" and units[0] == "Å" and names[11] == "zB_01"
    assert names[-5:] == ("p_1", "p_2", "p_3", "p_4", "occ_top")
    np.testing.assert_array_equal(va[:11], a.layers.c[:11])
    assert a.layers.c[11] == pytest.approx(3.905)  # the top spacing is not drawn
    np.testing.assert_array_equal(va[-5:-1], a.layers.p_sr[6:10])
    assert va[-1] == a.layers.occupancy[-1]


def test_sr_fractions_are_uniform_on_the_constrained_simplex():
    """Uniform on {sum p = 2, 0 <= p_i < 1}: the marginal density of p_1 is
    the Irwin-Hall slice g(x) = 3/4 (1 + 2x - 2x²) (mean 1/2, variance 3/40).
    An unconstrained 2 x Dirichlet would put mass above 1; clipping or
    renormalising would bend the density."""
    rng = np.random.default_rng(0)
    p = np.array([sample_sr_fractions(rng) for _ in range(20_000)])
    assert np.all(p < 1) and np.allclose(p.sum(axis=1), 2)
    x = p[:, 0]
    assert x.mean() == pytest.approx(0.5, abs=0.01)
    assert x.var() == pytest.approx(3 / 40, abs=0.004)
    edges = np.linspace(0, 1, 11)
    cdf = lambda t: 0.75 * (t + t ** 2 - 2 * t ** 3 / 3)
    expected = np.diff(cdf(edges))
    observed = np.histogram(x, edges)[0] / len(x)
    assert np.abs(observed - expected).max() < 0.01
    # every coordinate alike (exchangeable)
    np.testing.assert_allclose(p.mean(axis=0), 0.5, atol=0.01)


def test_thickness_variants_and_rough_top():
    assert [split_thickness(n) for n in (4, 11, 12, 13, 16, 24)] == [
        (2, 2), (8, 3), (8, 4), (8, 5), (8, 8), (8, 16)]
    with pytest.raises(ValueError, match="at least 4"):
        split_thickness(3)
    for name, n in (("layers4", 4), ("layers16", 16), ("layers24", 24)):
        s = sample_film(np.random.default_rng(1), PRESETS[name])
        assert s.layers.n_layers == n
        assert s.layers.p_sr[list(s.mixed)].sum() == pytest.approx(2.0)
        assert s.mixed == tuple(range(s.n_sto - 2, s.n_sto + 2))
    rng = np.random.default_rng(5)
    drawn = [sample_film(rng, PRESETS["layers11to13_rough"]) for _ in range(60)]
    assert {s.layers.n_layers for s in drawn} == {11, 12, 13}
    occ = np.array([s.layers.occupancy[-1] for s in drawn])
    assert np.all((occ >= 0.3) & (occ <= 1)) and occ.min() < 0.5
    assert all(np.all(s.layers.occupancy[:-1] == 1) for s in drawn)
    assert all(s.parameters()[1][-1] == "occ_top" for s in drawn)


def test_time_of_one_film_on_the_full_grid():
    g = rod_grid()
    film = _film(1).layers
    ctr_amplitude(g.h, g.k, g.l_row, film)  # form factors cached
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        F, U = ctr_amplitude(g.h, g.k, g.l_row, film)
    dt = (time.perf_counter() - t0) / n
    print(f"\none film, 16 x 240 grid: {dt * 1e3:.2f} ms (F and U)")
    assert F.shape == (16, 240) and np.all(np.isfinite(F)) and np.all(np.isfinite(U))
