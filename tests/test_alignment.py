"""Window alignment to a reference profile (cbedflow.alignment) and its use
by the LAO/STO campaign's example cutting."""

from __future__ import annotations

import numpy as np
import pytest

from cbedflow.alignment import mean_template, profile_offset
from cbedflow.campaigns import get_campaign
from cbedflow.campaigns.lao_sto_cbed import align_shift, reference_profile, scan_windows
from cbedflow.examples import ExampleError


def _interface_profile(n: int, edge: float, rng=None) -> np.ndarray:
    """A HAADF-like line: columns every 4 positions (A sites), a bright film
    beyond ``edge`` [positions], a little noise."""
    x = np.arange(n, dtype=float)
    columns = np.cos(2 * np.pi * (x - edge) / 4) ** 2  # the lattice moves with the scan
    level = 1.0 + 1.5 / (1 + np.exp(-(x - edge) / 0.7))
    p = level * (0.3 + columns)
    if rng is not None:
        p = p + rng.normal(0, 0.02, n)
    return p


def test_profile_offset_finds_a_known_shift_whatever_the_scale():
    t = _interface_profile(25, 10.0)
    for s in (-4, -1, 0, 3, 4):
        p = 7.0 * _interface_profile(25, 10.0 + s) + 3.0  # another gain and offset
        assert profile_offset(p, t, 4, range(-4, 5)) == s
    # shifts whose segment leaves the profile are not candidates
    assert profile_offset(_interface_profile(25, 14.0), t, 4, range(-20, 21)) == 4
    with pytest.raises(ValueError, match="no shift places"):
        profile_offset(np.ones(10), t, 4, range(50, 60))


def test_mean_template_aligns_lines_and_stays_centred():
    rng = np.random.default_rng(3)
    true = rng.integers(-3, 4, 40)
    profiles = np.stack([_interface_profile(25, 12.0 + s, rng) for s in true])
    template, shifts, _ = mean_template(profiles, 4)
    # every line's shift is recovered up to one common offset, which the
    # median re-centring keeps near zero
    assert len(set(shifts - true)) == 1 and abs(int((shifts - true)[0])) <= 1
    assert template.shape == (25,)
    # the template is sharper than the plain mean: its film/substrate step
    # is where the lines' median edge is
    assert profile_offset(_interface_profile(25, 12.0 + np.median(true)), template, 4,
                          range(-4, 5)) == int(np.median(true)) - int(np.median(true))
    with pytest.raises(ValueError, match="cannot be shifted"):
        mean_template(profiles[:, :8], 4)


def test_windows_follow_the_alignment_shift_then_the_jitter():
    crop = {"window_positions": 13, "jitter_positions": 2, "align_positions": 4}
    assert scan_windows(25, {**crop, "jitter_positions": 0}, 1, "t", 0, 0, shift=3) == [(9, 0)]
    for line in range(20):
        (start, offset), = scan_windows(25, crop, 1, "t", 5, line, shift=-4)
        assert start == 6 - 4 + offset and -2 <= offset <= 2
    with pytest.raises(ExampleError, match="needs 25 probe positions along x; the scan has 21"):
        scan_windows(21, crop, 1, "t", 0, 0)
    with pytest.raises(ExampleError, match="alignment shift 5 is outside"):
        scan_windows(25, crop, 1, "t", 0, 0, shift=5)


def test_cut_examples_align_each_sample_to_the_training_reference():
    camp = get_campaign({})
    cfg = {"seed": 1, "crop": {"pattern_px": 4, "binning": 2, "window_positions": 13,
                               "jitter_positions": 0, "train_windows": 1,
                               "align_positions": 4}}
    rng = np.random.default_rng(0)
    edges = {0: 12.0, 1: 14.0, 2: 9.0}
    haadf = {s: np.repeat(_interface_profile(25, e, rng)[:, None], 2, axis=1)
             for s, e in edges.items()}
    ref = {"alignment": reference_profile(np.stack([haadf[s].mean(axis=1) for s in edges]), 4)}
    assert ref["alignment"]["max_shift_positions"] == 4 and len(ref["alignment"]["template"]) == 25
    cbed = np.zeros((25, 2, 4, 4), np.float32)
    cbed[:, :, 2, 2] = np.arange(25)[:, None]  # the position index, in the zero beam
    task = camp.tasks["rough_vs_diffuse"]
    starts = {}
    for s in edges:
        ex = camp.cut_examples(cbed, task, cfg, sample=s, aux={"haadf": haadf[s]}, reference=ref)
        (v, meta), _ = ex
        assert meta["align_shift"] == align_shift(haadf[s].mean(axis=1), ref["alignment"])
        starts[s] = int(v[0, 1, 1])
        assert starts[s] == 6 + meta["align_shift"]
    # the windows follow the interface: 2 positions later, 3 earlier
    assert starts[1] - starts[0] == 2 and starts[0] - starts[2] == 3
    with pytest.raises(ExampleError, match="no HAADF signal"):
        camp.cut_examples(cbed, task, cfg, sample=0, reference=ref)


