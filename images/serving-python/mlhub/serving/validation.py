"""Turn a JSON payload into exactly the input the model wants, or say precisely what is wrong.

Everything that depends only on the signature (column order, dtypes, category codes, the pandas
column index) is computed once when the ``Schema`` is built, so a request does no schema work.
Conversion is optimistic: one ``numpy.asarray`` over the rows, then a dtype check. Only when
that check fails do we walk the values to name the first bad row and column, so good requests
pay for one array build and bad ones get a precise message.

Accepted payloads (``POST /v1/predict``)::

    {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}                rows, in signature order
    {"instances": [{"sepal_length": 5.1, ...}, ...]}           records, keyed by input name
    {"columns": ["sepal_length", ...], "data": [[5.1, ...]]}   columnar, any column order

and, through ``arrowio``, Arrow or Parquet tables: one numpy array per column (``from_arrays``).

JSON ``null`` means a missing value in number (NaN), string and category inputs. A model that
does not accept missing numbers (``refuse_missing``: the serving runtime asks the model, see
``model.accepts_missing``) gets a 400 naming the first row and column with one instead of a
NaN it would fail on or, worse, silently predict from. Booleans are read as 0/1 in number
inputs (numpy's rule); strings are never read as numbers.
"""

from itertools import chain
from operator import itemgetter

import numpy as np

from mlhub.bundle.signature import TYPE_TABLE
from mlhub.errors import InvalidInput

# the signature types (mlhub.bundle.signature's table): numpy dtype and, in words, what each takes
_NUMPY = {typ: np.dtype(spec["numpy"]) for typ, spec in TYPE_TABLE.items()}
_EXPECTED = {typ: spec["expected"] for typ, spec in TYPE_TABLE.items()}
_SHOW = 5  # how many names a message lists before "..."


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _names(items):
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:_SHOW])
    return shown + (f" ... ({len(items)} in all)" if len(items) > _SHOW else "")


def _value_ok(typ, value):
    """Whether one JSON value fits an input type (the slow path, used to explain failures)."""
    if typ in ("double", "float"):
        return value is None or type(value) in (int, float, bool)
    if typ in ("long", "integer"):
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is bool:
            return True
        bits = 63 if typ == "long" else 31
        return type(value) is int and -(2**bits) <= value < 2**bits
    if typ == "boolean":
        return type(value) is bool
    return value is None or type(value) is str


def _coerce(arr, typ):
    """Convert a freshly built array to the numpy dtype of ``typ``; ``None`` if it does not fit.

    ``arr`` comes from ``np.asarray(values)`` with no dtype, so its kind tells what JSON held:
    ``f``/``i``/``b`` numbers or booleans, ``U`` strings, ``O`` a mix (usually nulls).
    """
    kind = arr.dtype.kind
    target = _NUMPY[typ]
    if typ in ("double", "float"):
        if kind in "fiub":
            return arr.astype(target, copy=False)
        if kind == "O" and all(_value_ok(typ, v) for v in arr.flat):
            return np.array(arr, dtype=target)
        return None
    if typ in ("long", "integer"):
        if kind == "f" and np.isfinite(arr).all() and (arr == np.floor(arr)).all():
            arr = arr.astype(np.int64)
            kind = "i"
        if kind in "iub":
            info = np.iinfo(target)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                return None
            return arr.astype(target, copy=False)
        return None
    return arr if kind == "b" else None  # boolean


def _convert(values, typ, ndim):
    """Rows (``ndim`` 2) or one column (``ndim`` 1) of JSON values -> array, or ``None``.

    Strings are checked value by value: numpy would otherwise turn a stray number into its
    text, and a string input should hold strings (or null).
    """
    if typ in ("string", "category"):
        flat = chain.from_iterable(values) if ndim == 2 else values
        if not all(v is None or type(v) is str for v in flat):
            return None
        arr = np.array(values, dtype=object)
        return arr if arr.ndim == ndim else None
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # nested lists of different lengths inside a row
        return None
    return _coerce(arr, typ) if arr.ndim == ndim else None


