"""Learning tasks and model variants (generic: campaigns declare their tasks).

A task is data, not code: a campaign lists its :class:`Task` objects in
``Campaign.tasks`` (their label arrays must exist in the collected dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    """One learning task of a campaign.

    Parameters
    ----------
    name : str
        Task id used in paths and configs.
    label : str or tuple of str
        Dataset label array(s) the network predicts: one class-index array
        (classification), or one or more continuous arrays (regression; one
        array whose samples are curves is a curve-to-curve task).
    kind : str
        ``classification`` or ``regression``.
    classes : tuple of str
        Class names, index = label value (classification).
    targets : tuple of str
        Names of the regression outputs (the last axis of y); default: the
        label names.
    units : tuple of str
        Unit of every regression target (e.g. 'Å', 'pm', '').
    network : str
        Network of :mod:`cbedflow.learn.networks` (``cnn3d``, ``cnn2d``, ``unet1d``).
    transform : str
        Input transform of :mod:`cbedflow.learn.data` (``sqrt_standardize``,
        ``standardize``).
    only : tuple (label, value) or None
        Keep only samples whose label array equals value.
    exclude : tuple of (label, values)
        Leave out samples whose label array takes one of ``values`` (e.g.
        the abrupt interfaces of a physical protocol).
    ordinal : bool
        Classes are ordered (a position): report the fraction of predictions
        within +-1 class as well.
    breakdown : str or None
        Per-example label by whose values the metrics are broken down
        (``accuracy_by_<breakdown>``).
    breakdown_title : str
        Axis title of that breakdown in the plots.
    input_scaling : bool
        Standardise the (transformed) input per point over the training
        examples (mean and standard deviation of every input value, kept in
        the model manifest), after ``transform``: for inputs whose every
        point has its own scale (an intensity curve spanning decades).
    loss : str
        ``auto`` (cross-entropy / mean squared error), ``mse`` or ``mae``
        (regression, in standardised target units).
    readout : str or None
        Name of a campaign readout (``Campaign.readout``): quantities derived
        from the network's output that have their own truth (e.g. structure
        parameters fitted to a predicted curve). Evaluated on the test split
        by the ``readout`` rule; the baseline then predicts these quantities
        directly.
    train_only : tuple (label, value) or None
        Train (and validate) only on samples whose label array equals value;
        the test split keeps every sample (generalisation to the others, e.g.
        a composition never trained on, read from a breakdown).
    also_by : tuple of str
        Further per-example labels the metrics are broken down by, besides
        ``breakdown`` (regression: ``mae_by_<label>``).
    vector : bool
        The regression targets are the components of one vector (e.g. a
        displacement x and y): the metrics add the vector RMSE and the
        fraction of examples whose predicted direction is right
        (:func:`cbedflow.metrics.vector_metrics`), overall and per breakdown.
    aux : tuple of str
        Label arrays a second, regression head of the same network predicts
        (a classification task only): one network with a classification and
        a regression head (a structure's class and its continuous parameters
        read from the same example). The head's loss (mean squared error of the standardised
        targets) is weighted by ``aux_weight`` and added to the main loss;
        the evaluation reports the head's MAE, RMSE and R² per target
        (``aux_head``) beside the classification metrics.
    aux_units : tuple of str
        Unit of every ``aux`` target.
    aux_weight : float
        Weight of the second head's loss in the training loss (> 0).
    options : dict
        Campaign-specific options of how examples are cut.
    """

    name: str
    label: str | tuple[str, ...]
    kind: str = "classification"
    classes: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    network: str = "cnn3d"
    transform: str = "sqrt_standardize"
    only: tuple[str, int] | None = None
    exclude: tuple[tuple[str, tuple[int, ...]], ...] = ()
    ordinal: bool = False
    breakdown: str | None = None
    breakdown_title: str = ""
    input_scaling: bool = False
    loss: str = "auto"
    readout: str | None = None
    train_only: tuple[str, int] | None = None
    also_by: tuple[str, ...] = ()
    vector: bool = False
    aux: tuple[str, ...] = ()
    aux_units: tuple[str, ...] = ()
    aux_weight: float = 1.0
    options: dict = field(default_factory=dict, hash=False, compare=False)

    def keeps(self, values: dict) -> bool:
        """True if a sample with label ``values`` (name -> value) belongs to
        the task (``only`` and ``exclude``)."""
        if self.only and values[self.only[0]] != self.only[1]:
            return False
        return not any(values[label] in vals for label, vals in self.exclude)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.loss not in LOSSES:
            raise ValueError(f"task {self.name}: loss {self.loss!r} is not one of {LOSSES}")
        if self.aux and self.is_regression:
            raise ValueError(f"task {self.name}: aux (a second, regression head) needs a "
                             "classification task; this one is a regression")
        if self.aux and not self.aux_weight > 0:
            raise ValueError(f"task {self.name}: aux_weight={self.aux_weight} is invalid; "
                             "valid: > 0")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> tuple[str, ...]:
        """The dataset label array(s) of y."""
        return (self.label,) if isinstance(self.label, str) else tuple(self.label)

    @property
    def target_names(self) -> tuple[str, ...]:
        """Names of the regression outputs."""
        return self.targets or self.labels

    @property
    def breakdowns(self) -> tuple[str, ...]:
        """Every per-example label the metrics are broken down by."""
        return ((self.breakdown,) if self.breakdown else ()) + tuple(self.also_by)

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    def to_dict(self) -> dict:
        """What a model manifest and the training records keep of the task
        (the second head's keys only for a task that has one)."""
        out = {"name": self.name, "kind": self.kind, "classes": list(self.classes),
                "targets": list(self.target_names) if self.is_regression else [],
                "units": list(self.units), "network": self.network,
                "transform": self.transform, "ordinal": self.ordinal,
                "breakdown": self.breakdown, "input_scaling": self.input_scaling,
                "exclude": {label: list(values) for label, values in self.exclude},
                "loss": self.loss, "readout": self.readout, "vector": self.vector,
                "train_only": list(self.train_only) if self.train_only else None,
                "also_by": list(self.also_by)}
        if self.aux:
            out.update(aux=list(self.aux), aux_units=list(self.aux_units),
                       aux_weight=float(self.aux_weight))
        return out


#: Task kinds.
KINDS = ("classification", "regression")
#: Training losses (``auto``: cross-entropy for classes, mse for regression).
LOSSES = ("auto", "mse", "mae")


def get_task(campaign, name: str) -> Task:
    """Task ``name`` of ``campaign`` (a campaign class or instance)."""
    if name not in campaign.tasks:
        raise ValueError(f"task {name!r} is not one of {', '.join(campaign.tasks)} "
                         f"(campaign {campaign.name})")
    return campaign.tasks[name]


#: Model variants of a task (config ``train.variants``): one model for all
#: thicknesses, one model per thickness (the paper's way), or one model for
#: all thicknesses that also takes the thickness as an input.
VARIANTS = ("all", "per_thickness", "thickness_input")

#: Thickness input scale [Å]: the network sees thickness / 100 Å.
THICKNESS_SCALE_A = 100.0


@dataclass(frozen=True)
class ModelSpec:
    """One trained model of a task.

    Parameters
    ----------
    id : str
        Path component: ``all``, ``all-thickness-input`` or ``t<label>``.
    thickness_A : float or None
        Nominal thickness [Å] the model is trained and tested on (None: all).
    thickness_input : bool
        The network takes thickness / :data:`THICKNESS_SCALE_A` as a second input.
    """

    id: str
    thickness_A: float | None = None
    thickness_input: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "thickness_A": self.thickness_A,
                "thickness_input": self.thickness_input}


