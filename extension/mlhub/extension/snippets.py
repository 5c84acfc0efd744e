"""Copy-paste snippets that call a published model: the last thing the user needs to see.

The body is the bundle's own example (the first rows), so the snippet works as pasted. When no
key was minted in this publish the snippets read ``MLHUB_API_KEY`` and say how to mint one.
"""

import json
import shlex

KEY_ENV = "MLHUB_API_KEY"
SNIPPET_ROWS = 2


def _body(example):
    rows = list(example or [])[:SNIPPET_ROWS]
    return {"instances": rows}


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
