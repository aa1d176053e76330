"""collect averages batches, stacks samples and refuses bad units by name."""

import shutil

import numpy as np
import pytest
import zarr

from cbedflow.campaigns import get_campaign
from cbedflow.collect import collect
from cbedflow.forward.cbed4d import ScanSettings, SimulationSettings, simulate_unit
from cbedflow.storage import CorruptOutputError
from cbedflow.campaigns.lao_sto_cbed.structures import InterfaceGeometry, StructureSpec, build_structure

from conftest import SIGMAS

CAMP = get_campaign({})  # the default campaign (LAO/STO), no config needed to collect
GEOM = InterfaceGeometry(n_substrate=1, n_film=2, y_repeats=4)
SETTINGS = SimulationSettings(sigmas_A=SIGMAS, scan=ScanSettings(0.0, 1.0, 3, 2))


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    d = tmp_path_factory.mktemp("units")
    paths = []
    specs = [StructureSpec("step-0000", "step", 3, 0.0, 1),
             StructureSpec("diffuse-0000", "diffuse", -1, 0.5, 2)]
    for spec in specs:
        atoms = build_structure(spec, GEOM, 40.0)
        for b, seed in enumerate((100, 101)):
            p = d / spec.name / f"b{b}.zarr"
            simulate_unit(atoms, SETTINGS, [seed], p, progress=lambda m: None)
            paths.append(p)
    return paths


def _copy(units, tmp_path):
    out = []
    for p in units:
        q = tmp_path / p.parent.name / p.name
        shutil.copytree(p, q)
        out.append(q)
    return out


def test_collect_averages_batches_and_labels(units, tmp_path):
    ds_path = collect(CAMP, units, tmp_path / "ds.zarr", progress=lambda m: None)
    ds = zarr.open_group(str(ds_path), mode="r")
    assert ds["cbed"].shape[0] == 2
    names = ds.attrs["structure_names"]
    assert names == ["diffuse-0000", "step-0000"]
    i_step = names.index("step-0000")
    b0 = zarr.open_group(str(units[0]))["cbed"][...]
    b1 = zarr.open_group(str(units[1]))["cbed"][...]
    np.testing.assert_allclose(ds["cbed"][i_step], (b0 + b1) / 2, rtol=1e-6)
    h0 = zarr.open_group(str(units[0]))["haadf"][...]
    h1 = zarr.open_group(str(units[1]))["haadf"][...]
    assert ds["haadf"].shape == (2,) + h0.shape and not np.array_equal(h0, h1)
    np.testing.assert_allclose(ds["haadf"][i_step], (h0 + h1) / 2, rtol=1e-6)
    assert ds.attrs["aux_dims"]["haadf"] == ["sample", "scan_x", "scan_y"]
    assert ds.attrs["haadf_range_mrad"][0] == pytest.approx(60.0)
    assert ds["rough"][i_step] == 1 and ds["rough"][1 - i_step] == 0
    assert ds["step_k"][i_step] == 3 and ds["step_k"][1 - i_step] == -1
    assert ds["intermix_fraction"][1 - i_step] == pytest.approx(0.5)
    assert np.isnan(ds["step_depth_A"][1 - i_step])
    assert ds["thickness_A"][0] == pytest.approx(10 * 3.905, rel=1e-6)
    assert len(ds.attrs["unit_checksums"]) == 4


def test_the_dataset_opens_in_xarray_with_named_dims_and_units(units, tmp_path):
    """The collected dataset is a labelled dataset for xarray users: one call,
    named dimensions shared between arrays, units on every array."""
    import xarray as xr

    ds_path = collect(CAMP, units, tmp_path / "ds.zarr", progress=lambda m: None)
    x = xr.open_zarr(str(ds_path), consolidated=False)
    assert x["cbed"].dims == ("sample", "scan_x", "scan_y", "kx", "ky")
    assert x["haadf"].dims == ("sample", "scan_x", "scan_y")
    assert x.sizes["sample"] == 2 and x.sizes["scan_x"] == 3 and x.sizes["scan_y"] == 2
    assert x["thickness_A"].dims == ("sample",) and x["thickness_A"].attrs["units"] == "Å"
    assert x["rough"].attrs["classes"] == ["diffuse", "step"]
    assert "incident probe" in x["cbed"].attrs["units"]
    raw = zarr.open_group(str(ds_path), mode="r")
    np.testing.assert_array_equal(x["cbed"].values, raw["cbed"][...])
    step = x.isel(sample=np.flatnonzero(x["rough"].values == 1))  # selection by label
    assert step.sizes["sample"] == 1 and int(step["step_k"].values[0]) == 3


def _expect_refusal(paths, bad, tmp_path, match):
    out = tmp_path / "ds.zarr"
    with pytest.raises(CorruptOutputError) as exc:
        collect(CAMP, paths, out, progress=lambda m: None)
    assert str(bad) in str(exc.value)
    assert match in str(exc.value)
    assert not out.exists()


