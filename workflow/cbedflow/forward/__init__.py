"""Forward models: what an instrument measures of a sample.

One module per measurement, shared by the campaigns that use it
(:mod:`.cbed4d`: frozen-phonon multislice 4D-STEM with abTEM). This package
holds what every forward model needs: the device check and the electron
wavelength.
"""

from __future__ import annotations

import math

#: electron rest energy [keV] and h*c [keV Å] (CODATA 2018)
_MC2_KEV = 510.99895
_HC_KEV_A = 12.398419843320026


def wavelength_A(energy_kV: float) -> float:
    """Relativistic electron wavelength [Å] at ``energy_kV`` [kV]:
    hc / sqrt(E (2 mc^2 + E)). Closed form, so that validating a config and
    reading measured data (the training environment has no abTEM) need no
    physics package; equals abTEM's ``energy2wavelength`` to 1e-7 (a test
    checks it)."""
    e = float(energy_kV)
    return _HC_KEV_A / math.sqrt(e * (2 * _MC2_KEV + e))


class SimulationConfigError(ValueError):
    """A simulation setting that would silently give wrong results."""


def check_device(device: str) -> None:
    """Refuse ``device`` gpu where cupy cannot reach a GPU, before any work
    (a packed job would otherwise fail unit by unit, or a user would wait for
    a CPU run they did not ask for)."""
    if device != "gpu":
        return
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - import errors and CUDA errors alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SimulationConfigError(
            f"device 'gpu': cupy cannot use a GPU here ({type(exc).__name__}: {first}); "
            "valid: a GPU node with the simulate-gpu environment (envs/simulate-gpu.yaml), "
            "or device: cpu") from None
    if n < 1:
        raise SimulationConfigError("device 'gpu': cupy sees no GPU on this node; valid: a GPU "
                                    "node (the job's GPUs: site.gpus_per_node), or device: cpu")
