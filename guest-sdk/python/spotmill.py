"""Write Spotmill analyses in Python (built into a component by componentize-py).

An analysis subclasses :class:`Analysis` and writes ``map``, ``merge`` and ``publish``;
this module implements the WIT world ``analysis`` (``wit/analysis.wit``) around it::

    import spotmill

    class OsCount(spotmill.Analysis):
        def map(self, sub, partial):
            payload = spotmill.parse(sub.json)     # validate first (raises ValueError) ...
            os = payload.info["OS"] or "unknown"
            partial[os] = partial.get(os, 0) + 1   # ... then mutate
        def merge(self, into, other):
            for k, v in other.items():
                into[k] = into.get(k, 0) + v
            return into
        def publish(self, partial):
            return [spotmill.json_file("os.json", partial, sort_keys=True)]

    Mapper, Reducer = spotmill.export(OsCount)   # the names componentize-py looks for

Build: ``componentize-py -d wit -w analysis componentize MODULE -p guest-sdk/python``
(``scripts/build-guests-python.sh``), where ``MODULE`` is the analysis module (e.g.
``os_distribution``), which must define ``Mapper`` and ``Reducer`` at its top level.

What the SDK does for each WIT function (the same contract as the Rust SDK, guest-sdk/):

- ``setup(params)``: parses ``params`` as JSON (the empty string stands for ``None``),
  makes a fresh analysis and calls :meth:`Analysis.setup`. The mapper and the reducer each
  hold their own analysis object. A call without a ``setup`` first does ``setup("")``.
- ``map(batch)``: calls :meth:`Analysis.map` on every submission with the instance's
  partial. A submission whose ``map`` raises ``ValueError`` (JSON errors,
  :class:`Reject`, ``UnicodeDecodeError`` are all ``ValueError``) is reported as a record
  error with the exception's text. **It must leave the partial unchanged**: validate and
  extract first, then mutate. Any other exception is a bug: it traps the instance, like a
  panic in Rust, and the host drops it.
- ``flush()``: encodes the partial (:meth:`Analysis.encode`, compact JSON by default) and
  starts a new empty one; returns ``b""`` if no submission was mapped since the last flush.
- ``merge(partials)``: decodes each (``b""`` is :meth:`Analysis.empty`), folds them with
  :meth:`Analysis.merge` and encodes the result; ``b""`` if every input is empty.
- ``publish(partial)``: decodes it and calls :meth:`Analysis.publish`; output paths are
  checked (relative, ``/``-separated, no empty, ``.`` or ``..`` segment).
"""

import json
from decimal import Decimal

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import OutputFile, RecordError

__all__ = [
    "Analysis",
    "Reject",
    "Payload",
    "parse",
    "json_file",
    "export",
    "OutputFile",
]


class Reject(ValueError):
    """Raise it from ``map`` to reject a submission with a message."""


