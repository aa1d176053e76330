"""Alignment of a scan line to a reference profile (the interface found in a
virtual HAADF signal).

A measured scan is placed by eye; a network whose window is placed at the
simulated interface position can read the class from where the interface
sits (the LAO/STO k = 10 shortcut). Aligning every window, simulated or
measured, to the same reference profile of a position-sensitive signal (the
dark-field intensity rises at the La columns) removes that freedom: where a
window starts then follows from the data, as it would for a microscopist.

The reference is the mean profile of the training samples, iteratively
re-aligned (template averaging), so it needs no labels and no structure
model. Hand-written (normalised cross-correlation over integer shifts, a
dozen lines): ``scipy.signal.correlate`` has no per-shift normalisation of
the overlapping segment, and the training environment has no scipy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64) - np.mean(v)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def rising_edge(template: np.ndarray, period: int, margin: int) -> int:
    """Position of the strongest rise of a periodic profile: the ``i`` that
    maximises mean(template[i:i + period]) - mean(template[i - period:i])
    (one lattice period after against one before), searched where both
    periods and the largest shift ``margin`` stay inside; ties go to the
    first. The substrate-to-film interface of a HAADF profile."""
    t = np.asarray(template, np.float64)
    lo, hi = margin + period, len(t) - margin - period
    if hi < lo:
        raise ValueError(f"a profile of {len(t)} positions has no room for a rise of period "
                         f"{period} inside shifts of +-{margin}")
    score = [t[i:i + period].mean() - t[i - period:i].mean() for i in range(lo, hi + 1)]
    return lo + int(np.argmax(score))


def profile_offset(profile: np.ndarray, template: np.ndarray, margin: int,
                   offsets: Iterable[int], core: tuple[int, int] | None = None) -> int:
    """Shift ``u`` [positions] that best places ``template`` on ``profile``
    (:func:`profile_match` without the correlation)."""
    return profile_match(profile, template, margin, offsets, core)[0]


def profile_match(profile: np.ndarray, template: np.ndarray, margin: int,
                  offsets: Iterable[int], core: tuple[int, int] | None = None
                  ) -> tuple[int, float]:
    """Shift ``u`` [positions] that best places ``template`` on ``profile``,
    and the correlation reached there.

    The template's core (``template[margin:-margin]``, a fixed length) is
    compared with ``profile[u + margin : u + margin + len(core)]`` by the
    normalised correlation (Pearson r, so a global scale and offset of the
    intensity do not matter); shifts whose segment leaves the profile are
    skipped. Ties go to the smallest ``|u|``, then the smaller ``u``.

    Parameters
    ----------
    profile : array (n,)
        The line's signal at each probe position.
    template : array (m,)
        The reference profile, at the same probe step.
    margin : int
        Positions trimmed from each end of the template (the largest shift
        the template was built with).
    offsets : iterable of int
        Candidate shifts [positions]; ``u = 0`` lines up the two first
        positions.
    core : (int, int), optional
        The compared segment of the template [start, stop) instead of
        ``(margin, len - margin)``: e.g. one period either side of its
        :func:`rising_edge`, so that only the interface region decides.

    Raises
    ------
    ValueError
        If no candidate shift keeps the core inside the profile.
    """
    profile = np.asarray(profile, np.float64)
    c0, c1 = core if core is not None else (margin, len(template) - margin)
    ref = _unit(np.asarray(template, np.float64)[c0:c1])
    best, best_key = None, None
    for u in offsets:
        lo = int(u) + c0
        if lo < 0 or lo + len(ref) > len(profile):
            continue
        r = float(np.dot(_unit(profile[lo:lo + len(ref)]), ref))
        key = (-round(r, 12), abs(int(u)), int(u))
        if best_key is None or key < best_key:
            best, best_key = int(u), key
    if best is None:
        raise ValueError(f"no shift places a template of {len(template)} positions "
                         f"(margin {margin}) on a profile of {len(profile)}")
    return best, -best_key[0]


def mean_template(profiles: np.ndarray, max_shift: int, iterations: int = 3,
                  period: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Reference profile of many lines and the shift of each.

    Starts from the plain mean; each iteration aligns every profile to the
    current template (shifts -``max_shift``..``max_shift``) and averages the
    aligned profiles (at each position, over the profiles that reach it).
    The shifts are re-centred on their median each time, so the template
    stays where the lines are on average. Deterministic; stops early when no
    shift changes.

    Parameters
    ----------
    profiles : array (lines, n)
        One profile per line, all at the same probe step.
    max_shift : int
        Largest shift [positions].
    period : int, optional
        Lattice period [positions]. Given, the lines are compared only one
        period either side of the plain mean's :func:`rising_edge` (the
        interface), not over the whole line: a structure whose far side
        differs (a thinner film) still aligns by its interface.

    Returns
    -------
    template : array (n,)
    shifts : array (lines,) of int
    core : (int, int)
        The compared segment of the template.
    """
    p = np.asarray(profiles, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"profiles of shape {p.shape}; expected (lines >= 1, positions)")
    n = p.shape[1]
    if n <= 2 * max_shift:
        raise ValueError(f"profiles of {n} positions cannot be shifted by +-{max_shift}")
    template = p.mean(axis=0)
    core = (max_shift, n - max_shift)
    if period:
        edge = rising_edge(template, period, max_shift)
        core = (edge - period, edge + period)
    shifts = np.zeros(len(p), int)
    offsets = range(-max_shift, max_shift + 1)
    for _ in range(iterations):
        new = np.array([profile_offset(q, template, max_shift, offsets, core) for q in p])
        new -= int(np.round(np.median(new)))  # keep the template centred (no drift)
        new = np.clip(new, -max_shift, max_shift)
        total, count = np.zeros(n), np.zeros(n)
        for q, s in zip(p, new):
            i = np.arange(n)
            ok = (i + s >= 0) & (i + s < n)
            total[i[ok]] += q[i[ok] + s]
            count[i[ok]] += 1
        template = total / np.maximum(count, 1)
        changed = not np.array_equal(new, shifts)
        shifts = new
        if not changed:
            break
    return template, shifts, core
