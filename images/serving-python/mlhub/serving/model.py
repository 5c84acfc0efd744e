"""The loaded bundle: manifest, model object, compiled input schema and a safe predict call.

``ServedModel.load`` never raises. A broken bundle gives a model that is not ready and carries
the reason, so the server stays up, ``/readyz`` answers 503 with that reason and the operator
reads it there and in the log, instead of watching uWSGI crash-loop.
"""

import importlib.metadata
import logging
import platform
import sys
import time

import numpy as np

from mlhub.bundle import bundle_digest, load_manifest, load_model
from mlhub.bundle.parity import differences, read_parity, refusal, version_drift
from mlhub.errors import BadRequest, InvalidInput, MlhubError, NotReady

from .jsonio import dumps, loads
from .validation import schema_for

log = logging.getLogger("mlhub.serving")


class ParityFailed(MlhubError):
    """The served model's answers differ from the notebook's (``mlhub.bundle.parity``)."""

    status = 503
    error = "parity_failed"


class PredictionFailed(MlhubError):
    """The input passed validation but the model raised on it: its message says why."""

    status = 422
    error = "prediction_failed"


def _installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _outputs(result):
    """Make a model's output JSON-ready: numpy stays numpy (orjson writes it), a Series unwraps,
    a DataFrame stays (written as one record per row)."""
    if isinstance(result, (np.ndarray, list)) or hasattr(result, "columns"):
        return result
    to_numpy = getattr(result, "to_numpy", None)  # pandas Series
    if callable(to_numpy):
        return to_numpy()
    return np.asarray(result)


def _run(method, payload_input, what):
    """``method(payload_input)`` made JSON-ready; an exception of the model's becomes
    ``PredictionFailed`` ("the model could not <what>: ...") naming it."""
    try:
        return _outputs(method(payload_input))
    except Exception as exc:
        raise PredictionFailed(
            f"the model could not {what}: {type(exc).__name__}: {exc}",
            {"exception": type(exc).__name__},
        ) from exc


def accepts_missing(model, manifest):
    """Whether the model takes missing numbers (NaN) as they are. XGBoost and LightGBM always do;
    a scikit-learn estimator says so in its tags (histogram gradient boosting, the trees since
    1.4), and a Pipeline does when a step takes NaN before any step refuses it (an imputer
    removes it). For anything else (pyfunc, ONNX, column transformers, no model yet) mlhub
    cannot tell, so the model decides, as before."""
    if manifest.get("flavor") in ("xgboost", "lightgbm"):
        return True
    sklearn_base = sys.modules.get("sklearn.base")  # imported when the model is scikit-learn's
    if model is None or sklearn_base is None or not isinstance(model, sklearn_base.BaseEstimator):
        return True
    try:
        return _nan_in(model) != "refuses"
    except Exception:  # an estimator whose tags cannot be read: let it decide
        return True


def _nan_in(estimator):
    """What a scikit-learn estimator does with NaN: ``removes`` it (an imputer), ``passes``
    it on (takes it as it is), ``refuses`` it, or ``unknown`` (per-column parts)."""
    from sklearn.pipeline import Pipeline
    from sklearn.utils import get_tags

    if type(estimator).__module__.startswith("sklearn.impute"):
        return "removes"
    if isinstance(estimator, Pipeline):
        steps = [step for _, step in estimator.steps if step not in (None, "passthrough")]
        for step in steps:
            if (seen := _nan_in(step)) != "passes":
                return seen
        return "passes"
    if hasattr(estimator, "transformers") or hasattr(estimator, "transformer_list"):
        return "unknown"  # ColumnTransformer, FeatureUnion: each column its own way
    return "passes" if get_tags(estimator).input_tags.allow_nan else "refuses"


