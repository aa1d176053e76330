"""Campaigns: what one use of the method knows that the generic stages do not.

The method is one pipeline (samples -> forward model -> collect -> examples
-> augment -> train -> evaluate -> baseline -> summary/report -> predict).
A *campaign* is one sub-package that hands the generic stages a
:class:`Campaign` subclass, found by the config key ``campaign`` in
:data:`REGISTRY` (as abTEM picks a potential parametrization by name). Its
contract, every member documented below:

================  ============================================================
piece             members
================  ============================================================
samples, units    :meth:`Campaign.units`, :meth:`~Campaign.unit_key`,
                  :meth:`~Campaign.simulate_unit`, :attr:`~Campaign.unit_sections`,
                  :attr:`~Campaign.thicknesses`, :meth:`~Campaign.sample_classes`
forward model     called by ``simulate_unit`` (e.g. :mod:`cbedflow.forward.cbed4d`)
                  :attr:`~Campaign.aux_signals` (further signals per sample)
labels            :attr:`Campaign.labels` (declared once: name, dtype, unit),
                  :meth:`~Campaign.sample_labels`
tasks             :attr:`Campaign.tasks` (:class:`cbedflow.tasks.Task`)
examples          :meth:`~Campaign.cut_examples`, :attr:`~Campaign.example_meta`,
                  :meth:`~Campaign.example_attrs`, :attr:`~Campaign.geometry_keys`
augmentations     :meth:`~Campaign.augment_example`, :attr:`~Campaign.augment_meta`
baseline          :meth:`~Campaign.baseline_features`, :attr:`~Campaign.baseline_name`
readout           :meth:`~Campaign.readout`, :meth:`~Campaign.readout_truth`,
                  :meth:`~Campaign.plot_readout` (tasks with ``Task.readout``)
measured data     :meth:`~Campaign.read_measured` (``predict``)
plots             :meth:`~Campaign.plot_dataset`, :meth:`~Campaign.plot_measured`
config            :meth:`~Campaign.schema_fragment`, :meth:`~Campaign.check_config`
showcase          :attr:`~Campaign.showcase_section`, :meth:`~Campaign.has_showcase`,
                  :meth:`~Campaign.showcase_image`, :meth:`~Campaign.showcase_maps`
                  (a simulated image with known truth, read by the trained models
                  as measured data; its maps and score go into the report)
================  ============================================================

A campaign outside this package (a user's, or the toy campaign of the tests)
is named ``module:Class``; the module must be importable by every job
(``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

#: The campaign of a config without ``campaign``.
DEFAULT = "lao_sto_cbed"

#: Campaign name -> ``module:Class`` (imported on first use).
REGISTRY: dict[str, str] = {
    "lao_sto_cbed": "cbedflow.campaigns.lao_sto_cbed:LaoStoCbed",
    "lao_sto_ctr": "cbedflow.campaigns.lao_sto_ctr:LaoStoCtr",
    "abf_tilts": "cbedflow.campaigns.abf_tilts:AbfTilts",
    "bfo_polarization": "cbedflow.campaigns.bfo_polarization:BfoPolarization",
}


@dataclass(frozen=True)
class Label:
    """One per-sample label of the collected dataset.

    Parameters
    ----------
    name : str
        Array name in the dataset.
    dtype : str
        numpy dtype of the array.
    unit : str
        Physical unit ('' for a class index or a dimensionless number).
    description : str
        One sentence.
    classes : tuple of str
        Class names (index = value) of a class label; empty otherwise.
    dims : tuple of str
        Axis names after the sample axis of a label that is an array per
        sample (a curve); ``<name>_dim<i>`` where not given.
    """

    name: str
    dtype: str
    unit: str = ""
    description: str = ""
    classes: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()


class CampaignError(ValueError):
    """An unknown or broken campaign (one line)."""


class Campaign:
    """Base class of a campaign; a subclass fills in the physics.

    Parameters
    ----------
    config : dict
        The validated config (or the sections a stage was given).
    """

    #: Registry name.
    name: str = ""
    #: One line: what the campaign learns from what.
    title: str = ""
    #: Dataset array of the forward model's output (per sample).
    signal: str = "signal"
    #: Names of the signal's axes after the sample axis.
    signal_dims: tuple[str, ...] = ()
    #: Unit of the signal's values (the dataset array's ``units`` attribute).
    signal_unit: str = ""
    #: Further unit arrays recorded beside the signal and averaged over
    #: batches like it (e.g. a virtual detector's image): name -> axis names
    #: after the sample axis.
    aux_signals: dict[str, tuple[str, ...]] = {}
    #: Per-sample labels, declared once (``structure_index`` is added by collect).
    labels: tuple[Label, ...] = ()
    #: Learning tasks by name.
    tasks: dict = {}
    #: Config sections that shape every simulation unit (part of its key).
    unit_sections: tuple[str, ...] = ("seed",)
    #: Further config sections that say which samples and units exist.
    sample_sections: tuple[str, ...] = ()
    #: Config sections of how examples are cut (besides seed and split).
    example_sections: tuple[str, ...] = ()
    #: Further config sections the augment stage needs (besides seed and augment).
    augment_sections: tuple[str, ...] = ()
    #: Further config sections the baseline stage needs (besides seed and evaluate).
    baseline_sections: tuple[str, ...] = ()
    #: Per-example metadata arrays beyond y / structure_index / thickness_A:
    #: name -> dtype; taken from :meth:`cut_examples`' dicts, else from the
    #: dataset label of the same name (left out where neither has it: a
    #: label only some configs produce).
    example_meta: dict[str, str] = {}
    #: Per-example metadata of an augmented copy: name -> (dtype, value of the
    #: unchanged original).
    augment_meta: dict[str, tuple[str, float]] = {}
    #: Example-group attributes a trained model must match (its geometry).
    geometry_keys: tuple[str, ...] = ()
    #: Packages whose versions the dataset records.
    packages: tuple[str, ...] = ("numpy", "zarr", "cbedflow")
    #: Held-out accuracy a task should reach (a line in the accuracy plots).
    target_accuracy: dict[str, float] = {}
    #: Name of the baseline method (reports).
    baseline_name: str = "logistic/ridge regression on the flattened signal"
    #: :meth:`baseline_features` returns the baseline's prediction itself, in
    #: the targets' units (a method without a fit, e.g. Gaussian column
    #: fitting): the test split is scored as it is, nothing is fitted.
    baseline_direct: bool = False
    #: Config section of the showcase ('' = the campaign has none): a simulated
    #: image with known ground truth that the trained models read as measured
    #: data (:meth:`showcase_image`, :meth:`showcase_maps`); its key
    #: ``enabled`` turns it on.
    showcase_section: str = ""
    #: Config sections the showcase image is computed from (rerun when they change).
    showcase_sections: tuple[str, ...] = ()

    def __init__(self, config: dict):
        self.config = config

    # -- names and paths (generic) -------------------------------------------
    @property
    def output_dir(self) -> str:
        return self.config["output_dir"]

    @property
    def dataset_path(self) -> str:
        return f"{self.output_dir}/dataset.zarr"

    def unit_path(self, name: str, part: str, batch: int) -> str:
        """zarr group of one simulation unit."""
        return f"{self.output_dir}/simulations/{name}/{part}/b{batch}.zarr"

    @property
    def config_sections(self) -> tuple[str, ...]:
        """Every config section of the campaign (stages that need them all)."""
        return tuple(dict.fromkeys(self.unit_sections + self.sample_sections
                                   + self.example_sections))

    def unit_paths(self) -> list[str]:
        return [self.unit_path(*u) for u in self.units()]

    # -- samples and units ----------------------------------------------------
    def units(self) -> list[tuple[str, str, int]]:
        """Every (sample, part, batch) work unit, in campaign order; a unit is
        written to :meth:`unit_path` by :meth:`simulate_unit`."""
        raise NotImplementedError

    def unit_key(self, name: str, part: str) -> str:
        """Hash of everything unit (``name``, ``part``) is computed from; a
        complete unit with the same key is not recomputed."""
        raise NotImplementedError

    def simulate_unit(self, name: str, part: str, batch: int, out: str,
                      progress: Callable[[str], None] = print) -> None:
        """Compute one unit and write it atomically to ``out``: a zarr group
        with the array :attr:`signal` and the attributes ``labels`` (one
        sample) or ``plane_labels`` (several, the signal's leading axis), each
        a dict holding ``structure`` (the sample id) and ``thickness_A``, an
        optional ``num_configs`` (weight when batches are averaged) and
        ``complete: true``. A label too large for attributes (a curve) may
        be an array of the label's name in the group instead, with the
        signal's leading sample axis."""
        raise NotImplementedError

    @property
    def threads_per_rank(self) -> int:
        """Threads one rank of a packed simulation job uses (e.g. FFT threads)."""
        return 1

    @property
    def thicknesses(self) -> dict[str, float]:
        """Nominal sample thicknesses (label -> [Å]) for per-thickness model
        variants; one entry if the campaign has a single thickness."""
        return {}

    def sample_classes(self, task) -> dict[str, int]:
        """Sample id -> class of ``task`` (a classification task), known
        before any simulation (the split check); skipped samples left out."""
        raise NotImplementedError

    # -- collect --------------------------------------------------------------
    def check_signal(self, where: str, data: np.ndarray) -> None:
        """Refuse a unit's signal that cannot be physical (raise
        :class:`~cbedflow.storage.CorruptOutputError` naming ``where``)."""
        from ..storage import CorruptOutputError

        if not np.all(np.isfinite(data)):
            n = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise CorruptOutputError(f"{where}: {self.signal} holds {n} non-finite values")

    def sample_labels(self, unit_labels: dict) -> dict:
        """Dataset label values of one sample from a unit's label dict."""
        return {lab.name: unit_labels[lab.name] for lab in self.labels}

    def dataset_attrs(self, unit_attrs: dict) -> dict:
        """Attributes of the collected dataset taken from the first unit
        (sampling, settings, versions of the forward model)."""
        return {}

    # -- examples -------------------------------------------------------------
    def example_reference(self, dataset, train_samples: np.ndarray, config: dict, task
                          ) -> dict:
        """What every split's examples are cut against, computed from the
        training samples only (e.g. a reference profile that windows are
        aligned to): a dict of JSON values, stored in every example group's
        attributes and passed to :meth:`cut_examples` as ``reference``.
        ``dataset``: the collected zarr group."""
        return {}

    def cut_examples(self, signal: np.ndarray, task, config: dict, sample: int = 0,
                     split: str = "test", aux: dict | None = None,
                     reference: dict | None = None, target=None
                     ) -> list[tuple[np.ndarray, dict]]:
        """Training examples from one sample's signal: (x, metadata) pairs.
        ``sample``: the sample's index in the dataset (a key for seeded
        per-example draws, e.g. a random window); ``split``: where the
        examples go (e.g. more windows per sample for training); ``aux``:
        the sample's :attr:`aux_signals` (name -> array) that the dataset
        holds; ``reference``: :meth:`example_reference`'s dict; ``target``:
        the sample's task target (its y). An example whose metadata holds
        ``y`` has that target instead of the sample's (e.g. the value of a
        field label at the example's place). Every sample of a split must
        give as many examples."""
        return [(signal, {})]

    def example_attrs(self, dataset_attrs: dict, config: dict, task) -> dict:
        """Attributes of an example group: ``dims`` and the geometry keys."""
        return {"dims": ["example", *self.signal_dims]}

    def augment_example(self, x: np.ndarray, rng: np.random.Generator, config: dict
                        ) -> tuple[np.ndarray, dict]:
        """One augmented copy of example ``x`` (float64) and its metadata
        (:attr:`augment_meta`); ``rng`` is seeded per (example, copy)."""
        return x, {}

    def augment_attrs(self, config: dict) -> dict:
        """Attributes an augmented group records (the ranges drawn from)."""
        return {}

    # -- baseline -------------------------------------------------------------
    def baseline_features(self, x: np.ndarray, config: dict) -> np.ndarray:
        """(examples, features) of the simple baseline model."""
        return np.asarray(x, np.float64).reshape(len(x), -1)

    # -- readout ----------------------------------------------------------------
    def readout_truth(self, task, dataset: str | Path, structure_index: np.ndarray) -> dict:
        """True values of the readout of ``task`` for the samples
        ``structure_index``: ``names``, ``units``, ``groups`` (one group name
        per quantity) and ``truth`` (samples, quantities; NaN where a sample
        lacks one). The baseline of a readout task predicts these."""
        raise CampaignError(f"campaign {self.name}: task {task.name} has no readout")

    def readout(self, task, predicted: np.ndarray, structure_index: np.ndarray,
                dataset: str | Path, config: dict,
                progress: Callable[[str], None] = print,
                measured: np.ndarray | None = None) -> dict:
        """The readout of the network's test predictions (unscaled outputs,
        one per example; ``structure_index`` of each; ``measured``: the
        network's raw inputs): :meth:`readout_truth`'s dict plus
        ``predicted`` (samples, quantities) and optionally ``alternatives``
        ({name: predicted} of other ways to the same quantities, e.g. a fit
        without a network, scored beside it). May use the first examples
        only (an expensive fit)."""
        raise CampaignError(f"campaign {self.name}: task {task.name} has no readout")

    def plot_readout(self, result: dict, dataset: str | Path, out_dir: str | Path) -> list:
        """Figures of a readout; returns their paths."""
        return []

    def readout_measured(self, task, prediction: dict, data_path: str | Path, config: dict,
                         progress: Callable[[str], None] = print) -> dict:
        """The readout of a prediction on measured data (``prediction``: the
        ``predictions.json`` of predict; ``data_path``: the measured file):
        ``names``, ``units``, ``groups`` and ``methods`` ({method: {"values":
        [...], "std": [...]}}, one value and standard error per quantity), plus
        any JSON-able facts of the fit."""
        raise CampaignError(f"campaign {self.name}: task {task.name} has no readout")

    def plot_measured_readout(self, result: dict, out: str | Path) -> None:
        """Figure of :meth:`readout_measured`'s result."""

    # -- measured data --------------------------------------------------------
    def read_measured(self, path: str | Path, options: dict, manifest: dict, task
                      ) -> tuple[np.ndarray, dict]:
        """Read measured data into examples of the model's geometry: (x,
        info), info a JSON-able dict (what was read, sampling, what one
        example is: ``info["examples"]``). Checks everything and raises
        ValueError with one line before the model is loaded."""
        raise CampaignError(f"campaign {self.name}: reads no measured data")

    # -- plots ----------------------------------------------------------------
    def plot_dataset(self, dataset: str | Path, out: str | Path) -> None:
        """Overview figure of the collected dataset."""
        raise NotImplementedError

    def plot_measured(self, data, info: dict, result: dict, out: str | Path) -> None:
        """Figure of a prediction on measured data."""
        raise NotImplementedError

    # -- showcase ---------------------------------------------------------------
    def has_showcase(self) -> bool:
        """Whether the campaign has a showcase and the config turns it on."""
        section = self.config.get(self.showcase_section) if self.showcase_section else None
        return bool(section and section.get("enabled"))

    def showcase_image(self, out_dir: str | Path,
                       progress: Callable[[str], None] = print) -> dict:
        """Simulate the showcase image and write to ``out_dir``: ``image.npy``
        (what ``predict`` reads, as a measured file) and ``truth.json`` (the
        ground truth, and ``predict_options``: the reader options predict
        needs, e.g. the pixel size [Å] as ``scan_step_A``). Returns the
        truth dict."""
        raise CampaignError(f"campaign {self.name}: has no showcase")

    def showcase_maps(self, image: str | Path, truth: dict, predictions: dict,
                      out: str | Path) -> dict:
        """The figure ``out`` of the predictions on the showcase image beside
        its truth; ``predictions``: task -> the ``predictions.json`` dict of
        ``predict``. Returns the score (a JSON-able dict)."""
        raise CampaignError(f"campaign {self.name}: has no showcase")

    def describe_dataset(self, ds) -> list[str]:
        """Lines that say what a collected dataset holds (``cbedflow summary``)."""
        return [f"  {self.signal} {ds[self.signal].shape}, dims {ds.attrs.get('dims')}"]

    # -- config ---------------------------------------------------------------
    @classmethod
    def schema_fragment(cls) -> dict:
        """JSON-schema properties this campaign adds to the core config
        schema (top-level sections, or keys merged into a core section):
        ``schema.yaml`` beside the campaign's module, if any."""
        import sys

        import yaml

        path = Path(sys.modules[cls.__module__].__file__).parent / "schema.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else {}

    def hashed_section(self, name: str, value):
        """The form of config section ``name`` that stage parameters hash
        (Snakemake reruns a stage when it changes): ``value`` itself. A
        campaign that adds an option drops it here at the value that means
        "as before", so runs made before the option existed are not rerun."""
        return value

    def check_config(self, config: dict) -> None:
        """Consistency checks across keys that the schema cannot express
        (raise :class:`~cbedflow.config.ConfigError`)."""

    def summary_info(self) -> dict:
        """What the summary records of the campaign's scale."""
        return {}


def _import(target: str) -> type[Campaign]:
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CampaignError(f"campaign {target!r} cannot be imported ({exc}); valid: "
                            f"{', '.join(REGISTRY)} or module:Class on PYTHONPATH") from None
    if not (isinstance(cls, type) and issubclass(cls, Campaign)):
        raise CampaignError(f"campaign {target!r} is not a cbedflow.campaigns.Campaign")
    return cls


def campaign_class(name: str | None) -> type[Campaign]:
    """The campaign class of a registry name or ``module:Class``."""
    name = name or DEFAULT
    if name in REGISTRY:
        return _import(REGISTRY[name])
    if ":" in name:
        return _import(name)
    raise CampaignError(f"config key 'campaign': value {name!r} is invalid; valid: "
                        f"{', '.join(REGISTRY)} or module:Class")


def get_campaign(config: dict) -> Campaign:
    """The campaign of ``config`` (key ``campaign``), bound to it."""
    return campaign_class(config.get("campaign"))(config)
