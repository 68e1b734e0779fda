"""A request's form or query fields, one value each: every reader of fields asks here."""

from __future__ import annotations

from collections.abc import Collection

from werkzeug.datastructures import MultiDict

from api.errors import ApiError


def one_each(values: MultiDict, repeatable: Collection[str] = ()) -> dict[str, str]:
    """``values`` as a plain dict. A field given twice is refused (422 ``invalid_parameter``): the first value
    silently won, so a client appending an override (``scale=2&scale=4``) got, and paid for, what it had
    overridden, and an invalid second value went unchecked. A ``repeatable`` field's values are joined with commas,
    as its comma-separated form reads."""
    for name in values:
        count = len(values.getlist(name))
        if count > 1 and name not in repeatable:
            raise ApiError("invalid_parameter", f"{name} was given {count} times; give it once", field=name)
    return {name: ",".join(values.getlist(name)) if name in repeatable else values[name] for name in values}