class Schema:
    """The model's input signature, compiled for fast conversion of request payloads.

    ``kind`` is ``"dataframe"`` (the model wants a pandas DataFrame with named columns) or
    ``"array"`` (a 2-D numpy array). ``to_input(rows)`` is the one place rows become model input.
    """

    def __init__(self, signature, refuse_missing=False):
        self.kind = signature["kind"]
        self.refuse_missing = refuse_missing
        inputs = signature["inputs"]
        self.names = tuple(str(i["name"]) for i in inputs)
        self.types = tuple(i["type"] for i in inputs)
        self.width = len(self.names)
        self.position = {name: j for j, name in enumerate(self.names)}
        self._name_set = frozenset(self.names)
        getter = itemgetter(*self.names)
        self._record_row = getter if self.width > 1 else (lambda r: (getter(r),))
        # One dtype for every column: the whole batch converts in one numpy call.
        self._uniform = self.types[0] if len(set(self.types)) == 1 else None
        if self._uniform == "category":
            self._uniform = None
        self._categories = {}
        for i in inputs:
            if i["type"] == "category":
                levels = [str(level) for level in i.get("levels") or []]
                self._categories[str(i["name"])] = (
                    {level: code for code, level in enumerate(levels)},
                    levels,
                )
        self._pd = None
        if self.kind == "dataframe":
            import pandas as pd

            self._pd = pd
            self._columns = pd.Index(self.names)
            self._dtypes = {
                name: pd.CategoricalDtype(levels)
                for name, (_codes, levels) in self._categories.items()
            }

    # ------------------------------------------------------------ payload shapes

    def from_payload(self, body):
        """``{"instances": ...}`` or ``{"columns", "data"}`` -> (model input, row count)."""
        if not isinstance(body, dict):
            raise InvalidInput(
                f"the body must be a JSON object, not {_json_type(body)}: send "
                '{"instances": [[...], ...]}',
                {"got": _json_type(body)},
            )
        if "instances" in body:
            return self.from_instances(body["instances"])
        if "columns" in body or "data" in body:
            return self.from_columnar(body.get("columns"), body.get("data"))
        hint = ""
        if "inputs" in body:
            hint = " (Open Inference Protocol tensors go to POST /v2/models/<name>/infer)"
        raise InvalidInput(
            'the body has no "instances": send {"instances": [[...], ...]} (rows in the order '
            f'{_names(self.names)}), {{"instances": [{{...}}]}} (records) or '
            f'{{"columns": [...], "data": [[...]]}}{hint}',
            {"keys": list(body)[:_SHOW], "expected_inputs": list(self.names)},
        )

    def from_instances(self, instances):
        if not isinstance(instances, list) or not instances:
            raise InvalidInput(
                '"instances" must be a non-empty list of rows (lists) or records (objects), '
                f"got {_json_type(instances) if instances != [] else 'an empty list'}",
                {"field": "instances"},
            )
        first = instances[0]
        if type(first) is dict:
            return self.from_records(instances)
        if type(first) is list:
            return self.from_rows(instances)
        if self.width == 1:
            return self.from_rows([[v] for v in instances])
        raise InvalidInput(
            f"instance 0 is {_json_type(first)}; each instance must be a row (a list of "
            f"{self.width} values in the order {_names(self.names)}) or a record (an object "
            "keyed by input name)",
            {"row": 0, "got": _json_type(first)},
        )

    def from_records(self, records):
        expected = self._name_set
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                raise InvalidInput(
                    f"instance {i} is {_json_type(rec)}, but instance 0 is a record: send all "
                    "instances as records (objects) or all as rows (lists)",
                    {"row": i, "got": _json_type(rec)},
                )
            if rec.keys() != expected:
                missing = [n for n in self.names if n not in rec]
                unknown = [k for k in rec if k not in expected]
                parts = []
                if missing:
                    parts.append(f"misses {_names(missing)}")
                if unknown:
                    parts.append(f"has unknown keys {_names(unknown)}")
                raise InvalidInput(
                    f"record {i} {' and '.join(parts)}; the model's inputs are "
                    f"{_names(self.names)}",
                    {"row": i, "missing": missing, "unknown": unknown},
                )
        return self.to_input(list(map(self._record_row, records))), len(records)

    def from_rows(self, rows):
        width = self.width
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != width:
                if type(row) is not list:
                    got = _json_type(row)
                    message = f"row {i} is {got}, but instance 0 is a row"
                else:
                    got = len(row)
                    message = f"row {i} has {got} values, but the model expects {width}"
                raise InvalidInput(
                    f"{message}: each row lists the inputs {_names(self.names)} in this order",
                    {"row": i, "expected": width, "got": got},
                )
        return self.to_input(rows), len(rows)

    def from_columnar(self, columns, data):
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput(
                '"columns" must be a list of input names, with "data" a list of rows',
                {"field": "columns"},
            )
        if not isinstance(data, list) or not data:
            raise InvalidInput('"data" must be a non-empty list of rows', {"field": "data"})
        if columns != list(self.names):
            missing = [n for n in self.names if n not in columns]
            unknown = [c for c in columns if c not in self.position]
            if missing or unknown or len(columns) != self.width:
                raise InvalidInput(
                    f'"columns" must name each input once: missing {_names(missing) or "none"}, '
                    f"unknown {_names(unknown) or 'none'}; the inputs are {_names(self.names)}",
                    {"missing": missing, "unknown": unknown},
                )
            width = self.width
            for i, row in enumerate(data):
                if type(row) is not list or len(row) != width:
                    raise InvalidInput(
                        f"data row {i} must be a list of {width} values, one per column",
                        {"row": i, "expected": width},
                    )
            return self._reordered(data, [columns.index(n) for n in self.names]), len(data)
        return self.from_rows(data)

    def _reordered(self, data, order):
        """Rows whose columns come in another ``order`` -> model input, reordered by numpy."""
        if self._uniform is not None:
            block = _convert(data, self._uniform, 2)
            if block is None:
                raise self._explain([[row[k] for k in order] for row in data])
            return self._wrap(block[:, order])
        values = list(zip(*data, strict=True))
        return self._assemble([self._column(j, values[k]) for j, k in enumerate(order)])

    def from_arrays(self, arrays):
        """``{name: 1-D numpy array}`` (an Arrow or Parquet table's columns) -> model input.

        Numeric columns are checked and cast whole; strings and categories go through the
        same per-value checks as JSON, so every body format follows the same input rules.
        """
        self._same_names(arrays)
        columns = []
        for j, name in enumerate(self.names):
            values = arrays[name]
            if self.types[j] in ("string", "category") or values.dtype.kind not in "fiub":
                columns.append(self._column(j, values.tolist()))
                continue
            converted = _coerce(values, self.types[j])
            if converted is None:
                raise self._explain([(v,) for v in values.tolist()], j)
            columns.append(converted)
        return self._assemble(columns)

    def from_columns(self, columns):
        """``{name: [values...]}`` (one list per input, e.g. v2 tensors) -> model input."""
        self._same_names(columns)
        lengths = {len(columns[n]) for n in self.names}
        if len(lengths) != 1 or 0 in lengths:
            raise InvalidInput(
                "every input must hold the same, non-zero number of values",
                {"lengths": {n: len(columns[n]) for n in self.names}},
            )
        rows = [list(r) for r in zip(*(columns[n] for n in self.names), strict=True)]
        return self.to_input(rows), len(rows)

    def _same_names(self, columns):
        missing = [n for n in self.names if n not in columns]
        unknown = [c for c in columns if c not in self.position]
        if missing or unknown:
            raise InvalidInput(
                f"the inputs must be named {_names(self.names)}: missing "
                f"{_names(missing) or 'none'}, unknown {_names(unknown) or 'none'}",
                {"missing": missing, "unknown": unknown},
            )

    # ------------------------------------------------------------ conversion

    def to_input(self, rows):
        """Rows in signature order -> the numpy array or DataFrame the model was trained on."""
        if self._uniform is not None:
            block = _convert(rows, self._uniform, 2)
            if block is None:
                raise self._explain(rows)
            return self._wrap(block)
        return self._assemble(
            [self._column(j, values) for j, values in enumerate(zip(*rows, strict=True))]
        )

    def _wrap(self, block):
        """A 2-D block in signature order -> model input."""
        if self.refuse_missing and block.dtype.kind == "f" and (gaps := np.isnan(block)).any():
            i, j = np.argwhere(gaps)[0]
            raise self._missing(int(i), int(j))
        if self._pd is None:
            return block
        return self._pd.DataFrame(block, columns=self._columns, copy=False)

    def _assemble(self, columns):
        """One converted array per input, in signature order -> model input."""
        if self.refuse_missing:
            for j, column in enumerate(columns):
                if column.dtype.kind == "f" and (gaps := np.isnan(column)).any():
                    raise self._missing(int(np.flatnonzero(gaps)[0]), j)
        if self._pd is None:
            return np.column_stack(columns)
        return self._pd.DataFrame(dict(zip(self.names, columns, strict=True)), copy=False)

    def _column(self, j, values):
        name, typ = self.names[j], self.types[j]
        if typ == "category":
            codes, levels = self._categories[name]
            out = np.empty(len(values), dtype=np.int32)
            for i, value in enumerate(values):
                code = -1 if value is None else codes.get(value) if type(value) is str else None
                if code is None:
                    raise self._bad_value(i, j, value, levels)
                out[i] = code
            if self._pd is None:
                return np.array(values, dtype=object)
            return self._pd.Categorical.from_codes(out, dtype=self._dtypes[name])
        converted = _convert(values, typ, 1)
        if converted is None:
            raise self._explain([(v,) for v in values], j)
        return converted

    def _missing(self, i, j):
        name = self.names[j]
        return InvalidInput(
            f"row {i}, input {name!r}: a missing value (null), and this model does not accept "
            "missing values: send a number, or publish a model that fills them in (such as a "
            "scikit-learn Pipeline that starts with a SimpleImputer)",
            {"row": i, "column": name, "got": None},
        )

    def _explain(self, rows, offset=0):
        """The error for the first value that does not fit its input (rows failed to convert)."""
        for i, row in enumerate(rows):
            for j, value in enumerate(row, offset):
                if not _value_ok(self.types[j], value):
                    return self._bad_value(i, j, value)
        return InvalidInput(
            f"the values could not be read as {_names(sorted(set(self.types)))}",
            {"types": sorted(set(self.types))},
        )

    def _bad_value(self, i, j, value, levels=None):
        name, typ = self.names[j], self.types[j]
        shown = repr(value) if not isinstance(value, (list, dict)) else _json_type(value)
        if levels is not None and type(value) is str:
            expected = f"one of the levels {_names(levels)}"
        elif value is None:
            expected = f"{_EXPECTED[typ]} ({typ}; null is not allowed here)"
        else:
            expected = f"{_EXPECTED[typ]} ({typ})"
        return InvalidInput(
            f"row {i}, input {name!r}: expected {expected}, got {_json_type(value)} {shown}",
            {"row": i, "column": name, "expected": typ, "got": _json_type(value)},
        )


