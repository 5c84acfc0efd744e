"""Input drift: do the rows a model is called with now look like the ones it was built on?

Per input feature, the recent rows (from the inference log) are compared with a reference
sample (by default the rows the bundle keeps for its parity check: the example's and a sample
of ``validate``, ``mlhub.bundle.parity``):

- numbers: the population stability index (PSI) over ten bins cut at the reference's deciles,
  and the two-sample Kolmogorov-Smirnov statistic with its asymptotic p-value;
- anything else (strings, booleans): the PSI over the reference's categories (plus one bin for
  values the reference never had).

A feature is flagged ``drifted`` when its PSI is at or above ``threshold`` (0.2 by default,
the usual "significant shift"). The PSI of samples of a few hundred rows from one distribution
is around 0.02-0.05, so the threshold needs no more than that many rows; with fewer, the
``note`` says the comparison is weak.

Pure functions of lists of rows (numpy only), used by the publisher (``GET .../drift``) and by
``mlhub.drift`` in a notebook with a reference of one's own.
"""

import math
from numbers import Real

import numpy as np

PSI_THRESHOLD = 0.2
BINS = 10
EPS = 1e-4  # a bin's share is at least this, so an empty bin does not make PSI infinite
FEW_ROWS = 100  # below this many rows on either side, a comparison says it is weak


def _psi(expected, actual):
    e = np.maximum(expected / max(expected.sum(), 1), EPS)
    a = np.maximum(actual / max(actual.sum(), 1), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _ks_p_value(d, n, m):
    """The asymptotic p-value of the two-sample KS statistic ``d`` (Numerical Recipes'
    ``probks`` with Stephens' correction)."""
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return 1.0
    total = sum(2 * (-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
    return float(min(max(total, 0.0), 1.0))


def numeric_drift(reference, recent):
    """``(psi, ks, p_value)`` of two 1-d float arrays (NaN left out)."""
    reference = np.sort(reference[~np.isnan(reference)])
    recent = np.sort(recent[~np.isnan(recent)])
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, BINS + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    actual = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=len(edges) + 1)
    psi = _psi(expected.astype(float), actual.astype(float))
    both = np.concatenate([reference, recent])
    cdf_ref = np.searchsorted(reference, both, side="right") / len(reference)
    cdf_new = np.searchsorted(recent, both, side="right") / len(recent)
    ks = float(np.max(np.abs(cdf_ref - cdf_new)))
    return psi, ks, _ks_p_value(ks, len(reference), len(recent))


def categorical_drift(reference, recent):
    """The PSI of two lists of values over the reference's categories (+ one for new ones)."""
    categories = sorted({repr(v) for v in reference})
    index = {c: i for i, c in enumerate(categories)}
    other = len(categories)

    def counts(values):
        return np.bincount([index.get(repr(v), other) for v in values], minlength=other + 1).astype(
            float
        )

    return _psi(counts(reference), counts(recent))


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _columns(rows):
    """``{feature: [values]}`` of rows that are objects (named inputs) or lists (positions,
    named ``input_0``...); rows of neither kind are skipped."""
    columns = {}
    for row in rows:
        if isinstance(row, dict):
            items = row.items()
        elif isinstance(row, list):
            items = ((f"input_{i}", v) for i, v in enumerate(row))
        else:
            continue
        for name, value in items:
            columns.setdefault(name, []).append(value)
    return columns


def drift_table(reference_rows, recent_rows, threshold=PSI_THRESHOLD):
    """One entry per feature of the reference: ``{"feature", "kind", "psi", "ks", "p_value",
    "reference_rows", "recent_rows", "reference_mean", "recent_mean", "drifted"}`` (``ks``,
    ``p_value`` and the means only for numbers), in the reference's order."""
    reference, recent = _columns(reference_rows), _columns(recent_rows)
    table = []
    for feature, ref_values in reference.items():
        ref_values = [v for v in ref_values if v is not None]
        new_values = [v for v in recent.get(feature, []) if v is not None]
        entry = {
            "feature": feature,
            "reference_rows": len(ref_values),
            "recent_rows": len(new_values),
        }
        if not ref_values or not new_values:
            table.append({**entry, "kind": None, "psi": None, "drifted": None})
            continue
        if all(_is_number(v) for v in ref_values) and all(_is_number(v) for v in new_values):
            ref = np.asarray(ref_values, dtype=float)
            new = np.asarray(new_values, dtype=float)
            psi, ks, p = numeric_drift(ref, new)
            entry.update(
                kind="number",
                psi=round(psi, 6),
                ks=round(ks, 6),
                p_value=p,
                reference_mean=float(np.nanmean(ref)),
                recent_mean=float(np.nanmean(new)),
            )
        else:
            entry.update(kind="category", psi=round(categorical_drift(ref_values, new_values), 6))
        entry["drifted"] = entry["psi"] >= threshold
        table.append(entry)
    return table


def weak_note(reference_count, recent_count):
    """What to say when either side has too few rows for the comparison to mean much."""
    if min(reference_count, recent_count) >= FEW_ROWS:
        return None
    return (
        f"the comparison is weak: {reference_count} reference and {recent_count} recent rows "
        f"(at least {FEW_ROWS} each make it meaningful; publish with validate=<a sample of the "
        "training or test data> for a larger reference)"
    )
