"""Payload -> model input: every accepted form, and a precise 400 for every kind of bad input."""

import numpy as np
import pandas as pd
import pytest

from mlhub.errors import InvalidInput
from mlhub.serving.validation import Schema, UntypedSchema, schema_for

ARRAY = {"kind": "array", "inputs": [{"name": f"x{i}", "type": "double"} for i in range(3)]}
FRAME = {
    "kind": "dataframe",
    "inputs": [
        {"name": "age", "type": "long"},
        {"name": "income", "type": "double"},
        {"name": "member", "type": "boolean"},
        {"name": "city", "type": "string"},
        {"name": "plan", "type": "category", "levels": ["basic", "pro"]},
    ],
}
NUMERIC_FRAME = {
    "kind": "dataframe",
    "inputs": [{"name": n, "type": "double"} for n in ("a", "b")],
}


def bad(schema, body):
    with pytest.raises(InvalidInput) as err:
        schema.from_payload(body)
    assert err.value.status == 400
    return err.value


# ---------------------------------------------------------------- array signatures


def test_rows_become_a_float64_array():
    X, n = Schema(ARRAY).from_payload({"instances": [[1, 2.5, 3], [4, 5, 6]]})
    assert n == 2
    assert X.dtype == np.float64 and X.shape == (2, 3)
    assert X.tolist() == [[1.0, 2.5, 3.0], [4.0, 5.0, 6.0]]


def test_records_are_put_in_signature_order():
    X, _ = Schema(ARRAY).from_payload({"instances": [{"x2": 3, "x0": 1, "x1": 2}]})
    assert X.tolist() == [[1.0, 2.0, 3.0]]


def test_columnar_form_in_any_column_order():
    body = {"columns": ["x1", "x2", "x0"], "data": [[2, 3, 1], [5, 6, 4]]}
    X, n = Schema(ARRAY).from_payload(body)
    assert n == 2
    assert X.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_null_is_nan_in_number_inputs():
    X, _ = Schema(ARRAY).from_payload({"instances": [[1, None, 3]]})
    assert np.isnan(X[0, 1]) and X[0, 0] == 1.0


def test_float_signature_gives_float32():
    sig = {"kind": "array", "inputs": [{"name": "a", "type": "float"}]}
    X, _ = Schema(sig).from_payload({"instances": [[1.5], [2]]})
    assert X.dtype == np.float32


def test_single_input_model_accepts_bare_values():
    sig = {"kind": "array", "inputs": [{"name": "a", "type": "double"}]}
    X, n = Schema(sig).from_payload({"instances": [1, 2, 3]})
    assert n == 3 and X.shape == (3, 1)


def test_wrong_feature_count_names_expected_and_got():
    err = bad(Schema(ARRAY), {"instances": [[1, 2, 3], [1, 2]]})
    assert "row 1 has 2 values, but the model expects 3" in err.message
    assert err.detail == {"row": 1, "expected": 3, "got": 2}


def test_string_in_a_number_input_names_row_and_column():
    err = bad(Schema(ARRAY), {"instances": [[1, 2, 3], [4, "five", 6]]})
    assert "row 1, input 'x1'" in err.message
    assert "expected a number" in err.message and "'five'" in err.message
    assert err.detail["row"] == 1 and err.detail["column"] == "x1"


def test_numeric_strings_are_not_read_as_numbers():
    err = bad(Schema(ARRAY), {"instances": [[1, "2", 3]]})
    assert err.detail["column"] == "x1"


def test_nested_list_value_is_named():
    err = bad(Schema(ARRAY), {"instances": [[1, [2, 3], 4]]})
    assert err.detail == {"row": 0, "column": "x1", "expected": "double", "got": "a list"}


def test_mixing_records_and_rows_is_refused():
    err = bad(Schema(ARRAY), {"instances": [{"x0": 1, "x1": 2, "x2": 3}, [1, 2, 3]]})
    assert "instance 1 is a list" in err.message


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, 'has no "instances"'),
        ({"inputs": []}, "POST /v2/models/<name>/infer"),
        ([1, 2], "must be a JSON object"),
        ({"instances": []}, "an empty list"),
        ({"instances": {"x0": 1}}, "non-empty list"),
        ({"instances": ["a", "b"]}, "each instance must be a row"),
    ],
)
def test_shape_errors_say_what_to_send(body, fragment):
    assert fragment in bad(Schema(ARRAY), body).message


