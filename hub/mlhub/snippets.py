"""Copy-paste snippets that call a published model: the last thing the user needs to see.

One owner for every place that shows them: the Publish panel and ``mlhub.publish`` in the
notebook, and the Models page. The body is the bundle's own example (the first rows), so a
snippet works as pasted; a model published without one gets a row built from its signature
(zeros, empty strings, a category's first level), and one with neither gets a comment saying
what to put in. When no key was minted in this publish the snippets read ``MLHUB_API_KEY`` and
say how to mint one.
"""

import json
import shlex

KEY_ENV = "MLHUB_API_KEY"
SNIPPET_ROWS = 2


# a value of each signature type for a row built from the signature alone
_PLACEHOLDER = {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False}
NO_EXAMPLE = (
    "no example was published with this model: put rows of its inputs in instances (publish "
    "with example=X.head() for a snippet that works as pasted)"
)


def example_rows(example=None, signature=None):
    """The rows a snippet sends: the example's first, else one built from the signature,
    else None (nothing says what the model takes)."""
    if example:
        return list(example)[:SNIPPET_ROWS]
    if not signature or not signature.get("inputs"):
        return None
    values = {
        i["name"]: (i.get("levels") or [None])[0]
        if i["type"] == "category"
        else _PLACEHOLDER.get(i["type"], "")
        for i in signature["inputs"]
    }
    return [values] if signature.get("kind") == "dataframe" else [list(values.values())]


def _body(example):
    return {"instances": list(example or [])[:SNIPPET_ROWS]}


def curl_snippet(predict_url, name, example=None, key=None):
    """A ``curl`` command posting the example to ``predict_url``."""
    lines = []
    if key is None:
        lines.append(f"# mint a key in the notebook with mlhub.api_key({name!r}), then:")
        lines.append(f"# export {KEY_ENV}=mlhk_...")
    token = key if key is not None else f"${KEY_ENV}"
    lines += [
        f"curl -sS -X POST {shlex.quote(predict_url)} \\",
        f'  -H "Authorization: Bearer {token}" \\',
        '  -H "Content-Type: application/json" \\',
        f"  -d {shlex.quote(json.dumps(_body(example)))}",
    ]
    return "\n".join(lines)


def python_snippet(predict_url, name, example=None, key=None):
    """A ``requests`` call posting the example to ``predict_url``."""
    lines = ["import requests", ""]
    if key is None:
        lines = ["import os", *lines]
        lines.append(f"key = os.environ[{KEY_ENV!r}]  # mint one with mlhub.api_key({name!r})")
    else:
        lines.append(f"key = {key!r}")
    lines += [
        "response = requests.post(",
        f"    {predict_url!r},",
        '    headers={"Authorization": f"Bearer {key}"},',
        f"    json={_body(example)!r},",
        "    timeout=30,",
        ")",
        "response.raise_for_status()",
        'print(response.json()["predictions"])',
    ]
    return "\n".join(lines)


def r_snippet(predict_url, name, example=None, key=None):
    """An R call (the ``curl`` and ``jsonlite`` packages the mlhub R helper uses) posting the
    example to ``predict_url``."""
    if key is None:
        key_line = f'key <- Sys.getenv("{KEY_ENV}")  # a key of {name}: mint one on the Models page'
    else:
        key_line = f'key <- "{key}"'
    body = json.dumps(_body(example)).replace("\\", "\\\\").replace("'", "\\'")
    return "\n".join(
        [
            "library(curl)",
            key_line,
            f"handle <- new_handle(customrequest = \"POST\", postfields = '{body}')",
            'handle_setheaders(handle, Authorization = paste("Bearer", key),',
            '                  "Content-Type" = "application/json")',
            f'response <- curl_fetch_memory("{predict_url}", handle = handle)',
            "stopifnot(response$status_code == 200)",
            "jsonlite::fromJSON(rawToChar(response$content))$predictions",
        ]
    )


def all_snippets(predict_url, name, example=None, key=None, signature=None):
    """``[(label, language, code)]``: curl, Python and R, in the order pages show them, each
    sending ``example_rows(example, signature)`` (or saying what to send)."""
    rows = example_rows(example, signature)
    snippets = [
        ("curl", "bash", curl_snippet(predict_url, name, rows, key)),
        ("Python", "python", python_snippet(predict_url, name, rows, key)),
        ("R", "r", r_snippet(predict_url, name, rows, key)),
    ]
    if rows is None:
        snippets = [(label, lang, f"# {NO_EXAMPLE}\n{code}") for label, lang, code in snippets]
    return snippets
