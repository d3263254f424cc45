"""JSON from outside the device, with an error that says where it broke."""

from __future__ import annotations

import json
from typing import Any


def decode_json(raw: str | bytes | bytearray, error: type[Exception]) -> Any:
    """``json.loads``, raising ``error`` with the line and column of the first problem."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos})") from None
    except UnicodeDecodeError as exc:
        raise error(f"not valid JSON: byte {exc.start} cannot be decoded ({exc.reason})") from None
    except RecursionError:
        # No real answer nests a thousand deep; a broken or hostile one must not crash the caller.
        raise error("not valid JSON: nested too deeply") from None