class Analysis:
    """Base class of an analysis. Override ``map``, ``merge`` and ``publish``; the rest
    has defaults (partial = ``dict``, encoded as compact JSON)."""

    def setup(self, params):
        """Called once per instance with the job's parameters (``None`` when there are
        none). Raise ``ValueError`` to refuse them."""

    def empty(self):
        """A new empty partial (the identity of ``merge``). Default: ``{}``."""
        return {}

    def map(self, sub, partial):
        """Adds one submission (``sub.id``, ``sub.dimensions``, ``sub.json`` bytes) to
        ``partial`` in place. Raise ``ValueError`` to reject it, before any change."""
        raise NotImplementedError

    def merge(self, into, other):
        """Merges ``other`` into ``into`` and returns the result (``into`` may be
        changed). Must be associative and commutative with ``empty()`` as identity."""
        raise NotImplementedError

    def publish(self, partial):
        """Returns the files to publish: a list of ``OutputFile`` (see :func:`json_file`)."""
        raise NotImplementedError

    def encode(self, partial):
        """Partial -> bytes. Default: compact JSON (dict keys must be strings)."""
        return json.dumps(partial, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def decode(self, data):
        """Bytes made by :meth:`encode` -> partial (never called with ``b""``)."""
        return json.loads(data.decode("utf-8"))


# --- JSON and telemetry helpers ---------------------------------------------------------

#: The ``info`` fields :func:`parse` reads (as the Rust SDK's ``telemetry::Info``).
INFO_FIELDS = (
    "OS",
    "version",
    "arch",
    "appName",
    "appVersion",
    "appBuildID",
    "appUpdateChannel",
    "reason",
    "platformBuildID",
    "locale",
)


_TOP_FIELDS_STR = ("ver", "info", "histograms", "simpleMeasurements")
_TOP_FIELDS = tuple(name.encode() for name in _TOP_FIELDS_STR)


def _no_constant(name):
    raise Reject(f"submission is not valid JSON: {name} is not JSON")


def _f64_text(x):
    """A float as Rust's ``f64`` Display writes it: shortest round-trip digits, never an
    exponent (``1e21`` -> ``1000000000000000000000``, ``1.0`` -> ``1``)."""
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def scalar_text(value, field="value"):
    """A JSON scalar as text, the way the Rust SDK reads ``info`` fields: a string as it
    is, a number or boolean as its JSON text, ``None`` for ``null``. Objects and arrays
    raise :class:`Reject`."""
    if value is None:
        return None
    if isinstance(value, str):
        # json.loads keeps a lone surrogate (`"\ud800"`); serde_json rejects it.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject(f"field `{field}`: lone surrogate in a \\u escape") from None
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # serde_json reads integers outside i64/u64 as f64.
        if -(1 << 63) <= value < (1 << 64):
            return str(value)
        return _f64_text(float(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            # json.loads reads 1e400 as inf; serde_json rejects it.
            raise Reject(f"field `{field}`: number out of range")
        return _f64_text(value)
    raise Reject(f"field `{field}`: expected a string, a number, a boolean or null")


class Payload:
    """A parsed submission: ``doc`` is the whole JSON object (a ``dict``); ``info`` maps
    each name of :data:`INFO_FIELDS` to its text (see :func:`scalar_text`) or ``None``."""

    __slots__ = ("doc", "info")

    def __init__(self, doc, info):
        self.doc = doc
        self.info = info


def parse(data):
    """Parses a submission's JSON (bytes). The top level must be an object, its ``info``
    (if present and not ``null``) an object whose :data:`INFO_FIELDS` are scalars or
    ``null``. Raises :class:`Reject` (a ``ValueError``) saying why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject(f"submission is not UTF-8: {e}") from None
    if not text.lstrip(" \t\r\n").startswith("{"):
        raise Reject("submission is not a JSON object")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Reject("submission is not valid JSON: nested too deeply") from None
    except Reject:
        raise
    except ValueError as e:
        raise Reject(f"submission is not valid JSON: {e}") from None
    # serde_json rejects a repeated field of the Rust SDK's payload; json.loads keeps the
    # last. Rare, so checked only when one of the names appears twice in the bytes.
    if any(data.count(b'"%s"' % name) > 1 for name in _TOP_FIELDS):
        pairs = json.loads(text, object_pairs_hook=lambda p: p)
        names = [k for k, _ in pairs if k in _TOP_FIELDS_STR]
        for name in names:
            if names.count(name) > 1:
                raise Reject(f"submission is not valid JSON: duplicate field `{name}`")
    raw_info = doc.get("info")
    info = dict.fromkeys(INFO_FIELDS)
    if raw_info is not None:
        if not isinstance(raw_info, dict):
            raise Reject("submission's `info` is not an object")
        for field in INFO_FIELDS:
            if field in raw_info:
                info[field] = scalar_text(raw_info[field], field)
    return Payload(doc, info)


def json_file(path, value, sort_keys=False):
    """An output file holding ``value`` as pretty JSON (two-space indent, ``": "``, a
    final newline; non-ASCII kept as UTF-8): the same bytes as the Rust SDK's
    ``json_file`` for the same value. ``sort_keys=True`` sorts object keys (code point
    order, which is the byte order of a Rust ``BTreeMap<String, _>``)."""
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=sort_keys)
    return OutputFile(path=path, contents=(text + "\n").encode("utf-8"))


def check_output_path(path):
    """Raises ``ValueError`` unless ``path`` is relative, ``/``-separated, without empty,
    ``.`` or ``..`` segments."""
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(seg in ("", ".", "..") for seg in path.split("/"))
    )
    if bad:
        raise ValueError(
            f"invalid output path {path!r}: must be relative, `/`-separated, "
            "without empty, `.` or `..` segments"
        )


# --- The WIT exports --------------------------------------------------------------------


def _parse_params(params):
    if not params.strip():
        return None
    try:
        return json.loads(params)
    except ValueError as e:
        raise ValueError(f"the job's params are not valid JSON: {e}") from None


class _Side:
    """One side's state (mapper or reducer): the analysis, or the error of its setup."""

    def __init__(self, cls):
        self.cls = cls
        self.analysis = None
        self.error = None
        self.partial = None
        self.dirty = False

    def setup(self, params, implicit=False):
        self.analysis, self.error = None, None
        try:
            analysis = self.cls()
            analysis.setup(_parse_params(params))
        except ValueError as e:
            self.error = f'implicit setup("") failed: {e}' if implicit else str(e)
            return self.error
        self.analysis = analysis
        self.partial = analysis.empty()
        self.dirty = False
        return None

    def get(self):
        """The analysis, doing an implicit setup; raises Err if setup failed."""
        if self.analysis is None and self.error is None:
            self.setup("", implicit=True)
        if self.error is not None:
            raise Err(f"setup failed: {self.error}")
        return self.analysis


def export(cls):
    """Makes the ``Mapper`` and ``Reducer`` classes componentize-py exports for the
    analysis class ``cls``: ``Mapper, Reducer = spotmill.export(MyAnalysis)`` at the top
    level of the app module."""

    mapper = _Side(cls)
    reducer = _Side(cls)

    def decode(analysis, data):
        return analysis.empty() if len(data) == 0 else analysis.decode(bytes(data))

    class Mapper(exports.Mapper):
        def setup(self, params):
            error = mapper.setup(params)
            if error is not None:
                raise Err(error)

        def map(self, batch):
            try:
                analysis = mapper.get()
            except Err as e:
                return [RecordError(index=i, message=e.value) for i in range(len(batch))]
            partial = mapper.partial
            errors = []
            for index, sub in enumerate(batch):
                try:
                    analysis.map(sub, partial)
                except ValueError as e:
                    errors.append(RecordError(index=index, message=str(e)))
            if len(errors) < len(batch):
                mapper.dirty = True
            return errors

        def flush(self):
            analysis = mapper.get()
            partial, dirty = mapper.partial, mapper.dirty
            mapper.partial, mapper.dirty = analysis.empty(), False
            if not dirty:
                return b""
            try:
                return analysis.encode(partial)
            except ValueError as e:
                raise Err(f"cannot encode the partial: {e}") from None

    class Reducer(exports.Reducer):
        def setup(self, params):
            error = reducer.setup(params)
            if error is not None:
                raise Err(error)

        def merge(self, partials):
            analysis = reducer.get()
            if all(len(p) == 0 for p in partials):
                return b""
            count = len(partials)
            acc = analysis.empty()
            for index, data in enumerate(partials):
                try:
                    acc = analysis.merge(acc, decode(analysis, data))
                except ValueError as e:
                    raise Err(f"partial {index} (of {count}): {e}") from None
            try:
                return analysis.encode(acc)
            except ValueError as e:
                raise Err(f"cannot encode the partial: {e}") from None

        def publish(self, partial):
            analysis = reducer.get()
            try:
                value = decode(analysis, partial)
            except ValueError as e:
                raise Err(f"the final partial: {e}") from None
            try:
                files = analysis.publish(value)
                for f in files:
                    check_output_path(f.path)
            except ValueError as e:
                raise Err(str(e)) from None
            return files

    return Mapper, Reducer