def test_rejects_nan(units, tmp_path):
    paths = _copy(units, tmp_path)
    g = zarr.open_group(str(paths[2]), mode="r+")
    g["cbed"][0, 0, 5, 5] = np.nan
    _expect_refusal(paths, paths[2], tmp_path, "non-finite")


def test_rejects_a_unit_without_haadf(units, tmp_path):
    paths = _copy(units, tmp_path)
    shutil.rmtree(paths[3] / "haadf")
    _expect_refusal(paths, paths[3], tmp_path, "no 'haadf' array")


def test_rejects_truncated_chunk(units, tmp_path):
    paths = _copy(units, tmp_path)
    chunks = sorted((paths[1] / "cbed" / "c").rglob("*"))
    victim = [c for c in chunks if c.is_file()][-1]
    victim.unlink()
    _expect_refusal(paths, paths[1], tmp_path, "truncated")


def test_rejects_partial_group(units, tmp_path):
    paths = _copy(units, tmp_path)
    g = zarr.open_group(str(paths[3]), mode="r+")
    g.attrs["complete"] = False
    _expect_refusal(paths, paths[3], tmp_path, "not marked complete")


def test_rejects_unreadable_group(units, tmp_path):
    paths = _copy(units, tmp_path)
    (paths[0] / "zarr.json").write_text("{ truncated")
    _expect_refusal(paths, paths[0], tmp_path, "not a readable zarr")


def test_rejects_intensity_above_one(units, tmp_path):
    paths = _copy(units, tmp_path)
    g = zarr.open_group(str(paths[1]), mode="r+")
    g["cbed"][0, 0] = g["cbed"][0, 0] * 10
    _expect_refusal(paths, paths[1], tmp_path, "(0, 1]")


def test_rejects_wrong_shape(units, tmp_path):
    paths = _copy(units, tmp_path)
    g = zarr.open_group(str(paths[3]), mode="r+")
    data = g["cbed"][...]
    del g["cbed"]
    g.create_array("cbed", data=data[:, :, 1:, :])
    _expect_refusal(paths, paths[3], tmp_path, "shape")


def test_the_dataset_exports_to_emd_and_hyperspy_and_reads_back(units, tmp_path, capsys):
    """The collected dataset exported with `cbedflow export`, read back by the
    readers py4DSTEM (emdfile) and HyperSpy (rosettasciio) use: same values,
    named and calibrated axes, the labels beside the signal."""
    import json

    import emdfile
    from rsciio.hspy import file_reader

    from cbedflow.cli import main

    ds_path = collect(CAMP, units, tmp_path / "ds.zarr", progress=lambda m: None)
    raw = zarr.open_group(str(ds_path), mode="r")
    cbed = raw["cbed"][...]
    assert main(["export", "--input", str(ds_path), "--out", str(tmp_path / "ds.h5")]) == 0
    root = emdfile.read(str(tmp_path / "ds.h5"))
    arr = root.tree("cbed")
    np.testing.assert_array_equal(arr.data, cbed)
    assert list(arr.dim_names) == ["sample", "scan_x", "scan_y", "kx", "ky"]
    assert list(arr.dim_units)[1:] == ["Å", "Å", "mrad", "mrad"]
    step = raw.attrs["scan_step_A"]
    assert arr.dims[1][1] - arr.dims[1][0] == pytest.approx(step[0])
    assert arr.dims[3][1] - arr.dims[3][0] == pytest.approx(raw.attrs["angular_sampling_mrad"][0])
    np.testing.assert_array_equal(root.tree("step_k").data, raw["step_k"][...])
    attrs = json.loads(root.metadata["cbedflow"]["attrs_json"])
    assert attrs["structure_names"] == raw.attrs["structure_names"]

    assert main(["export", "--input", str(ds_path), "--out", str(tmp_path / "ds.hspy")]) == 0
    sig = file_reader(str(tmp_path / "ds.hspy"))[0]
    np.testing.assert_array_equal(sig["data"], cbed)
    axes = {a["name"]: a for a in sig["axes"]}
    assert [a["name"] for a in sig["axes"]] == ["sample", "scan_x", "scan_y", "kx", "ky"]
    assert [a["navigate"] for a in sig["axes"]] == [True, True, True, False, False]
    assert axes["scan_x"]["units"] == "Å" and axes["scan_x"]["scale"] == pytest.approx(step[0])
    assert axes["kx"]["units"] == "mrad"
    labels = sig["original_metadata"]["cbedflow"]["arrays"]
    assert labels["rough"]["values"] == raw["rough"][...].tolist()

    # a bad target is one line and leaves nothing behind
    assert main(["export", "--input", str(ds_path), "--out", str(tmp_path / "ds.zspy")]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "unknown export format '.zspy'; valid: .h5 or .emd" in err[0]
    assert not list(tmp_path.glob("*.zspy")) and not list(tmp_path.glob(".tmp-*"))
