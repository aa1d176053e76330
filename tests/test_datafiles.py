"""The 4D-STEM readers (cbedflow.datafiles): every format written by its own
library's writer (rosettasciio, emdfile, h5py, zarr, abTEM) or, where no
library writes it (Merlin .mib, EMPAD), from its published layout
(tests/formats.py), read back to the same array in (scan_x, scan_y, kx, ky)
order with the calibrations the file carries; bad files are one clear line."""

import numpy as np
import pytest
import zarr

from cbedflow.datafiles import (Calibration, DataFileError, read_4dstem, resolve_calibration,
                                wavelength_A)
from formats import write_dm4, write_empad, write_mib, write_velox

STEP_A, ANG_MRAD = 0.9765, 1.61


@pytest.fixture(scope="module")
def cbed():
    """(scan_x, scan_y, kx, ky) counts with no symmetry, so any swapped or
    flipped axis shows."""
    return np.random.default_rng(7).integers(0, 4000, (7, 3, 20, 22)).astype(np.float32)


def _hyperspy_signal(cbed, step_nm, ang_mrad, energy_keV=200.0, alpha=20.0):
    """A HyperSpy signal dictionary: data in HyperSpy order (nav y, nav x,
    sig y, sig x), axes in array order."""
    ny, nx = cbed.shape[1], cbed.shape[0]
    h, w = cbed.shape[3], cbed.shape[2]
    axes = [{"name": "y", "size": ny, "scale": step_nm, "offset": 0.0, "units": "nm",
             "navigate": True},
            {"name": "x", "size": nx, "scale": step_nm, "offset": 0.0, "units": "nm",
             "navigate": True},
            {"name": "ky", "size": h, "scale": ang_mrad, "offset": 0.0, "units": "mrad",
             "navigate": False},
            {"name": "kx", "size": w, "scale": ang_mrad, "offset": 0.0, "units": "mrad",
             "navigate": False}]
    md = {"General": {"title": "scan"}, "Signal": {"signal_type": "electron_diffraction"},
          "Acquisition_instrument": {"TEM": {"beam_energy": energy_keV,
                                             "convergence_angle": alpha}}}
    return {"data": np.transpose(cbed, (1, 0, 3, 2)), "axes": axes, "metadata": md,
            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
            "learning_results": {}, "models": {},
            "package_info": {"name": "cbedflow-tests", "version": "0"}}


