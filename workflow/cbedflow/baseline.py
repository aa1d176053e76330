"""The simple baseline every network is judged against (scikit-learn).

The campaign turns each example into a few physically motivated features
(``Campaign.baseline_features``: e.g. ring intensities along a line scan);
classification fits a logistic regression, regression a ridge regression
(one per target set). Features are standardised; the regularisation is
chosen on the validation split only; the test split is used once, for the
reported metrics, on the same examples as the model. For a task with a
readout (``Task.readout``) the baseline predicts the readout's quantities
(e.g. layer parameters) straight from the features. For a task whose
network has a second, regression head (``Task.aux``) a ridge regression on
the same features predicts that head's targets too (``aux_head``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .examples import check_examples
from .metrics import classification_metrics, regression_metrics, score_regression
from .storage import write_json
from .tasks import THICKNESS_SCALE_A, ModelSpec, Task, select_examples

#: Inverse regularisation strengths (logistic) tried on the validation split.
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Ridge penalties tried on the validation split.
ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _load(camp, config: dict, path: str | Path, spec: ModelSpec, nominal: list[float],
          task: Task):
    g = check_examples(path, None if task.is_regression else task.n_classes)
    idx = select_examples(g["thickness_A"][...], spec, nominal)
    if len(idx) == 0:
        raise ValueError(f"{path}: no examples for model {spec.id!r}")
    x = g["x"].get_orthogonal_selection((np.asarray(idx, dtype=np.int64),))
    f = camp.baseline_features(x, config)
    if spec.thickness_input:
        f = np.column_stack([f, g["thickness_A"][...][idx] / THICKNESS_SCALE_A])
    by = {b: g[b][...][idx] for b in task.breakdowns}
    y = g["y"][...][idx]
    if task.readout:  # the baseline predicts the readout's quantities directly
        truth = camp.readout_truth(task, g.attrs["source"], g["structure_index"][...][idx])
        by = {"readout": truth}
        y = truth["truth"]
    return f, y, g["thickness_A"][...][idx], by


def select_and_fit(make, grid, ftr, ytr, fva, yva):
    """The model ``make(v)`` with the regularisation ``v`` of ``grid`` that
    scores best on the validation split (accuracy or R²; ties: the value
    nearest 1), refitted on the training split: (model, v, {v: score})."""
    scores = {}
    for v in grid:
        scores[v] = float(make(v).fit(ftr, ytr).score(fva, yva))
    best = max(grid, key=lambda v: (scores[v], -abs(np.log10(v))))
    return make(best).fit(ftr, ytr), best, scores


def _names_units(task: Task, n: int) -> tuple[list[str], list[str]]:
    """Names and units of ``n`` regression outputs (``target_<i>`` when the
    task names another number of them)."""
    names = list(task.target_names) if len(task.target_names) == n else [
        f"target_{i}" for i in range(n)]
    return names, list(task.units) or [""] * len(names)


def _score_direct(camp, config: dict, task: Task, spec: ModelSpec, nominal: list[float],
                  test: str, out_json: str | Path) -> dict:
    """Score a baseline that predicts without a fit (``Campaign.baseline_direct``)
    on the test split. An example it could not measure (NaN) is scored as
    a prediction of 0 and counted in ``n_failed``."""
    pred, y, _, by = _load(camp, config, test, spec, nominal, task)
    shape = y.shape
    pred = np.asarray(pred, np.float64).reshape(shape)
    failed = ~np.isfinite(pred).all(axis=tuple(range(1, pred.ndim)))
    pred = np.where(np.isfinite(pred), pred, 0.0)
    names, units = _names_units(task, shape[-1])
    out = score_regression(y, pred, names, units, {b: by[b] for b in task.breakdowns},
                           task.vector)
    out.update(task=task.name, model=spec.to_dict(), method=camp.baseline_name,
               kind=task.kind, n_train=0, n_test=int(len(y)), n_failed=int(failed.sum()),
               fitted="nothing (the method predicts directly)")
    write_json(out_json, out)
    return out


def _aux_ridge(task: Task, spec: ModelSpec, nominal: list[float], paths, feats,
               by: dict) -> dict:
    """Ridge regression of the second head's targets (``y_aux`` of the
    example groups ``paths`` = train, validation, test) on the features
    ``feats`` of the same examples, the penalty chosen on validation: the
    regression head's baseline on its test examples."""
    import zarr
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ys = []
    for path in paths:
        g = zarr.open_group(str(path), mode="r")
        ys.append(g["y_aux"][...][select_examples(g["thickness_A"][...], spec, nominal)])
    reg, best, scores = select_and_fit(
        lambda a: make_pipeline(StandardScaler(), Ridge(alpha=a)), ALPHA_GRID,
        feats[0], ys[0], feats[1], ys[1])
    pred = reg.predict(feats[2])
    names = list(task.aux)
    units = list(task.aux_units) or [""] * len(names)
    out = score_regression(ys[2], pred, names, units, by)
    out.update(method="ridge regression on the same features", alpha=best,
               validation_score_by_alpha={str(k): v for k, v in scores.items()})
    return out


