"""Ring-feature logistic-regression baseline (scikit-learn).

The CNN's accuracy means more beside a simple model on physically motivated
features: the intensity in ``rings`` annuli of every CBED pattern along the
line scan (the dark-field signal at several angles, probe position by probe
position). Features are sqrt-transformed and standardised; the inverse
regularisation ``C`` is chosen on the validation split only; the test split
is used once, for the reported metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .examples import check_examples
from .metrics import classification_metrics
from .storage import write_json
from .tasks import THICKNESS_SCALE_A, ModelSpec, Task, select_examples

#: Inverse regularisation strengths tried on the validation split.
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def ring_features(x: np.ndarray, rings: int) -> np.ndarray:
    """(examples, positions, kx, ky) -> (examples, positions * rings): summed
    intensity in ``rings`` equal-width annuli about the pattern centre, out
    to the pattern edge."""
    n = x.shape[-1]
    c = (n - 1) / 2
    ky, kx = np.meshgrid(np.arange(n) - c, np.arange(x.shape[-2]) - (x.shape[-2] - 1) / 2)
    r = np.hypot(kx, ky)
    which = np.minimum((r / (n / 2) * rings).astype(int), rings)  # rings = outside
    onehot = np.stack([(which == i) for i in range(rings)], axis=-1).astype(np.float64)
    f = np.einsum("epxy,xyr->epr", x.astype(np.float64), onehot)
    return np.sqrt(np.clip(f, 0, None)).reshape(len(x), -1)


def _load(path: str | Path, spec: ModelSpec, nominal: list[float], rings: int, n_classes: int):
    g = check_examples(path, n_classes)
    idx = select_examples(g["thickness_A"][...], spec, nominal)
    if len(idx) == 0:
        raise ValueError(f"{path}: no examples for model {spec.id!r}")
    x = g["x"].get_orthogonal_selection((np.asarray(idx, dtype=np.int64),))
    f = ring_features(x, rings)
    if spec.thickness_input:
        f = np.column_stack([f, g["thickness_A"][...][idx] / THICKNESS_SCALE_A])
    return f, g["y"][...][idx].astype(int), g["thickness_A"][...][idx], g["step_k"][...][idx]


def fit_and_test(task: Task, spec: ModelSpec, nominal: list[float], train: str, validation: str,
                 test: str, rings: int, seed: int, out_json: str | Path) -> dict:
    """Fit on ``train``, pick C on ``validation``, report on ``test``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ftr, ytr, _, _ = _load(train, spec, nominal, rings, task.n_classes)
    fva, yva, _, _ = _load(validation, spec, nominal, rings, task.n_classes)
    fte, yte, tte, kte = _load(test, spec, nominal, rings, task.n_classes)
    scores = {}
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000,
                                                                 random_state=seed))
        clf.fit(ftr, ytr)
        scores[c] = float(clf.score(fva, yva))
    best_c = max(C_GRID, key=lambda c: (scores[c], -abs(np.log10(c))))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=best_c, max_iter=5000,
                                                             random_state=seed))
    clf.fit(ftr, ytr)
    pred = clf.predict(fte)
    out = classification_metrics(yte, pred, task.classes, tte, kte, ordinal=task.ordinal)
    out.update(task=task.name, model=spec.to_dict(), method="ring-feature logistic regression",
               rings=rings, C=best_c, validation_accuracy_by_C={str(k): v for k, v in
                                                              scores.items()},
               n_train=int(len(ytr)), n_test=int(len(yte)))
    write_json(out_json, out)
    return out