def _write(fmt, path, cbed):
    """Write ``cbed`` as ``fmt``; returns the path to read and its expected
    calibration (step [Å], pixel [mrad] or None, pixel [1/Å] or None,
    energy, semi-angle)."""
    if fmt == "npy":
        np.save(path / "s.npy", cbed)
        return path / "s.npy", (None, None, None, None, None)
    if fmt == "h5":
        import h5py

        with h5py.File(path / "s.h5", "w") as f:
            d = f.create_dataset("cbed", data=cbed)
            d.attrs["scan_step_A"] = [STEP_A, STEP_A]
            d.attrs["angular_sampling_mrad"] = [ANG_MRAD, ANG_MRAD]
            f.create_dataset("haadf", data=cbed.sum((2, 3)))
        return path / "s.h5", (STEP_A, ANG_MRAD, None, None, None)
    if fmt == "zarr":
        g = zarr.open_group(str(path / "s.zarr"), mode="w")
        g.create_array("cbed", data=cbed)
        g.create_array("haadf", data=cbed.sum((2, 3)))
        g.attrs.update(scan_step_A=[STEP_A, STEP_A], angular_sampling_mrad=[ANG_MRAD] * 2,
                       energy_kV=200.0)
        return path / "s.zarr", (STEP_A, ANG_MRAD, None, 200.0, None)
    if fmt == "emd1":  # py4DSTEM's format, written by its writer library
        import emdfile

        root = emdfile.Root(name="scan")
        root.tree(emdfile.Array(data=cbed, name="datacube", dims=[STEP_A / 10, STEP_A / 10,
                                                                    ANG_MRAD, ANG_MRAD],
                                dim_units=["nm", "nm", "mrad", "mrad"],
                                dim_names=["Rx", "Ry", "Qx", "Qy"]))
        root.tree(emdfile.Array(data=cbed.sum((2, 3)), name="haadf"))
        root.metadata = emdfile.Metadata(name="microscope",
                                         data={"energy_kV": 300.0, "semiangle_mrad": 21.0})
        emdfile.save(str(path / "s.h5"), root, mode="o")
        return path / "s.h5", (STEP_A, ANG_MRAD, None, 300.0, 21.0)
    if fmt == "hspy":
        from rsciio.hspy import file_writer

        file_writer(str(path / "s.hspy"), _hyperspy_signal(cbed, STEP_A / 10, ANG_MRAD))
        return path / "s.hspy", (STEP_A, ANG_MRAD, None, 200.0, 20.0)
    if fmt == "ncem":
        from rsciio.emd import file_writer

        file_writer(str(path / "s.emd"), _hyperspy_signal(cbed, STEP_A / 10, ANG_MRAD))
        return path / "s.emd", (STEP_A, ANG_MRAD, None, None, None)
    if fmt == "mib":
        write_mib(path / "s.mib", cbed)
        return path / "s.mib", (None, None, None, None, None)
    if fmt == "empad":
        write_empad(path / "s.xml", cbed, STEP_A, pixel_invA=0.0064)
        return path / "s.xml", (STEP_A, None, 0.0064, None, None)
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["npy", "h5", "zarr", "emd1", "hspy", "ncem", "mib", "empad"])
def test_every_format_reads_back_the_scan_and_its_calibration(tmp_path, cbed, fmt):
    path, (step, ang, rec, energy, alpha) = _write(fmt, tmp_path, cbed)
    scan = read_4dstem(path, scan_shape=(7, 3) if fmt == "mib" else None)
    data = scan.load(path)
    if fmt == "empad":  # each pattern centred in a 128 x 128 frame
        assert data.shape == (7, 3, 128, 128)
        data = data[:, :, 64 - 10:64 + 10, 64 - 11:64 + 11]
    np.testing.assert_array_equal(data, cbed)
    cal = scan.calibration
    for got, want in ((cal.scan_step_A, step), (cal.angular_sampling_mrad, ang),
                      (cal.reciprocal_sampling_invA, rec)):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, [want, want], rtol=1e-6)
    assert cal.energy_kV == energy and cal.semiangle_mrad == alpha
    if fmt in ("h5", "zarr", "emd1"):
        np.testing.assert_allclose(scan.haadf, cbed.sum((2, 3)), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["hspy", "emd1", "zarr"])
def test_scan_axis_y_swaps_both_scan_and_both_detector_axes(tmp_path, cbed, fmt):
    path, _ = _write(fmt, tmp_path, cbed)
    data = read_4dstem(path, scan_axis="y").load(path)
    np.testing.assert_array_equal(data, np.transpose(cbed, (1, 0, 3, 2)))


def test_abtem_zarr_with_abtems_calibrations(tmp_path):
    """A 4D scan simulated by abTEM and saved with its own to_zarr: the scan
    step, the reciprocal pixel converted to mrad at the file's energy equals
    abTEM's own angular sampling."""
    import abtem
    from ase.build import bulk

    pot = abtem.Potential(bulk("Si", "diamond", a=5.43, cubic=True), gpts=48,
                          slice_thickness=2)
    probe = abtem.Probe(energy=200e3, semiangle_cutoff=20)
    m = probe.scan(pot, scan=abtem.GridScan((0, 0), (1.0, 1.5), gpts=(4, 3)),
                   detectors=abtem.PixelatedDetector(max_angle=40)).compute(progress_bar=False)
    m.to_zarr(str(tmp_path / "a.zarr"))
    scan = read_4dstem(tmp_path / "a.zarr")
    np.testing.assert_array_equal(scan.load("a"), m.array)
    np.testing.assert_allclose(scan.calibration.scan_step_A, [0.25, 0.5])
    cal = resolve_calibration("a", scan.calibration, {}, {})
    np.testing.assert_allclose(cal["angular_sampling_mrad"], m.angular_sampling, rtol=1e-7)
    assert cal["energy_kV"] == 200.0 and cal["semiangle_mrad"] == 20.0


def test_wavelength_agrees_with_abtem():
    import abtem
    from abtem.core.energy import energy2wavelength

    for kv in (60, 200, 300):
        assert wavelength_A(kv) == pytest.approx(energy2wavelength(kv * 1e3), rel=1e-7)


