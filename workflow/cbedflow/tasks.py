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
    """

    name: str
    label: str
    classes: tuple[str, ...]
    average_y: bool = False
    only: tuple[str, int] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)


TASKS: dict[str, Task] = {
    "rough_vs_diffuse": Task("rough_vs_diffuse", "rough", ("diffuse", "step")),
    "step_position": Task("step_position", "step_k", tuple(f"k={k}" for k in range(11)),
                          average_y=True, only=("rough", 1)),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]
