"""JSON in and out with orjson, which writes numpy arrays natively (no ``tolist`` per request)."""

import numpy as np
import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(obj):
    """What orjson cannot write itself: numpy scalars and string/object arrays, pandas
    objects and timestamps."""
    if isinstance(obj, np.generic):
        return obj.item()
    tolist = getattr(obj, "tolist", None)  # numpy arrays of strings or objects, pandas Series
    if callable(tolist):
        return tolist()
    to_dict = getattr(obj, "to_dict", None)  # a DataFrame output: one record per row
    if callable(to_dict):
        return to_dict(orient="records")
    isoformat = getattr(obj, "isoformat", None)  # pandas timestamps, dates
    if callable(isoformat):
        return isoformat()
    raise TypeError(f"{type(obj).__name__} cannot be written as JSON")


def dumps(obj):
    return orjson.dumps(obj, option=_OPTIONS, default=_default)


loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
JSONEncodeError = orjson.JSONEncodeError