class ServedModel:
    """One bundle, loaded once per process tree; every request reads it, none changes it."""

    def __init__(self, bundle_dir, *, manifest=None, model=None, version=None, error=None):
        self.bundle_dir = str(bundle_dir)
        self.manifest = manifest or {}
        self.model = model
        self.error = error
        self.ready = error is None and model is not None
        self.name = self.manifest.get("name") or "model"
        self.version = version
        self.load_seconds = 0.0
        self.accepts_missing = accepts_missing(model, self.manifest)
        self.schema = schema_for(self.manifest.get("signature"), not self.accepts_missing)
        self.predict_method = self.manifest.get("predict_method", "predict")
        self._predict = getattr(model, self.predict_method, None)
        self._proba = getattr(model, "predict_proba", None)
        self.has_proba = callable(self._proba)
        classes = getattr(model, "classes_", None)
        self.classes = classes.tolist() if isinstance(classes, np.ndarray) else classes

    @classmethod
    def load(cls, bundle_dir, *, version=None):
        """Load ``bundle_dir``; on any failure return a not-ready model that says why."""
        started = time.perf_counter()
        manifest = None
        try:
            manifest = load_manifest(bundle_dir)
            version = version or bundle_digest(bundle_dir)
            served = cls(
                bundle_dir,
                manifest=manifest,
                model=load_model(bundle_dir, manifest),
                version=version,
            )
        except Exception as exc:  # any failure must leave a server that explains itself
            reason = exc.message if isinstance(exc, MlhubError) else f"{type(exc).__name__}: {exc}"
            log.error("model bundle %s cannot be served: %s", bundle_dir, reason)
            served = cls(bundle_dir, manifest=manifest, version=version, error=reason)
        served.load_seconds = time.perf_counter() - started
        if served.ready:
            log.info(
                "loaded model %r (%s) from %s in %.3f s",
                served.name,
                served.manifest.get("flavor"),
                bundle_dir,
                served.load_seconds,
            )
        return served

    def require_ready(self):
        if not self.ready:
            raise NotReady(
                f"the model is not loaded: {self.error}",
                {"bundle": self.bundle_dir, "reason": self.error},
            )

    def predict(self, payload_input):
        """Run the model on converted input; its exceptions become ``PredictionFailed``."""
        return _run(self._predict, payload_input, "predict on this input")

    def predict_proba(self, payload_input):
        if not self.has_proba:
            raise BadRequest(
                f"this model ({self.manifest.get('model_class', type(self.model).__name__)}) "
                "has no predict_proba(): ask for predictions without proba",
                {"field": "proba"},
            )
        return _run(self._proba, payload_input, "compute probabilities")

    def predict_example(self):
        """Predict the bundle's own example through the request path (validation included).

        ``check`` uses it to reject a bundle before deployment; workers use it to warm up.
        """
        self.require_ready()
        example = self.manifest.get("example")
        if not example:
            return None
        try:
            model_input, _rows = self.schema.from_instances(example)
        except InvalidInput as exc:
            raise InvalidInput(
                f"the bundle's own example does not match its signature: {exc.message}",
                exc.detail,
            ) from exc
        return self.predict(model_input)

    def self_test(self):
        """Predict the bundle's example and encode the answer, as ``POST /v1/predict`` would,
        then check parity; return the example's predictions. ``check`` runs it, and so does
        every worker before it takes requests (``wsgi.py``): a model that cannot predict its
        own example, or answers otherwise than the notebook's did, is not ready."""
        predictions = self.predict_example()
        dumps({"predictions": predictions})  # the server must be able to answer with it
        self.check_parity()
        return predictions

    def check_parity(self):
        """Predict the bundle's parity rows through the request path and compare with what the
        notebook's model answered; raise ``ParityFailed`` with the rows that differ and the
        library versions that differ from the notebook's."""
        record = read_parity(self.bundle_dir, self.manifest)
        if record is None:
            return
        rows, notebook, rtol, atol = record
        model_input, _rows = self.schema.from_instances(rows)
        served = loads(dumps(self.predict(model_input)))
        diffs = differences(notebook, served, rtol, atol)
        if diffs:
            drift = version_drift(self.manifest.get("requirements"), _installed_version)
            python = self.manifest.get("python")
            if python and python != platform.python_version():
                drift.append(f"Python {python} in the notebook, {platform.python_version()} here")
            raise ParityFailed(
                refusal(rows, diffs, len(rows), rtol, atol, drift),
                {"rows": len(rows), "differ": len(diffs), "versions": drift},
            )

    def fail(self, reason):
        """Mark the model not ready: ``/readyz`` and every predict answer 503 with ``reason``."""
        log.error("model %r is not ready: %s", self.name, reason)
        self.ready = False
        self.error = reason

    def metadata(self, owner=None):
        """What ``GET /v1/metadata`` answers (computed once)."""
        m = self.manifest
        return {
            "name": self.name,
            "owner": owner,
            "version": self.version,
            "ready": self.ready,
            "runtime": m.get("runtime", "python"),
            "flavor": m.get("flavor"),
            "model_class": m.get("model_class"),
            "predict_method": self.predict_method,
            "description": m.get("description", ""),
            "signature": m.get("signature"),
            "example": m.get("example"),
            "requirements": m.get("requirements", []),
            "python": m.get("python"),
            "created": m.get("created"),
            "classes": self.classes,
            "has_proba": self.has_proba,
        }
