"""Finding what to publish in a notebook's namespace.

The panel offers the models the user has trained and the tables they could pass as the example,
and pre-fills a valid name, so the common case needs one click and no typing.
"""

import inspect
import re
import types

_NOT_DNS = re.compile(r"[^a-z0-9]+")


def is_model(obj):
    """A model is any instance with a callable ``predict``; classes and modules are not models."""
    if isinstance(obj, (type, types.ModuleType)):
        return False
    try:
        return callable(getattr(obj, "predict", None))
    except Exception:  # a property or proxy that raises is not a usable model
        return False


def _public(namespace):
    # IPython keeps outputs and inputs in _, __, _1, _i1...: those are not the user's variables.
    return ((k, v) for k, v in namespace.items() if isinstance(k, str) and not k.startswith("_"))


def find_models(namespace):
    """``{variable name: model}`` for the objects in ``namespace`` that can ``predict``."""
    return {k: v for k, v in _public(namespace) if is_model(v)}


def find_examples(namespace):
    """``{variable name: table}`` for the data frames and 2-D arrays in ``namespace``."""
    return {k: v for k, v in _public(namespace) if _is_table(v)}


def _is_table(obj):
    # by name, so looking does not import pandas into a kernel that never used it
    kind = (type(obj).__module__.split(".")[0], type(obj).__name__)
    return kind == ("pandas", "DataFrame") or (kind == ("numpy", "ndarray") and obj.ndim == 2)


def suggest_name(varname):
    """A DNS-label model name from a variable name: ``rf_Model2`` -> ``rf-model2``."""
    name = _NOT_DNS.sub("-", str(varname).lower()).strip("-")[:63].strip("-")
    return name or "model"


def suggest_example(model, examples):
    """The variable in ``examples`` whose columns fit ``model``'s training input, or None.

    Uses what scikit-learn-style estimators remember from ``fit``: ``feature_names_in_``
    (exact columns) first, then ``n_features_in_`` (column count).
    """
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        wanted = [str(c) for c in names]
        for k, v in examples.items():
            if [str(c) for c in getattr(v, "columns", ())] == wanted:
                return k
    count = getattr(model, "n_features_in_", None)
    if count is not None:
        for k, v in examples.items():
            if v.shape[1] == count:
                return k
    return None


def caller_namespace():
    """The namespace the user works in: IPython's ``user_ns``, else the calling module's globals."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        return shell.user_ns
    frame = inspect.currentframe()
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "mlhub" and not module.startswith("mlhub."):
            return frame.f_globals
        frame = frame.f_back
    return {}
