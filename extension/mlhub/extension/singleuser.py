"""``python -m mlhub.extension.singleuser``: ``jupyterhub-singleuser``, about 2 s sooner.

Every notebook server imports jupyter_server, which imports jupyter_events, which imports
jsonschema with the ``format-nongpl`` extra; with it, jsonschema's format checkers import
``rfc3987_syntax``, and that module builds a Lark grammar when it is imported: 1.9 s of the
3.1 s that ``import jupyterhub.singleuser`` takes on a 2-core machine (``python -X importtime``).
It serves one format check ("iri") that nothing in a notebook server uses, and jsonschema
skips that check when the module is absent, which is what marking it absent here does.
Everything else is ``jupyterhub-singleuser`` itself, with the same arguments.
"""

import sys


def main():
    sys.modules.setdefault("rfc3987_syntax", None)  # None: "import rfc3987_syntax" fails fast
    from jupyterhub.singleuser import main as singleuser

    return singleuser()


if __name__ == "__main__":
    sys.exit(main())
