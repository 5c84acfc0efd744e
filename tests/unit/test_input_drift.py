"""Drift per feature (``mlhub.input_drift``): a shifted feature is flagged, an unshifted one is not,
at sample sizes a model's log has after a few hundred requests."""

import numpy as np
import pytest

from mlhub.input_drift import drift_table, numeric_drift, weak_note


def frames(seed, n, shift=0.0, colors=("red", "green", "blue"), weights=(0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    x = rng.normal(10 + shift, 2, n)
    y = rng.uniform(0, 1, n)
    color = rng.choice(colors, n, p=weights)
    return [
        {"x": float(a), "y": float(b), "color": str(c)} for a, b, c in zip(x, y, color, strict=True)
    ]


def by_feature(table):
    return {entry["feature"]: entry for entry in table}


def test_a_shifted_number_is_flagged_and_the_others_are_not():
    reference = frames(1, 1000)
    recent = frames(2, 300, shift=3.0)  # x moved by 1.5 standard deviations
    table = by_feature(drift_table(reference, recent))
    assert table["x"]["drifted"] and table["x"]["psi"] > 0.5
    assert table["x"]["ks"] > 0.4 and table["x"]["p_value"] < 1e-6
    assert table["x"]["recent_mean"] == pytest.approx(13, abs=0.4)
    assert not table["y"]["drifted"] and table["y"]["psi"] < 0.1
    assert table["y"]["p_value"] > 0.001
    assert not table["color"]["drifted"]
    assert table["color"]["kind"] == "category"


def test_a_category_whose_mix_changes_is_flagged_as_is_a_new_one():
    reference = frames(1, 1000)
    mix = by_feature(drift_table(reference, frames(3, 300, weights=(0.1, 0.2, 0.7))))
    assert mix["color"]["drifted"] and not mix["x"]["drifted"]
    new = by_feature(drift_table(reference, frames(4, 300, colors=("red", "green", "purple"))))
    assert new["color"]["drifted"]


def test_the_same_distribution_scores_near_zero_at_every_size():
    for n in (100, 300, 1000):
        table = by_feature(drift_table(frames(5, 1000), frames(6, n)))
        assert all(not entry["drifted"] for entry in table.values()), (n, table)


def test_ks_matches_its_definition():
    ref, new = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.5, 4.5])
    _, ks, p = numeric_drift(ref, new)
    assert ks == pytest.approx(0.75)  # at 4: 1.0 vs 0.5 ... at 3: 0.75 vs 0
    assert 0 < p < 1


def test_positional_inputs_missing_values_and_absent_features():
    reference = [[1.0, None], [2.0, None], [3.0, None]]
    recent = [[1.5], [2.5]]
    table = by_feature(drift_table(reference, recent))
    assert table["input_0"]["kind"] == "number"
    assert table["input_1"] == {
        "feature": "input_1",
        "reference_rows": 0,
        "recent_rows": 0,
        "kind": None,
        "psi": None,
        "drifted": None,
    }


def test_few_rows_are_called_weak():
    assert "5 reference and 300 recent rows" in weak_note(5, 300)
    assert weak_note(1000, 300) is None
