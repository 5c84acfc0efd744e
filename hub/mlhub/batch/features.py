"""From a source chunk to the model's inputs: which columns, in which order, of which type.

The model's signature decides. Inputs are matched by name; a model fitted on a bare array has
synthetic names (``x0``, ``x1``...), so its inputs are matched by position to ``--columns``
(or, without it, to every column that is not a key). Columns are cast to the signature's types
here, once per chunk, because some stores hold only text (Redis) or loose types (JSON Lines
integers for a float input). A value that cannot be converted rejects its row on the client,
with the same kind of reason the server would give; the server still judges everything else.
"""

import pyarrow as pa
import pyarrow.compute as pc

from mlhub.bundle.signature import TYPE_TABLE

from .errors import InvalidBatch

# the signature types (mlhub.bundle.signature's table): Arrow type and what each takes in words
_ARROW = {typ: pa.type_for_alias(spec["arrow"]) for typ, spec in TYPE_TABLE.items()}
_EXPECTED = {typ: spec["expected"] for typ, spec in TYPE_TABLE.items()}
_TRUE = {"true": True, "1": True, "false": False, "0": False}


def _parse(value, typ):
    """One value as ``typ`` (the slow path, for columns that did not cast whole)."""
    if typ in ("double", "float"):
        if isinstance(value, str):
            return float(value.strip())
        return float(value)
    if typ in ("long", "integer"):
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError(value)
            number = int(number)
        return int(number)
    if typ == "boolean":
        if isinstance(value, bool):
            return value
        return _TRUE[str(value).strip().lower()]
    return str(value)


class Features:
    """Picks and types the model's input columns of each chunk."""

    def __init__(self, signature, *, keys, columns=None):
        self.inputs = [(i["name"], i["type"]) for i in (signature or {}).get("inputs") or []]
        self.positional = bool(signature) and signature.get("kind") == "array"
        self.keys = list(keys)
        self.columns = list(columns) if columns else None

    def _sources(self, table):
        """The source column for each input, in input order."""
        names = table.column_names
        candidates = self.columns or [c for c in names if c not in self.keys]
        unknown = [c for c in candidates if c not in names]
        if unknown:
            raise InvalidBatch(
                f"--columns names {unknown}, which the source does not have; it has {names}",
                {"unknown": unknown},
            )
        if not self.inputs:
            return candidates
        wanted = [name for name, _ in self.inputs]
        by_name = not self.columns or set(self.columns) == set(wanted)
        if by_name and all(name in names for name in wanted):
            return wanted
        if (self.columns or self.positional) and len(candidates) == len(wanted):
            return candidates  # by position: a bare-array model, or columns the user picked
        missing = [n for n in wanted if n not in names]
        how = (
            f"the model takes {len(wanted)} unnamed inputs, and {len(candidates)} columns "
            f"are left besides the keys {self.keys}: pick them, in order, with --columns"
            if self.positional
            else f"the source lacks {missing}; rename them in the query, or pick the columns "
            "in the model's order with --columns"
        )
        raise InvalidBatch(
            f"the source's columns {names} do not fit the model's inputs {wanted}: {how}",
            {"inputs": wanted, "columns": names},
        )

    def prepare(self, table):
        """``(features, raw, bad)``: the model's input table, the same columns as read, and
        ``{row: reason}`` for rows whose values could not be converted."""
        sources = self._sources(table)
        raw = table.select(sources)
        if not self.inputs:
            return raw, raw, {}
        arrays, bad = [], {}
        for (_, typ), source in zip(self.inputs, sources, strict=True):
            arrays.append(self._cast(table.column(source), source, typ, bad))
        return pa.Table.from_arrays(arrays, names=[n for n, _ in self.inputs]), raw, bad

    @staticmethod
    def _cast(column, name, typ, bad):
        """``column`` as ``typ``; values that do not convert become null and mark their row
        in ``bad`` with a reason naming the source column ``name``."""
        target = _ARROW.get(typ)
        if target is None or column.type == target:
            return column
        textual = pa.types.is_string(column.type) or pa.types.is_dictionary(column.type)
        if typ in ("string", "category") and not textual:
            return column  # the server explains a number sent for a string input
        try:
            return pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        values = []
        for row, value in enumerate(column.to_pylist()):
            if value is None:
                values.append(None)
                continue
            try:
                values.append(_parse(value, typ))
            except (ValueError, KeyError, TypeError, OverflowError):
                values.append(None)
                bad.setdefault(row, f"{name}: {value!r} is not {_EXPECTED.get(typ, typ)}")
        return pa.array(values, target)
