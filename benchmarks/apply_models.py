"""Apply trained task models to every structure of a collected dataset, as
``cbedflow predict`` applies a model to a measured scan, and score them.

    # training environment (TensorFlow); PYTHONPATH=workflow
    python benchmarks/apply_models.py results-sampling-008/dataset.zarr \\
        --models results-reproduce/models --pair results-sampling-005/dataset.zarr \\
        --out docs/benchmarks/sampling_accuracy.json

Every structure of the dataset (``cbed`` (sample, scan_x, scan_y, kx, ky) and
``haadf`` (sample, scan_x, scan_y), sampled as the attributes ``scan_step_A``
[Å] and ``angular_sampling_mrad`` [mrad] say) is one measured scan. Its
examples are cut exactly as ``predict`` cuts a scan
(:mod:`cbedflow.campaigns.lao_sto_cbed.measured`): the window placed by
:func:`aligned_start_A` on the scan's HAADF profile for a model trained with
alignment, centred on the scan line otherwise; the scan resampled onto the
model's probe step and detector pixels (:func:`prepare`; one example per
scan_y line, or one y-averaged example for ``average_y`` tasks); then
:func:`cbedflow.learn.data.preprocess` with the model manifest's transform
and input scaling. The class is the argmax of the plain softmax (no MC
dropout). Labels are the dataset's label arrays mapped to the task's classes
with :meth:`cbedflow.tasks.Task.keeps` (``only``/``exclude``), as the
campaign's ``sample_classes`` maps its structures: e.g. step_vs_intermixing
leaves the flat k = 0 and 10 out, step_position keeps steps only.

Per model (``<models>/<task>/<id>/model.keras`` with its ``manifest.json``):
examples, accuracy, accuracy by step class k (and within +-1 class for an
ordinal task), and where the window was placed. With ``--pair OTHER`` (the
same structures simulated differently, e.g. at a finer sampling) the same
for OTHER, and per model the agreement of the predicted classes example by
example, the accuracy difference (OTHER minus DATASET) with an exact McNemar
p-value on the discordant examples and a 95 % bootstrap interval that
resamples structures (the lines of one structure are not independent), the
softmax difference, and whether the window start differs; beside the models,
the difference of the data itself: relative L2 of each structure's CBED
array, of the model input (cropped and binned patterns) and of the HAADF
signal and its y-averaged profile, all relative to OTHER.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


class ApplyError(ValueError):
    """Bad input: one line naming the problem."""


# -- pure helpers (numpy only; tested in tests/test_apply_models.py) ------------

def task_targets(task, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Structures a task keeps and their class index.

    Parameters
    ----------
    task : cbedflow.tasks.Task
        A classification task (``label``, ``only``, ``exclude``).
    labels : dict of str to ndarray
        Integer label arrays of the dataset, one value per structure (at least
        the task's label and every label its ``only``/``exclude`` names).

    Returns
    -------
    keep : ndarray of int
        Indices of the structures the task keeps (``Task.keeps``).
    y : ndarray of int
        Their class index (the value of the task's label array).
    """
    names = {task.label} | {lab for lab, _ in task.exclude}
    if task.only:
        names.add(task.only[0])
    missing = sorted(n for n in names if n not in labels)
    if missing:
        raise ApplyError(f"task {task.name}: the dataset has no label array "
                         f"{', '.join(missing)}")
    n = len(labels[task.label])
    keep = [i for i in range(n) if task.keeps({k: int(labels[k][i]) for k in names})]
    keep = np.asarray(keep, dtype=np.int64)
    y = np.asarray(labels[task.label], dtype=np.int64)[keep]
    if len(y) and (y.min() < 0 or y.max() >= len(task.classes)):
        raise ApplyError(f"task {task.name}: label {task.label!r} takes values "
                         f"{sorted(set(y.tolist()))} outside its {len(task.classes)} classes")
    return keep, y


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial probability (p = 1/2) of
    a split of the ``only_a + only_b`` discordant pairs at least as uneven as
    the one seen (1.0 when there are none)."""
    n = int(only_a) + int(only_b)
    if n == 0:
        return 1.0
    k = min(int(only_a), int(only_b))
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def cluster_bootstrap_diff(correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray,
                           n_boot: int = 10000, seed: int = 0, level: float = 0.95
                           ) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy(b) - accuracy(a) on paired
    examples, resampling whole groups (structures) with replacement.

    Parameters
    ----------
    correct_a, correct_b : ndarray of bool
        Per example: the prediction on dataset a / b is right.
    groups : ndarray of int
        Per example: its structure; examples of one structure are drawn together.
    n_boot : int
        Bootstrap replicates.
    seed : int
        Seed of the replicates.
    level : float
        Coverage of the interval.

    Returns
    -------
    (low, high) : tuple of float
        Interval of the difference in accuracy (fraction, not %).
    """
    _, g = np.unique(groups, return_inverse=True)
    n_g = g.max() + 1 if len(g) else 0
    if n_g == 0:
        return (float("nan"), float("nan"))
    size = np.bincount(g, minlength=n_g).astype(np.float64)
    diff = (np.bincount(g, weights=np.asarray(correct_b, float), minlength=n_g)
            - np.bincount(g, weights=np.asarray(correct_a, float), minlength=n_g))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_g, size=(n_boot, n_g))
    stats = diff[draws].sum(axis=1) / size[draws].sum(axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def relative_l2(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| (Frobenius norm over all axes; dimensionless)."""
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(a - ref) / den) if den > 0 else float("nan")


def accuracy_by(values: np.ndarray, correct: np.ndarray) -> dict[str, dict]:
    """Examples and accuracy for every distinct value of ``values`` (e.g. the
    step class k, -1 = diffuse)."""
    out = {}
    for v in np.unique(values):
        m = values == v
        out[str(int(v))] = {"n": int(m.sum()), "accuracy": float(np.mean(correct[m]))}
    return out


def accuracy_by_thirds(values: np.ndarray, correct: np.ndarray) -> dict[str, dict]:
    """Accuracy in the lower, middle and upper third of ``values`` (e.g. the
    drawn |defocus| of a perturbed test set), with each third's range."""
    edges = np.quantile(values, [0, 1 / 3, 2 / 3, 1])
    out = {}
    for i, name in enumerate(("low", "middle", "high")):
        m = (values >= edges[i]) & ((values < edges[i + 1]) if i < 2 else
                                     (values <= edges[i + 1]))
        if m.any():
            out[name] = {"range": [float(values[m].min()), float(values[m].max())],
                         "n": int(m.sum()), "accuracy": float(np.mean(correct[m]))}
    return out


def _summary(x) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "median": float(np.median(x)), "min": float(x.min()),
            "max": float(x.max())}


# -- dataset and models ---------------------------------------------------------

def _pair(value, name: str, where) -> np.ndarray:
    """A sampling attribute as (x, y) floats (one number: both)."""
    a = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    a = np.repeat(a, 2) if a.size == 1 else a
    if a.size != 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ApplyError(f"{where}: attribute {name}={value!r} is not a positive number "
                         "or pair")
    return a


class Dataset:
    """A collected dataset (zarr group ``dataset.zarr``) read as measured scans."""

    def __init__(self, path: str | Path):
        import zarr

        self.path = Path(path)
        if not self.path.is_dir():
            raise ApplyError(f"{self.path}: no such dataset directory (expected a collected "
                             "<output_dir>/dataset.zarr)")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:  # noqa: BLE001 - any zarr failure means "not a dataset"
            raise ApplyError(f"{self.path}: not a zarr group ({type(exc).__name__})") from None
        self.attrs = dict(self.group.attrs)
        for key in ("cbed", "haadf"):
            if key not in self.group:
                raise ApplyError(f"{self.path}: no array {key!r}; expected a collected "
                                 "dataset with cbed and haadf")
        for key in ("scan_step_A", "angular_sampling_mrad", "structure_names"):
            if key not in self.attrs:
                raise ApplyError(f"{self.path}: attribute {key!r} missing; expected a "
                                 "collected dataset")
        if not self.attrs.get("complete", False):
            raise ApplyError(f"{self.path}: dataset is not marked complete")
        self.cbed = self.group["cbed"]
        self.haadf = self.group["haadf"]
        self.names = list(self.attrs["structure_names"])
        self.step_A = _pair(self.attrs["scan_step_A"], "scan_step_A", self.path)
        self.ang_mrad = _pair(self.attrs["angular_sampling_mrad"], "angular_sampling_mrad",
                              self.path)
        self.labels = {k: np.asarray(self.group[k][...]) for k in self.attrs.get("labels", [])
                       if k in self.group}
        if len(self.names) != self.cbed.shape[0] or self.haadf.shape != self.cbed.shape[:3]:
            raise ApplyError(f"{self.path}: cbed {self.cbed.shape}, haadf {self.haadf.shape} "
                             f"and {len(self.names)} structure names do not match")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def sampling_A(self) -> float | None:
        return (self.attrs.get("settings") or {}).get("sampling_A")

    @property
    def seed(self) -> int | None:
        return (self.attrs.get("provenance") or {}).get("seed")

    def scan(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Structure ``i`` as a measured scan: cbed (scan_x, scan_y, kx, ky) and
        haadf (scan_x, scan_y), float64 (as ``predict`` reads them)."""
        if i not in self._cache:
            cbed = np.asarray(self.cbed[i], np.float64)
            haadf = np.asarray(self.haadf[i], np.float64)
            if not (np.all(np.isfinite(cbed)) and np.all(np.isfinite(haadf))):
                raise ApplyError(f"{self.path}: structure {self.names[i]} holds non-finite "
                                 "values")
            if cbed.min() < 0:
                raise ApplyError(f"{self.path}: structure {self.names[i]} holds negative "
                                 "intensities")
            self._cache = {i: (cbed, haadf)}  # one structure at a time: bounded memory
        return self._cache[i]

    def check_pair(self, other: "Dataset") -> None:
        """Refuse a pair that is not the same structures with the same labels
        and scan (the detector pixels, the sampling and the microscope's
        imperfections may differ: :func:`label_differences`)."""
        problems = []
        if self.names != other.names:
            problems.append("structure names differ")
        if self.cbed.shape[:3] != other.cbed.shape[:3]:
            problems.append(f"scan shapes {self.cbed.shape[:3]} != {other.cbed.shape[:3]}")
        if not np.allclose(self.step_A, other.step_A, rtol=1e-6):
            problems.append(f"scan_step_A {self.step_A.tolist()} != {other.step_A.tolist()}")
        problems += label_differences(self.labels, other.labels)
        if self.seed != other.seed:
            problems.append(f"seeds {self.seed} != {other.seed}")
        if problems:
            raise ApplyError(f"{self.path} and {other.path} are not the same structures: "
                             + "; ".join(problems))


def label_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """The labels in which two datasets of the same structures differ, one
    line each. The perturbation labels (``perturbed``, ``perturb_*``) say how
    the microscope simulated a structure, not what the structure is, so a
    structure simulated with and without an imperfection is still the same
    structure: they are not compared."""
    out = []
    for k in sorted(set(a) | set(b)):
        if k.startswith("perturb"):
            continue
        x, y = a.get(k), b.get(k)
        if x is None or y is None or x.shape != y.shape or not np.array_equal(
                x, y, equal_nan=x.dtype.kind == "f"):
            out.append(f"label {k!r} differs")
    return out


def find_models(root: str | Path, only: list[str] | None = None) -> list[Path]:
    """``<root>/<task>/<id>/model.keras`` (with a manifest beside), sorted;
    ``only``: task names (or ``task/id``) to keep."""
    root = Path(root)
    if not root.is_dir():
        raise ApplyError(f"{root}: no such models directory (expected <output_dir>/models)")
    found = sorted(p for p in root.glob("*/*/model.keras") if (p.parent / "manifest.json")
                   .exists())
    if only:
        found = [p for p in found if p.parent.parent.name in only
                 or f"{p.parent.parent.name}/{p.parent.name}" in only]
    if not found:
        raise ApplyError(f"{root}: no <task>/<id>/model.keras with a manifest.json"
                         + (f" for {', '.join(only)}" if only else ""))
    return found


def model_examples(ds: Dataset, keep: np.ndarray, manifest: dict, task
                   ) -> tuple[np.ndarray, np.ndarray, list[float | None], list[float | None]]:
    """Examples of the kept structures exactly as ``predict`` cuts a scan.

    Returns
    -------
    x : ndarray, float32 (examples, positions, kx, ky)
        Model-geometry examples (one per scan_y line, or one y-average).
    structure : ndarray of int
        The structure of every example.
    start_A : list of float or None
        Window start [Å] into each structure's scan line (None: centred).
    r : list of float or None
        Correlation with the model's HAADF reference reached by the placement.
    """
    from cbedflow.campaigns.lao_sto_cbed.measured import aligned_start_A, prepare
    from cbedflow.predict import PredictError

    geo = manifest["geometry"]
    alignment = geo.get("alignment")
    average = bool(task.options.get("average_y"))
    xs, owner, starts, rs = [], [], [], []
    for i in keep.tolist():
        cbed, haadf = ds.scan(i)
        try:
            start, r = None, None
            if alignment:
                start, r = aligned_start_A(haadf, float(ds.step_A[0]), alignment,
                                           geo["input_shape"][0], float(geo["scan_step_A"][0]))
            x = prepare(cbed, ds.step_A, ds.ang_mrad, manifest, average, start)
        except PredictError as exc:
            raise ApplyError(f"{ds.path}: structure {ds.names[i]}: {exc}") from None
        xs.append(x.astype(np.float32))
        owner += [i] * len(x)
        starts.append(None if start is None else float(start))
        rs.append(None if r is None else float(r))
    return np.concatenate(xs), np.asarray(owner), starts, rs


def run_model(model_path: Path, datasets: list[Dataset], batch_size: int) -> dict:
    """Predictions of one model on every kept structure of each dataset."""
    import tensorflow as tf

    from cbedflow.campaigns import campaign_class
    from cbedflow.learn.data import preprocess
    from cbedflow.learn.manifest import load_model_manifest
    from cbedflow.tasks import get_task

    manifest = load_model_manifest(model_path)
    task = get_task(campaign_class(manifest.get("campaign")), manifest["task"])
    spec = manifest.get("model") or {}
    if task.is_regression:
        raise ApplyError(f"{model_path}: task {task.name} is a regression; classification only")
    if spec.get("thickness_input"):
        raise ApplyError(f"{model_path}: models with a thickness input are not supported")
    model = tf.keras.models.load_model(str(model_path), compile=False)
    ts = manifest.get("task_spec") or {}
    out = {"task": task, "manifest": manifest, "runs": []}
    for ds in datasets:
        keep, y = task_targets(task, ds.labels)
        if spec.get("thickness_A") and "thickness_A" in ds.labels:
            t = ds.labels["thickness_A"][keep].astype(float)
            near = np.abs(t - spec["thickness_A"]) <= 0.1 * spec["thickness_A"]
            keep, y = keep[near], y[near]  # as predict: a per-thickness model, its thickness
        if not len(keep):
            raise ApplyError(f"{ds.path}: no structure of task {task.name}")
        x, owner, starts, rs = model_examples(ds, keep, manifest, task)
        xs = preprocess(tf.convert_to_tensor(x), ts.get("transform", "sqrt_standardize"),
                        x.ndim - 1, manifest.get("input_scaling"))
        p = model.predict(xs, batch_size=batch_size, verbose=0)
        label = dict(zip(keep.tolist(), y.tolist()))
        out["runs"].append({"xs": xs.numpy(), "owner": owner, "p": p, "pred": p.argmax(axis=1),
                            "y": np.asarray([label[i] for i in owner.tolist()]),
                            "keep": keep, "starts": starts, "r": rs})
    return out


def score(run: dict, ds: Dataset, task) -> dict:
    """Accuracy of one model on one dataset (per example = per line)."""
    correct = run["pred"] == run["y"]
    k = ds.labels["step_k"][run["owner"]] if "step_k" in ds.labels else None
    res = {"n_structures": int(len(run["keep"])), "n_examples": int(len(correct)),
           "correct": int(correct.sum()), "accuracy": float(correct.mean())}
    if task.ordinal:
        res["within_one_class"] = float(np.mean(np.abs(run["pred"] - run["y"]) <= 1))
    if k is not None:
        res["accuracy_by_step_k"] = accuracy_by(k, correct)
    perturbed = {n: v for n, v in ds.labels.items() if n.startswith("perturb_")}
    if perturbed:  # a perturbed test set: accuracy by third of each drawn imperfection
        res["accuracy_by_perturbation"] = {
            n: accuracy_by_thirds(np.abs(v[run["owner"]].astype(float)), correct)
            for n, v in sorted(perturbed.items()) if not n.endswith(("_x_mrad", "_y_mrad"))}
    starts = [s for s in run["starts"] if s is not None]
    if starts:
        rs = [r for r in run["r"] if r is not None]
        values, counts = np.unique(np.round(starts, 4), return_counts=True)
        res["window"] = {"placed": "aligned to the HAADF reference",
                         "start_A": _summary(starts),
                         "structures_by_start_A": {f"{v:g}": int(c)
                                                   for v, c in zip(values, counts)},
                         "alignment_correlation": _summary(rs)}
    else:
        res["window"] = {"placed": "centred on the scan line"}
    return res


def compare(run_a: dict, run_b: dict, n_boot: int, seed: int, names: list[str]) -> dict:
    """Paired comparison of one model on two datasets (b minus a); ``names``:
    the structure names (to list the structures that changed)."""
    ca, cb = run_a["pred"] == run_a["y"], run_b["pred"] == run_b["y"]
    only_a, only_b = int(np.sum(ca & ~cb)), int(np.sum(cb & ~ca))
    lo, hi = cluster_bootstrap_diff(ca, cb, run_a["owner"], n_boot, seed)
    dp = np.abs(run_a["p"] - run_b["p"]).max(axis=1)
    differ = np.flatnonzero(run_a["pred"] != run_b["pred"])
    res = {"agreement": float(np.mean(run_a["pred"] == run_b["pred"])),
           "n_disagree": int(len(differ)),
           "disagreements": [{"structure": names[run_a["owner"][j]],
                              "true": int(run_a["y"][j]), "dataset": int(run_a["pred"][j]),
                              "pair": int(run_b["pred"][j])} for j in differ.tolist()],
           "both_correct": int(np.sum(ca & cb)), "only_dataset_correct": only_a,
           "only_pair_correct": only_b, "both_wrong": int(np.sum(~ca & ~cb)),
           "accuracy_difference": float(cb.mean() - ca.mean()),
           "mcnemar_exact_p": mcnemar_exact_p(only_a, only_b),
           "bootstrap_ci95_structures": [lo, hi],
           "softmax_max_abs_difference": _summary(dp)}
    if run_a["xs"].shape == run_b["xs"].shape:
        # the network input after the transform and the per-pixel standardisation:
        # the difference in units of the training set's spread of every input value
        d = run_a["xs"] - run_b["xs"]
        res["network_input_rms_difference_training_std"] = float(np.sqrt(np.mean(d ** 2)))
    if run_a["starts"][0] is not None:
        sa = np.asarray(run_a["starts"], float)
        sb = np.asarray(run_b["starts"], float)
        d = sb - sa
        moved = np.flatnonzero(np.abs(d) > 1e-6)
        res["window_start"] = {"structures_differ": int(len(moved)),
                               "n_structures": int(len(d)),
                               "difference_A": sorted(set(np.round(d, 4).tolist())),
                               "moved": {names[run_a["keep"][j]]: [float(sa[j]), float(sb[j])]
                                         for j in moved.tolist()}}
    return res


def common_pixels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of two patterns (..., kx, ky) with the same pixel size that
    both hold, aligned on the zero angle (abTEM: pixel n // 2), so that an
    even and an odd grid (e.g. 52 and 51 pixels) compare angle by angle."""
    sl_a, sl_b = [], []
    for na, nb in zip(a.shape[-2:], b.shape[-2:]):
        ca, cb = na // 2, nb // 2
        lo, hi = min(ca, cb), min(na - ca, nb - cb)  # pixels below / from the centre
        sl_a.append(slice(ca - lo, ca + hi))
        sl_b.append(slice(cb - lo, cb + hi))
    return a[(Ellipsis, *sl_a)], b[(Ellipsis, *sl_b)]


def pattern_difference(a: Dataset, b: Dataset, manifest: dict | None = None) -> dict:
    """Relative L2 of every structure's data in ``a`` against ``b``.

    Compared per structure: the CBED array (scan_x, scan_y, kx, ky) on the
    detector pixels both hold (:func:`common_pixels`; the pixel size must
    match), the HAADF signal (scan_x, scan_y), its y-averaged profile, and
    that profile's shape (each profile divided by its mean, which is all the
    alignment's correlation sees; also Pearson r), the mean HAADF and total
    pattern intensity (fractions of the probe), and, given a model
    ``manifest``, the model input of the centred window (cropped and binned
    patterns, both lines; :func:`prepare`), the same window in both datasets.
    """
    from cbedflow.campaigns.lao_sto_cbed.measured import prepare

    cb, inp, hd, pr, shape, corr, ta, tb, ha_, hb_ = ([] for _ in range(10))
    same_pixels = np.allclose(a.ang_mrad, b.ang_mrad, rtol=1e-6)
    for i in range(len(a.names)):
        ca, ha = a.scan(i)
        cbb, hb = b.scan(i)
        if same_pixels:
            cb.append(relative_l2(*common_pixels(ca, cbb)))
        if manifest is not None:
            inp.append(relative_l2(prepare(ca, a.step_A, a.ang_mrad, manifest, False),
                                   prepare(cbb, b.step_A, b.ang_mrad, manifest, False)))
        hd.append(relative_l2(ha, hb))
        pa, pb = ha.mean(axis=1), hb.mean(axis=1)
        pr.append(relative_l2(pa, pb))
        shape.append(relative_l2(pa / pa.mean(), pb / pb.mean()))
        corr.append(float(np.corrcoef(pa, pb)[0, 1]))
        ta.append(ca.sum(axis=(-2, -1)).mean())
        tb.append(cbb.sum(axis=(-2, -1)).mean())
        ha_.append(ha.mean())
        hb_.append(hb.mean())
    res = {"relative_to": str(b.path), "n_structures": len(a.names),
           "cbed_common_pixels": (_summary(cb) if cb else
                                  "detector pixel sizes differ: not compared"),
           "haadf": _summary(hd), "haadf_profile": _summary(pr),
           "haadf_profile_shape": _summary(shape), "haadf_profile_pearson_r": _summary(corr),
           "mean_haadf": {"dataset": float(np.mean(ha_)), "pair": float(np.mean(hb_))},
           "mean_total_intensity_per_pattern": {"dataset": float(np.mean(ta)),
                                                "pair": float(np.mean(tb))},
           "cbed_pixels": {"dataset": list(a.cbed.shape[-2:]),
                           "pair": list(b.cbed.shape[-2:])}}
    if inp:
        res["model_input_centred_window"] = _summary(inp)
    return res


def markdown_table(doc: dict) -> str:
    """The paired result as a markdown table (one row per model)."""
    a, b = (d.get("sampling_A") for d in doc["datasets"])
    rows = [f"| model | examples (structures) | accuracy at {a} Å | accuracy at {b} Å "
            "| agreement | difference (95 % CI, structures) | McNemar p | window start differs |",
            "|---|---|---|---|---|---|---|---|"]
    for key, m in doc["models"].items():
        p = m["paired"]
        lo, hi = p["bootstrap_ci95_structures"]
        ws = p.get("window_start")
        moved = f"{ws['structures_differ']} of {ws['n_structures']}" if ws else "centred"
        rows.append(
            f"| {key} | {m['dataset']['n_examples']} ({m['dataset']['n_structures']}) "
            f"| {m['dataset']['accuracy']:.3f} | {m['pair']['accuracy']:.3f} "
            f"| {p['agreement']:.3f} | {p['accuracy_difference']:+.3f} ({lo:+.3f}, {hi:+.3f}) "
            f"| {p['mcnemar_exact_p']:.2g} "
            f"| {moved} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="collected dataset (<output_dir>/dataset.zarr)")
    ap.add_argument("--models", default="results-reproduce/models",
                    help="models directory: <task>/<id>/model.keras (default: %(default)s)")
    ap.add_argument("--tasks", nargs="*", help="task names or task/id to apply (default: all)")
    ap.add_argument("--pair", help="the same structures simulated otherwise (e.g. finer "
                                   "sampling): paired comparison against it")
    ap.add_argument("--out", help="JSON file to write (default: stdout)")
    ap.add_argument("--batch-size", type=int, default=256, help="model batch size")
    ap.add_argument("--bootstrap", type=int, default=10000, help="bootstrap replicates")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        datasets = [Dataset(args.dataset)]
        if args.pair:
            datasets.append(Dataset(args.pair))
            datasets[0].check_pair(datasets[1])
        models = find_models(args.models, args.tasks)
        doc = {"command": "python benchmarks/apply_models.py " + " ".join(
                   sys.argv[1:] if argv is None else argv),
               "placement": "as cbedflow predict: window aligned to the model's HAADF "
                            "reference (or centred), plain softmax, no MC dropout",
               "datasets": [{"path": str(d.path), "sampling_A": d.sampling_A,
                             "seed": d.seed, "n_structures": len(d.names),
                             "cbed_shape": list(d.cbed.shape),
                             "haadf_range_mrad": d.attrs.get("haadf_range_mrad"),
                             "real_space_sampling_A": d.attrs.get("real_space_sampling_A")}
                            for d in datasets],
               "models": {}}
        first_manifest = None
        for path in models:
            r = run_model(path, datasets, args.batch_size)
            task, manifest = r["task"], r["manifest"]
            key = f"{task.name}/{path.parent.name}"
            if manifest.get("seed") is not None and manifest["seed"] == datasets[0].seed:
                print(f"warning: {key} was trained on seed {manifest['seed']}, the dataset's "
                      "seed: its structures may be training structures", file=sys.stderr)
            entry = {"model": str(path), "classes": list(manifest["classes"]),
                     "training_seed": manifest.get("seed"),
                     "dataset": score(r["runs"][0], datasets[0], task)}
            if args.pair:
                entry["pair"] = score(r["runs"][1], datasets[1], task)
                entry["paired"] = compare(r["runs"][0], r["runs"][1], args.bootstrap, args.seed,
                                           datasets[0].names)
                first_manifest = first_manifest or manifest
            doc["models"][key] = entry
            print(f"{key}: accuracy {entry['dataset']['accuracy']:.3f}"
                  + (f" / pair {entry['pair']['accuracy']:.3f}, agreement "
                     f"{entry['paired']['agreement']:.3f}, McNemar p "
                     f"{entry['paired']['mcnemar_exact_p']:.3g}" if args.pair else "")
                  + f" ({entry['dataset']['n_examples']} examples)", file=sys.stderr)
        if args.pair:
            doc["data_difference"] = pattern_difference(datasets[0], datasets[1],
                                                        first_manifest)
        doc["wall_s"] = round(time.time() - t0, 1)
    except ApplyError as exc:
        print(f"apply_models: error: {exc}", file=sys.stderr)
        return 2
    if args.pair:
        print(markdown_table(doc), file=sys.stderr)
    text = json.dumps(doc, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