def fit_and_test(camp, config: dict, task: Task, spec: ModelSpec, nominal: list[float],
                 train: str, validation: str, test: str, out_json: str | Path) -> dict:
    """Fit on ``train``, pick the regularisation on ``validation``, report on
    ``test``; ``config``: seed and the campaign's sections."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seed = config["seed"]
    if camp.baseline_direct and task.is_regression:
        return _score_direct(camp, config, task, spec, nominal, test, out_json)
    ftr, ytr, _, _ = _load(camp, config, train, spec, nominal, task)
    fva, yva, _, _ = _load(camp, config, validation, spec, nominal, task)
    fte, yte, tte, by = _load(camp, config, test, spec, nominal, task)
    if task.is_regression:
        from sklearn.linear_model import Ridge

        shape = yte.shape
        flat = [y.reshape(len(y), -1) for y in (ytr, yva)]
        if task.readout:  # a quantity a sample lacks (NaN): fitted as its training mean
            have = np.isfinite(flat[0]).any(axis=0)
            mu = np.zeros(flat[0].shape[1])
            mu[have] = np.nanmean(flat[0][:, have], axis=0)  # none: 0 (a thinner model's)
            flat = [np.where(np.isfinite(y), y, mu) for y in flat]
        grid, name = ALPHA_GRID, "alpha"

        def make(a):
            return make_pipeline(StandardScaler(), Ridge(alpha=a))
    else:
        from sklearn.linear_model import LogisticRegression

        flat = [ytr.astype(int), yva.astype(int)]
        grid, name = C_GRID, "C"

        def make(c):
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000,
                                                                     random_state=seed))
    clf, best, scores = select_and_fit(make, grid, ftr, flat[0], fva, flat[1])
    pred = clf.predict(fte)
    if task.readout:
        from .metrics import group_r2

        r = by["readout"]
        out = regression_metrics(yte, pred.reshape(shape), r["names"], r["units"])
        out["groups"] = group_r2(out["targets"], r["groups"])
        out["readout"] = task.readout
        # the readout scores the network on the first test samples only (an
        # expensive fit): the baseline's predictions of those, to score it on
        # the same samples there
        k = min(len(pred), int(config.get("evaluate", {}).get("fit_films", len(pred))))
        out["first_predictions"] = pred.reshape(len(pred), -1)[:k].tolist()
    elif task.is_regression:
        names, units = _names_units(task, shape[-1])
        out = score_regression(yte, pred.reshape(shape), names, units,
                               {b: by[b] for b in task.breakdowns}, task.vector)
    else:
        out = classification_metrics(yte.astype(int), pred, task.classes, tte, by,
                                     ordinal=task.ordinal)
        if task.aux:
            out["aux_head"] = _aux_ridge(task, spec, nominal, (train, validation, test),
                                         (ftr, fva, fte), {**by, task.labels[0]: yte})
    out.update(task=task.name, model=spec.to_dict(), method=camp.baseline_name,
               kind=task.kind, n_train=int(len(ytr)), n_test=int(len(yte)))
    out[name] = best
    out[f"validation_score_by_{name}"] = {str(k): v for k, v in scores.items()}
    write_json(out_json, out)
    return out