def _cal(**kw):
    return Calibration(**{k: (np.asarray(v, float) if isinstance(v, list) else v)
                          for k, v in kw.items()})


@pytest.mark.parametrize("found, flags, model, message", [
    (_cal(scan_step_A=[1.0, 1.0]), {"scan_step_A": 0.5}, {},
     r"--scan-step-A=0.5 does not match the data's scan_step_A=\[1.0, 1.0\]; drop the flag"),
    (_cal(scan_step_A=[1.0, 1.0], angular_sampling_mrad=[2.0, 2.0], energy_kV=300.0), {},
     {"energy_kV": 200.0}, "energy 300 kV but the model was trained at 200 kV"),
    (_cal(scan_step_A=[1.0, 1.0], angular_sampling_mrad=[2.0, 2.0]), {"semiangle_mrad": 25},
     {"semiangle_mrad": 20.0}, "probe semi-angle 25 mrad but the model was trained at 20"),
    (_cal(scan_step_A=[1.0, 1.0], reciprocal_sampling_invA=[0.01, 0.01]), {}, {},
     "converting it to mrad needs the beam energy: give --energy-kV"),
    (_cal(angular_sampling_mrad=[2.0, 2.0]), {}, {}, "sampling scan_step_A is missing"),
    (_cal(scan_step_A=[1.0, 1.0]), {"angular_sampling_mrad": -2}, {},
     "--angular-sampling-mrad=-2 is invalid; valid: a positive number"),
])
def test_calibration_conflicts_are_one_line(found, flags, model, message):
    with pytest.raises(DataFileError, match=message):
        resolve_calibration("scan", found, flags, model)


def test_flags_complete_the_file_and_reciprocal_pixels_become_mrad():
    got = resolve_calibration("scan", _cal(reciprocal_sampling_invA=[0.01, 0.02]),
                              {"scan_step_A": 0.5, "energy_kV": 200.0}, {"energy_kV": 200.0})
    np.testing.assert_allclose(got["angular_sampling_mrad"],
                               np.array([0.01, 0.02]) * wavelength_A(200) * 1e3)
    assert got["sources"]["scan_step_A"] == "flag"
    assert got["sources"]["angular_sampling_mrad"].startswith("file (1/Å")


