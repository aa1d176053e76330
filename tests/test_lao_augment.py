"""The LAO/STO training split's mirrored lines (crop.train_mirror): real
abTEM patterns of a structure and of its y -> -y mirror."""

import numpy as np
import pytest
import zarr

from cbedflow.campaigns.lao_sto_cbed import crop_pattern, mirror_ky
from cbedflow.campaigns.lao_sto_cbed.structures import (
    InterfaceGeometry,
    StructureSpec,
    build_structure,
)
from cbedflow.forward.cbed4d import ScanSettings, SimulationSettings, simulate_unit

#: 40 % of the first AlO2 plane's Al swapped with Ti: no mirror symmetry of its own
MIXED = StructureSpec("diffuse-0000", "diffuse", -1, 0.4, 7)
SCAN = ScanSettings(start_cells=-0.5, extent_cells=2.0, positions_x=5, positions_y=4)


def _mirrored(atoms):
    """The y -> a - y mirror (through the B columns at y = a/2): probe rows
    a/4 apart map 1 <-> 3 and 2 <-> 2."""
    m = atoms.copy()
    pos = m.positions
    a = float(atoms.info["unit_cell_A"])
    pos[:, 1] = np.mod(a - pos[:, 1], m.cell[1, 1])
    m.positions = pos
    return m


def _patterns(tmp_path, atoms, name):
    settings = SimulationSettings(sigmas_A={}, scan=SCAN,  # static lattice: no random draw
                                  sampling_A=0.08, detector_max_angle_mrad=40.0)
    out = tmp_path / f"{name}.zarr"
    simulate_unit(atoms, settings, [1], out, progress=lambda m: None)
    return zarr.open_group(str(out), mode="r")["cbed"][...].astype(np.float64)


@pytest.fixture(scope="module", params=[(1, 4, 52), (2, 5, 65)])
def pair(request, tmp_path_factory):
    """Patterns of rows 3, 2, 1 of the structure and rows 1, 2, 3 of its mirror."""
    tmp = tmp_path_factory.mktemp("mirror")
    substrate, cells, size = request.param  # square 4 a and 5 a cells: even and odd sizes
    geometry = InterfaceGeometry(n_substrate=substrate, n_film=2, y_repeats=cells)
    atoms = build_structure(MIXED, geometry, 8.0)
    a = _patterns(tmp, atoms, "a")
    m = _patterns(tmp, _mirrored(atoms), "m")
    assert a.shape[-1] == size
    return a[:, [3, 2, 1]], m[:, [1, 2, 3]]


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_mirrored_structure_gives_ky_mirrored_patterns(pair):
    """The mirror's patterns are the original's mirrored along ky (abTEM's
    last axis) about the zero beam, for odd and even pattern sizes; not along
    kx, and the structure is not mirror symmetric itself."""
    a, m = pair
    n = a.shape[-1]
    keep = slice(1, None) if n % 2 == 0 else slice(None)  # even: index 0 has no partner
    assert _rel(mirror_ky(a)[..., keep], m[..., keep]) < 1e-4
    assert _rel(np.swapaxes(mirror_ky(np.swapaxes(a, -1, -2)), -1, -2)[..., keep, keep],
                m[..., keep, keep]) > 1e-2
    assert _rel(mirror_ky(a)[..., keep], a[..., keep]) > 1e-2


@pytest.mark.parametrize("binning", [1, 2, 4])
def test_mirroring_before_the_crop_is_exact_and_a_reversal_after_it_is_not(pair, binning):
    """What cut_examples does (mirror_ky, then crop_pattern) equals the crop of
    the mirrored structure's patterns; reversing the binned crop is off
    wherever the even crop puts the zero beam half a pixel off its middle."""
    a, m = pair
    p = (a.shape[-1] - 2) // (2 * binning) * 2 * binning  # even, never the unpartnered index
    truth = crop_pattern(m, p, binning)
    assert _rel(crop_pattern(mirror_ky(a), p, binning), truth) < 1e-4
    assert _rel(crop_pattern(a, p, binning)[..., ::-1], truth) > 1e-2


def test_cut_examples_add_the_mirrored_lines_to_the_training_split_only():
    """crop.train_mirror: every training line twice (the second mirror_ky'd
    before the crop, at the same window, mirrored = 1); validation and test
    lines as without it; the y-averaged step-position line mirrored too."""
    from cbedflow.campaigns import get_campaign

    camp = get_campaign({})
    cbed = np.random.default_rng(0).random((17, 4, 9, 9)).astype(np.float32)
    crop = {"pattern_px": 8, "binning": 2, "window_positions": 13, "jitter_positions": 0,
            "train_windows": 1, "align_positions": 0}
    task = camp.tasks["rough_vs_diffuse"]
    off = {"seed": 1, "crop": crop}
    on = {"seed": 1, "crop": {**crop, "train_mirror": True}}
    plain = camp.cut_examples(cbed, task, off, split="train")
    both = camp.cut_examples(cbed, task, on, split="train")
    assert len(plain) == 4 and len(both) == 8
    for (v0, m0), (v1, m1) in zip(plain, both[:4]):
        np.testing.assert_array_equal(v0, v1)
        assert m1["mirrored"] == 0 and m0 == m1
    want = crop_pattern(mirror_ky(cbed), 8, 2)[2:15]
    for iy, (v, meta) in enumerate(both[4:]):
        assert meta == {**plain[iy][1], "mirrored": 1}
        np.testing.assert_allclose(v, want[:, iy])
        assert not np.allclose(v, plain[iy][0])
    for split in ("validation", "test"):
        assert len(camp.cut_examples(cbed, task, on, split=split)) == 4
    # the paper's-protocol task keeps its windows, mirrored lines added (an augmentation)
    assert len(camp.cut_examples(cbed, camp.tasks["rough_vs_diffuse_centred"], on,
                                 split="train")) == 8
    averaged = camp.cut_examples(cbed, camp.tasks["step_position"], on, split="train")
    assert [m["mirrored"] for _, m in averaged] == [0, 1]


def test_mirror_off_hashes_as_absent(root):
    """Stages of runs made before crop.train_mirror existed are not rerun: off
    hashes as a crop section without the key, on does not."""
    from cbedflow.campaigns.lao_sto_cbed import LaoStoCbed
    from cbedflow.config import load

    c = load(root / "config" / "config.yaml")
    camp = LaoStoCbed(c)
    assert c["crop"]["train_mirror"] is False
    before = {k: v for k, v in c["crop"].items() if k != "train_mirror"}
    assert camp.hashed_section("crop", c["crop"]) == before
    assert camp.hashed_section("crop", {**c["crop"], "train_mirror": True}) != before