class UntypedSchema:
    """For bundles published without an example: no signature, so pass data through as-is.

    Rows become a numpy array, records and columnar data a DataFrame; the model itself is the
    only judge of the input (its errors still come back as 4xx with its message).
    """

    kind = None
    names = ()
    types = ()

    def from_payload(self, body):
        if isinstance(body, dict) and isinstance(body.get("instances"), list) and body["instances"]:
            instances = body["instances"]
            if all(type(r) is dict for r in instances):
                import pandas as pd

                return pd.DataFrame.from_records(instances), len(instances)
            return self._array(instances), len(instances)
        if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
            import pandas as pd

            try:
                return pd.DataFrame(body["data"], columns=body.get("columns")), len(body["data"])
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f'"columns" and "data" do not fit together: {exc}') from exc
        raise InvalidInput(
            'send {"instances": [[...], ...]} (rows) or {"instances": [{...}]} (records), or '
            '{"columns": [...], "data": [[...]]}',
            {"field": "instances"},
        )

    def from_columns(self, columns):
        import pandas as pd

        try:
            frame = pd.DataFrame(columns)
        except ValueError as exc:
            raise InvalidInput(f"the inputs do not fit together as columns: {exc}") from exc
        return frame, len(frame)

    def from_rows(self, rows):
        return self._array(rows), len(rows)

    @staticmethod
    def _array(rows):
        try:
            arr = np.asarray(rows)
        except ValueError as exc:
            raise InvalidInput(
                f"the rows do not form a table ({exc}): give every row the same length",
                {"field": "instances"},
            ) from exc
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
        return arr.reshape(len(arr), -1) if arr.ndim == 1 else arr


def schema_for(signature, refuse_missing=False):
    """The compiled schema for a manifest signature (``None``: untyped pass-through);
    ``refuse_missing``: a missing number is a 400 (the model does not accept them)."""
    return Schema(signature, refuse_missing) if signature else UntypedSchema()