# ---------------------------------------------------------------- data frame signatures


def test_mixed_records_become_a_typed_dataframe():
    rec = {"age": 41, "income": 52000, "member": True, "city": "Oslo", "plan": "pro"}
    frame, n = Schema(FRAME).from_payload({"instances": [rec, dict(rec, plan=None, city=None)]})
    assert n == 2
    assert list(frame.columns) == ["age", "income", "member", "city", "plan"]
    assert frame["age"].dtype == np.int64
    assert frame["income"].dtype == np.float64
    assert frame["member"].dtype == np.bool_
    assert frame["city"].iloc[0] == "Oslo" and pd.isna(frame["city"].iloc[1])
    assert isinstance(frame["plan"].dtype, pd.CategoricalDtype)
    assert list(frame["plan"].cat.categories) == ["basic", "pro"]
    assert frame["plan"].iloc[0] == "pro" and pd.isna(frame["plan"].iloc[1])


def test_numeric_frame_is_one_block_with_named_columns():
    frame, _ = Schema(NUMERIC_FRAME).from_payload({"instances": [[1, 2], [3, 4]]})
    assert list(frame.columns) == ["a", "b"]
    assert frame.to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_missing_and_unknown_record_keys_are_named():
    rec = {"age": 41, "income": 1.0, "member": True, "city": "Oslo", "colour": "red"}
    err = bad(Schema(FRAME), {"instances": [rec]})
    assert "record 0 misses 'plan' and has unknown keys 'colour'" in err.message
    assert err.detail["missing"] == ["plan"] and err.detail["unknown"] == ["colour"]


def test_unknown_category_level_lists_the_levels():
    rec = {"age": 41, "income": 1.0, "member": True, "city": "Oslo", "plan": "gold"}
    err = bad(Schema(FRAME), {"instances": [rec]})
    assert "input 'plan'" in err.message and "'basic', 'pro'" in err.message


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("age", 41.5, "a whole number"),
        ("age", None, "null is not allowed"),
        ("age", "41", "a whole number"),
        ("member", 1, "true or false"),
        ("city", 7, "a string"),
    ],
)
def test_wrong_types_in_frames_name_the_column(field, value, expected):
    rec = {"age": 41, "income": 1.0, "member": True, "city": "Oslo", "plan": "pro"}
    rec[field] = value
    err = bad(Schema(FRAME), {"instances": [rec, rec]})
    assert f"row 0, input {field!r}" in err.message and expected in err.message


def test_integral_floats_are_accepted_as_whole_numbers():
    rec = {"age": 41.0, "income": 1.0, "member": False, "city": "Oslo", "plan": "basic"}
    frame, _ = Schema(FRAME).from_payload({"instances": [rec]})
    assert frame["age"].tolist() == [41]


def test_out_of_range_integer_is_refused():
    sig = {"kind": "array", "inputs": [{"name": "n", "type": "integer"}]}
    err = bad(Schema(sig), {"instances": [[2**40]]})
    assert "32-bit" in err.message


def test_columnar_columns_must_name_each_input():
    err = bad(Schema(NUMERIC_FRAME), {"columns": ["a", "z"], "data": [[1, 2]]})
    assert err.detail == {"missing": ["b"], "unknown": ["z"]}


def test_from_columns_checks_names_and_lengths():
    schema = Schema(NUMERIC_FRAME)
    frame, n = schema.from_columns({"b": [2, 4], "a": [1, 3]})
    assert n == 2 and frame["a"].tolist() == [1.0, 3.0]
    with pytest.raises(InvalidInput, match="same, non-zero number"):
        schema.from_columns({"a": [1], "b": [1, 2]})


# ---------------------------------------------------------------- without a signature


