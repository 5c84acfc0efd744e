"""``python -m mlhub.serving check --bundle DIR``: will this bundle serve?

It loads the model exactly as the server does, sends the bundle's own example through the same
validation and prediction path as ``POST /v1/predict`` and writes the answer as JSON: a corrupt
pickle, a missing package or a model that cannot predict its own example is reported with the
reason. It is a tool for people and images; the publisher needs no separate run of it, because
every serving worker does the same self-test before it is ready (``wsgi.py``).
"""

from .jsonio import dumps, loads
from .model import ServedModel

SHOWN = 5


def check_bundle(bundle_dir):
    """Load ``bundle_dir`` and predict its example; return a summary or raise ``MlhubError``."""
    served = ServedModel.load(bundle_dir)
    served.require_ready()
    predictions = served.self_test()
    summary = {
        "ok": True,
        "name": served.name,
        "version": served.version,
        "flavor": served.manifest.get("flavor"),
        "load_seconds": round(served.load_seconds, 3),
        "example_rows": len(served.manifest.get("example") or []),
    }
    if predictions is None:
        summary["warning"] = "the bundle has no example, so no prediction was tried"
    else:
        summary["predictions"] = loads(dumps({"predictions": predictions}))["predictions"][:SHOWN]
    return summary