def model_specs(variants: list[str], thicknesses: dict[str, float]) -> list[ModelSpec]:
    """The models of one task for ``variants`` and the campaign's
    ``thicknesses`` (label -> nominal thickness [Å])."""
    out: list[ModelSpec] = []
    for v in variants:
        if v == "all":
            out.append(ModelSpec("all"))
        elif v == "thickness_input":
            out.append(ModelSpec("all-thickness-input", None, True))
        elif v == "per_thickness":
            out += [ModelSpec(f"t{label}", t) for label, t in thicknesses.items()]
        else:
            raise ValueError(f"train.variants: {v!r} is not one of {', '.join(VARIANTS)}")
    return out


def nearest_thickness(thickness_A, nominal: list[float]):
    """Index into ``nominal`` [Å] of the nearest nominal thickness of every
    example (examples carry the realised thickness, whole cells)."""
    import numpy as np

    t = np.asarray(thickness_A, float)[:, None]
    return np.abs(t - np.asarray(nominal, float)[None, :]).argmin(axis=1)


def select_examples(thickness_A, spec: ModelSpec, nominal: list[float]):
    """Indices of the examples that ``spec`` trains or tests on."""
    import numpy as np

    n = len(thickness_A)
    if spec.thickness_A is None:
        return np.arange(n)
    near = nearest_thickness(thickness_A, nominal)
    want = int(np.argmin(np.abs(np.asarray(nominal, float) - spec.thickness_A)))
    return np.flatnonzero(near == want)
