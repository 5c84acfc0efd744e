"""Which source columns feed the model, in which order and type (``mlhub.batch.features``)."""

import pyarrow as pa
import pytest

from mlhub.batch.errors import InvalidBatch
from mlhub.batch.features import Features

ARRAY = {"kind": "array", "inputs": [{"name": f"x{i}", "type": "double"} for i in range(3)]}
FRAME = {
    "kind": "dataframe",
    "inputs": [
        {"name": "temp", "type": "double"},
        {"name": "count", "type": "long"},
        {"name": "ok", "type": "boolean"},
        {"name": "tool", "type": "category"},
    ],
}


def test_named_inputs_are_picked_by_name_in_signature_order():
    table = pa.table(
        {"id": [1], "tool": ["t1"], "ok": [True], "count": [3], "temp": [1.5], "extra": [0]}
    )
    inputs, raw, bad = Features(FRAME, keys=["id"]).prepare(table)
    assert inputs.column_names == ["temp", "count", "ok", "tool"]
    assert inputs.to_pylist() == [{"temp": 1.5, "count": 3, "ok": True, "tool": "t1"}]
    assert raw.column_names == inputs.column_names and bad == {}


def test_text_is_converted_to_the_signature_types():
    table = pa.table(
        {"id": ["k"], "temp": ["1.25"], "count": ["7"], "ok": ["true"], "tool": ["t2"]}
    )
    inputs, _, bad = Features(FRAME, keys=["id"]).prepare(table)
    assert inputs.schema.types == [pa.float64(), pa.int64(), pa.bool_(), pa.string()]
    assert inputs.to_pylist() == [{"temp": 1.25, "count": 7, "ok": True, "tool": "t2"}]
    assert bad == {}


def test_values_that_do_not_convert_mark_their_rows():
    table = pa.table(
        {
            "id": [1, 2, 3, 4],
            "temp": ["1", "hot", None, "2"],
            "count": ["1", "2", "3.5", "4.0"],
            "ok": ["true", "0", "1", "maybe"],
            "tool": ["a", "b", "c", "d"],
        }
    )
    inputs, _, bad = Features(FRAME, keys=["id"]).prepare(table)
    assert bad == {
        1: "temp: 'hot' is not a number",
        2: "count: '3.5' is not a whole number",
        3: "ok: 'maybe' is not true or false",
    }
    assert inputs.column("temp").to_pylist() == [1.0, None, None, 2.0]  # null stays missing
    assert inputs.column("count").to_pylist() == [1, 2, None, 4]


def test_array_models_take_the_non_key_columns_by_position():
    table = pa.table({"f0": [1.0], "id": [9], "f1": [2], "f2": [3.0]})
    inputs, _, _ = Features(ARRAY, keys=["id"]).prepare(table)
    assert inputs.column_names == ["x0", "x1", "x2"]
    assert inputs.to_pylist() == [{"x0": 1.0, "x1": 2.0, "x2": 3.0}]


def test_columns_pick_and_order_the_inputs():
    table = pa.table({"c": [3.0], "a": [1.0], "b": [2.0], "label": [1]})
    inputs, _, _ = Features(ARRAY, keys=["label"], columns=["a", "b", "c"]).prepare(table)
    assert list(inputs.to_pylist()[0].values()) == [1.0, 2.0, 3.0]


def test_columns_that_do_not_fit_are_explained():
    table = pa.table({"id": [1], "f0": [1.0], "f1": [2.0]})
    with pytest.raises(InvalidBatch, match="takes 3 unnamed inputs, and 2 columns"):
        Features(ARRAY, keys=["id"]).prepare(table)
    with pytest.raises(InvalidBatch, match=r"lacks \['count', 'ok', 'tool'\]"):
        Features(FRAME, keys=["id"]).prepare(pa.table({"id": [1], "temp": [1.0]}))
    with pytest.raises(InvalidBatch, match="does not have"):
        Features(ARRAY, keys=["id"], columns=["nope"]).prepare(table)


def test_without_a_signature_every_non_key_column_is_sent():
    table = pa.table({"id": [1], "a": ["x"], "b": [2]})
    inputs, _, bad = Features(None, keys=["id"]).prepare(table)
    assert inputs.column_names == ["a", "b"] and bad == {}


def test_dictionary_encoded_text_is_sent_as_text():
    tools = pa.array(["t1", "t2", "t1"]).dictionary_encode()
    table = pa.table({"temp": [1.0] * 3, "count": [1] * 3, "ok": [True] * 3, "tool": tools})
    inputs, _, _ = Features(FRAME, keys=[]).prepare(table)
    assert inputs.schema.field("tool").type == pa.string()
    assert inputs.column("tool").to_pylist() == ["t1", "t2", "t1"]
