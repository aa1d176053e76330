"""Learning tasks: which label a network predicts and how examples are formed.

A task is data, not code, so a new campaign adds an entry here (its label
array must exist in the collected dataset).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One classification task.

    Parameters
    ----------
    name : str
        Task id used in paths and configs.
    label : str
        Dataset label array holding the class index.
    classes : tuple of str
        Class names, index = label value.
    average_y : bool
        Average the CBED patterns over the line scans in y (one example per
        sample) instead of one example per line scan.
    only : tuple (label, value) or None
        Keep only samples whose label array equals value.
    ordinal : bool
        Classes are ordered (a position): report the fraction of predictions
        within +-1 class as well.
    """

    name: str
    label: str
    classes: tuple[str, ...]
    average_y: bool = False
    only: tuple[str, int] | None = None
    ordinal: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.classes)


TASKS: dict[str, Task] = {
    "rough_vs_diffuse": Task("rough_vs_diffuse", "rough", ("diffuse", "step")),
    "step_position": Task("step_position", "step_k", tuple(f"k={k}" for k in range(11)),
                          average_y=True, only=("rough", 1), ordinal=True),
}


def structure_label(task: Task, spec) -> int | None:
    """The label ``task`` gives every sample of the structure ``spec``
    (a :class:`~cbedflow.structures.StructureSpec`), None if the task skips it."""
    values = {"rough": int(spec.kind == "step"), "step_k": int(spec.step_k)}
    if task.only and values[task.only[0]] != task.only[1]:
        return None
    return values[task.label]


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]


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