def test_jitter_before_alignment_is_removed_by_the_alignment():
    """crop.jitter_stage before_alignment: the drawn offset misplaces the scan
    and the alignment, searched about the misplaced window, puts every test
    window back on the interface (as predict places a measured scan); after
    alignment the same offsets stay in the windows."""
    camp = get_campaign({})
    rng = np.random.default_rng(0)
    edge = 14.0  # the interface 2 positions later than the template's
    haadf = np.repeat(_interface_profile(25, edge, rng)[:, None], 2, axis=1)
    ref = {"alignment": reference_profile(np.stack([
        _interface_profile(25, e, rng) for e in (12.0, 12.0, 12.0)]), 2)}
    cbed = np.zeros((25, 2, 4, 4), np.float32)
    cbed[:, :, 2, 2] = np.arange(25)[:, None]
    task = camp.tasks["rough_vs_diffuse"]
    base = {"pattern_px": 4, "binning": 2, "window_positions": 13, "jitter_positions": 2,
            "train_windows": 1, "align_positions": 2}
    starts = {}
    for stage in ("before_alignment", "after_alignment"):
        cfg = {"seed": 1, "crop": {**base, "jitter_stage": stage}}
        got = []
        for sample in range(12):
            for v, meta in camp.cut_examples(cbed, task, cfg, sample=sample,
                                             aux={"haadf": haadf}, reference=ref):
                got.append((int(v[0, 1, 1]), meta["window_offset"], meta["align_shift"]))
        starts[stage] = got
    offsets = {o for _, o, _ in starts["before_alignment"]}
    assert len(offsets) > 2  # the misplacements were drawn
    assert {s for s, _, _ in starts["before_alignment"]} == {6 + 2}  # all back on the interface
    assert all(shift == 2 for _, _, shift in starts["before_alignment"])
    assert [s for s, _, _ in starts["after_alignment"]] == \
        [6 + 2 + o for _, o, _ in starts["after_alignment"]]


def test_the_centred_task_keeps_the_simulated_placement():
    """rough_vs_diffuse_centred: the paper's protocol as run, whatever crop says
    (no reference, no shift, no jitter, one window per training line)."""
    camp = get_campaign({})
    cfg = {"seed": 1, "crop": {"pattern_px": 4, "binning": 2, "window_positions": 13,
                               "jitter_positions": 2, "train_windows": 5,
                               "align_positions": 4}}
    task = camp.tasks["rough_vs_diffuse_centred"]
    assert camp.example_reference({}, np.arange(3), cfg, task) == {}
    cbed = np.zeros((25, 2, 4, 4), np.float32)
    cbed[:, :, 2, 2] = np.arange(25)[:, None]
    ex = camp.cut_examples(cbed, task, cfg, sample=3, split="train")
    assert [int(v[0, 1, 1]) for v, _ in ex] == [6, 6]
    assert all(m["window_offset"] == 0 and m["align_shift"] == 0 for _, m in ex)
    with pytest.raises(ExampleError, match="needs the virtual HAADF|has none"):
        camp.example_reference({}, np.arange(3), cfg, camp.tasks["rough_vs_diffuse"])


def _supercell_line(a_sites: list[float], n: int, start_cell: int) -> np.ndarray:
    """HAADF-like line at a quarter-cell step through a periodic supercell
    whose A-site columns have intensities ``a_sites`` (one per cell), B
    sites 0.1, channels 0.05; the line starts ``start_cell`` cells in."""
    cell = np.array([0.0, 0.05, 0.1, 0.05])
    out = []
    for j in range(n):
        c, q = divmod(j, 4)
        v = cell[q]
        out.append(a_sites[(c + start_cell) % len(a_sites)] if q == 0 else v)
    return np.array(out)


def test_a_thinner_film_aligns_by_its_interface_not_by_the_whole_line():
    """The LAO/STO supercell's k = 10 step is k = 0 with its first film cell
    turned to substrate: the film is a cell thinner, so no shift maps the
    whole line onto k = 0; compared one cell either side of the rising
    edge, it is k = 0 one cell (4 positions) further."""
    from cbedflow.alignment import rising_edge

    sr, la = 0.7, 1.0
    k0 = [sr, sr, la, la]        # cap, substrate, film, film
    k10 = [sr, sr, sr, la]       # the first film cell is substrate
    lines = np.stack([_supercell_line(k0, 25, 0)] * 6 + [_supercell_line(k10, 25, 0)] * 2)
    template, _, core = mean_template(lines, 4, period=4)
    assert core == (rising_edge(template, 4, 4) - 4, rising_edge(template, 4, 4) + 4)
    assert template[core[0]:core[1]].max() == template[core[0] + 4:core[1]].max()  # La after
    shift10 = profile_offset(lines[-1], template, 4, range(-4, 5), core)
    assert shift10 == 4 and profile_offset(lines[0], template, 4, range(-4, 5), core) == 0
    # (over the whole line this idealised profile aligns too; the simulated
    # ones mostly did not: docs/method.md)
    ref = reference_profile(lines, 4, period=4)
    assert ref["core"] == list(core) and align_shift(lines[-1], ref) == 4
    with pytest.raises(ValueError, match="no room for a rise"):
        rising_edge(template[:10], 4, 4)
