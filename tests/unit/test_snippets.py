"""The snippets every page prints (``mlhub.snippets``): a model published without an example
still gets a body its runtime accepts, built from its signature, and one with neither says what
to put in."""

import json
import shlex

from mlhub.serving.validation import Schema
from mlhub.snippets import NO_EXAMPLE, all_snippets, example_rows

FRAME = {
    "kind": "dataframe",
    "inputs": [
        {"name": "temp", "type": "double"},
        {"name": "count", "type": "integer"},
        {"name": "ok", "type": "boolean"},
        {"name": "line", "type": "category", "levels": ["a", "b"]},
        {"name": "note", "type": "string"},
    ],
}
ARRAY = {"kind": "array", "inputs": [{"name": f"x{i}", "type": "float"} for i in range(3)]}


def curl_body(code):
    return json.loads(shlex.split(code.split("-d ", 1)[1])[0])


def test_without_an_example_the_signature_gives_a_row_the_runtime_accepts():
    for signature in (FRAME, ARRAY):
        (curl, _, _) = [
            code for _, _, code in all_snippets("http://h/p", "m", None, "k", signature)
        ]
        body = curl_body(curl)
        model_input, rows = Schema(signature).from_payload(body)
        assert rows == 1
    assert example_rows(None, FRAME) == [
        {"temp": 0.0, "count": 0, "ok": False, "line": "a", "note": ""}
    ]


def test_the_example_wins_and_is_cut_to_two_rows():
    rows = [[1.0, 2.0, 3.0]] * 5
    assert example_rows(rows, ARRAY) == rows[:2]


def test_with_neither_every_snippet_says_what_to_send():
    snippets = all_snippets("http://h/p", "m")
    assert [label for label, _, _ in snippets] == ["curl", "Python", "R"]
    assert all(code.startswith(f"# {NO_EXAMPLE}") for _, _, code in snippets)