@pytest.mark.parametrize("case, message", [
    ("mib_truncated", "truncated: .* hold 7 complete frames of 1264 bytes; the scan 7 x 3 needs 21"),
    ("mib_no_hdr", "without its .hdr beside it; give the scan shape with --scan-shape"),
    ("empad_truncated", "not a whole number of EMPAD frames"),
    ("empad_no_raw", "is not beside it"),
    ("zspy", "HyperSpy .zspy needs zarr < 3"),
    ("h5_text", "not a readable HDF5 file"),
    ("emd1_no_4d", "EMD 1.0 file with no 4D array"),
    ("scan_axis", "scan axis 'z' is invalid; valid: x or y"),
])
def test_bad_files_are_one_line(tmp_path, cbed, case, message):
    kw = {}
    if case == "mib_truncated":
        write_mib(tmp_path / "s.mib", cbed)
        data = (tmp_path / "s.mib").read_bytes()
        (tmp_path / "s.mib").write_bytes(data[:len(data) // 3])
        path, kw = tmp_path / "s.mib", {"scan_shape": (7, 3)}
    elif case == "mib_no_hdr":
        write_mib(tmp_path / "s.mib", cbed)
        path = tmp_path / "s.mib"
    elif case in ("empad_truncated", "empad_no_raw"):
        raw = write_empad(tmp_path / "s.xml", cbed, STEP_A)
        if case == "empad_no_raw":
            raw.unlink()
        else:
            raw.write_bytes(raw.read_bytes()[:-100])
        path = tmp_path / "s.xml"
    elif case == "zspy":
        (tmp_path / "s.zspy").mkdir()
        path = tmp_path / "s.zspy"
    elif case == "h5_text":
        (tmp_path / "s.h5").write_text("not hdf5")
        path = tmp_path / "s.h5"
    elif case == "emd1_no_4d":
        import emdfile

        root = emdfile.Root(name="scan")
        root.tree(emdfile.Array(data=cbed[:, 0, 0], name="line"))
        emdfile.save(str(tmp_path / "s.h5"), root, mode="o")
        path = tmp_path / "s.h5"
    else:
        np.save(tmp_path / "s.npy", cbed)
        path, kw = tmp_path / "s.npy", {"scan_axis": "z"}
    with pytest.raises(DataFileError, match=message) as err:
        scan = read_4dstem(path, **kw)
        scan.load(path)
    assert "\n" not in str(err.value)


# --- images ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).random((30, 40)).astype(np.float32)  # (y, x)


def test_tiff_image_with_imagej_calibration(tmp_path, image):
    """A TIFF as ImageJ (and Fiji-based acquisition scripts) write it, with the
    pixel size in nm: read with rosettasciio's TIFF reader, pixel size in Å."""
    import tifffile

    from cbedflow.datafiles import read_image

    tifffile.imwrite(tmp_path / "a.tif", image, imagej=True,
                     resolution=(1 / 0.0125, 1 / 0.025), metadata={"unit": "nm"})
    img = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(img.data, image)
    np.testing.assert_allclose(img.pixel_size_A, [0.125, 0.25], rtol=1e-6)


def test_hyperspy_image_and_npy(tmp_path, image):
    from rsciio.hspy import file_writer

    from cbedflow.datafiles import read_image

    sig = {"data": image, "axes": [
        {"name": "y", "size": 30, "scale": 0.2, "offset": 0.0, "units": "Å", "navigate": False},
        {"name": "x", "size": 40, "scale": 0.1, "offset": 0.0, "units": "Å", "navigate": False}],
        "metadata": {"General": {"title": "HAADF"}, "Signal": {"signal_type": ""}},
        "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
        "learning_results": {}, "models": {}, "package_info": {"name": "t", "version": "0"}}
    file_writer(str(tmp_path / "a.hspy"), sig)
    img = read_image(tmp_path / "a.hspy", select="haadf")
    np.testing.assert_array_equal(img.data, image)
    np.testing.assert_allclose(img.pixel_size_A, [0.1, 0.2])
    assert img.title == "HAADF"
    with pytest.raises(DataFileError, match="no 2D image titled like 'ABF'"):
        read_image(tmp_path / "a.hspy", select="ABF")
    np.save(tmp_path / "a.npy", image)
    assert read_image(tmp_path / "a.npy").pixel_size_A is None
    with pytest.raises(DataFileError, match=r"unknown image format '.png'; expected .tif"):
        (tmp_path / "a.png").write_bytes(b"x")
        read_image(tmp_path / "a.png")


def test_dm4_image_with_its_calibration(tmp_path, image):
    """A Gatan DM4 image (written from the published tag-file layout:
    tests/formats.py) read through rosettasciio: data, pixel size in Å, title."""
    from cbedflow.datafiles import read_image

    write_dm4(tmp_path / "a.dm4", image, 0.0125, units="nm", name="HAADF 80-200 mrad")
    img = read_image(tmp_path / "a.dm4")
    np.testing.assert_array_equal(img.data, image)
    np.testing.assert_allclose(img.pixel_size_A, [0.125, 0.125], rtol=1e-6)
    assert img.format == "digitalmicrograph" and img.title.startswith("HAADF")
    (tmp_path / "b.dm4").write_bytes((tmp_path / "a.dm4").read_bytes()[:200])
    with pytest.raises(DataFileError, match="b.dm4: cannot be read as an image"):
        read_image(tmp_path / "b.dm4")


def test_velox_emd_images_picked_by_detector(tmp_path, image):
    """A Velox EMD file with two simultaneously recorded images (HAADF, ABF;
    written from the published layout): each found by its detector name, with
    the pixel size in Å."""
    from cbedflow.datafiles import read_image

    write_velox(tmp_path / "a.emd", {"HAADF": image, "ABF": 1 - image}, 1.25e-11)
    for name, want in (("HAADF", image), ("abf", 1 - image)):
        img = read_image(tmp_path / "a.emd", select=name)
        np.testing.assert_array_equal(img.data, want)
        np.testing.assert_allclose(img.pixel_size_A, [0.125, 0.125], rtol=1e-9)
        assert img.title.lower() == name.lower()