def test_untyped_schema_passes_data_through():
    schema = schema_for(None)
    assert isinstance(schema, UntypedSchema)
    X, n = schema.from_payload({"instances": [[1, 2], [3, 4]]})
    assert n == 2 and X.shape == (2, 2)
    frame, _ = schema.from_payload({"instances": [{"a": 1, "b": "x"}]})
    assert list(frame.columns) == ["a", "b"]
    frame, _ = schema.from_payload({"columns": ["a"], "data": [[1], [2]]})
    assert frame["a"].tolist() == [1, 2]
    with pytest.raises(InvalidInput, match="same length"):
        schema.from_payload({"instances": [[1, 2], [3]]})


def test_columnar_reorder_of_mixed_types_keeps_each_column_typed():
    order = ["plan", "city", "member", "income", "age"]
    body = {
        "columns": order,
        "data": [["pro", "Oslo", True, 52000, 41], [None, None, False, 1.5, 7]],
    }
    frame, n = Schema(FRAME).from_payload(body)
    assert n == 2 and list(frame.columns) == ["age", "income", "member", "city", "plan"]
    assert frame["age"].tolist() == [41, 7] and frame["income"].tolist() == [52000.0, 1.5]
    assert frame["plan"].iloc[0] == "pro" and pd.isna(frame["plan"].iloc[1])
    err = bad(Schema(ARRAY), {"columns": ["x2", "x0", "x1"], "data": [[1, 2, 3], [1, "x", 3]]})
    assert "row 1, input 'x0'" in err.message  # named in signature terms, not request order


def test_arrays_are_cast_per_column_with_the_same_rules():
    schema = Schema(FRAME)
    arrays = {
        "plan": np.array(["basic", None], dtype=object),
        "city": np.array(["Oslo", "Rome"], dtype=object),
        "member": np.array([True, False]),
        "income": np.array([1, 2], dtype=np.int32),  # whole numbers are fine for a double
        "age": np.array([3.0, 4.0]),  # whole floats are fine for a long
    }
    frame = schema.from_arrays(arrays)
    assert frame["income"].dtype == np.float64 and frame["age"].dtype == np.int64
    assert frame["age"].tolist() == [3, 4] and pd.isna(frame["plan"].iloc[1])
    with pytest.raises(InvalidInput, match="row 1, input 'age': expected a whole number"):
        schema.from_arrays(dict(arrays, age=np.array([3.0, 4.5])))
    with pytest.raises(InvalidInput, match="missing 'age'"):
        schema.from_arrays({k: v for k, v in arrays.items() if k != "age"})
    X = Schema(ARRAY).from_arrays({f"x{i}": np.array([i, i + 1.0]) for i in (2, 0, 1)})
    assert X.tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]


# ---------------------------------------------------------------- missing values


@pytest.mark.parametrize(
    ("signature", "body", "row", "field"),
    [
        (ARRAY, {"instances": [[1, 2, 3], [4, None, 6]]}, 1, "x1"),
        (NUMERIC_FRAME, {"instances": [{"a": 1.0, "b": None}]}, 0, "b"),
        (NUMERIC_FRAME, {"columns": ["b", "a"], "data": [[1.0, 2.0], [None, 3.0]]}, 1, "b"),
        (
            FRAME,
            {
                "instances": [
                    {"age": 30, "income": 1.5, "member": True, "city": "x", "plan": "pro"},
                    {"age": 31, "income": None, "member": True, "city": "y", "plan": "pro"},
                ]
            },
            1,
            "income",
        ),
    ],
)
def test_a_model_that_refuses_missing_numbers_gets_a_400_naming_them(signature, body, row, field):
    err = bad(Schema(signature, refuse_missing=True), body)
    assert err.detail == {"row": row, "column": field, "got": None}
    assert f"row {row}, input {field!r}: a missing value" in err.message
    assert "SimpleImputer" in err.message
    Schema(signature).from_payload(body)  # a model that takes them gets NaN, as before


def test_missing_numbers_in_arrow_columns_are_refused_too():
    schema = Schema(NUMERIC_FRAME, refuse_missing=True)
    with pytest.raises(InvalidInput) as err:
        schema.from_arrays({"a": np.array([1.0, 2.0]), "b": np.array([1.0, np.nan])})
    assert err.value.detail["column"] == "b" and err.value.detail["row"] == 1
    frame = schema.from_arrays({"a": np.array([1.0]), "b": np.array([2.0])})
    assert frame.shape == (1, 2)
