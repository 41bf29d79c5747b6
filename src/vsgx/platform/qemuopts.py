"""QEMU's generic option syntaxes, reproduced literally, and the error type they raise.

QEMU 7.2 parses ``-option argument`` strings with three different engines, and vsgx follows
each one where QEMU uses it:

* **QemuOpts** (``util/qemu-option.c``): ``name=value`` pairs separated by commas, ``,,`` for
  a literal comma in a value, an optional *implied* first name (``-numa node`` means
  ``type=node``), bare ``flag`` meaning ``flag=on`` and ``noflag`` meaning ``flag=off``.
  Every occurrence of a name is kept; consumers take the last one, or all of them for lists.
  Used by ``-object`` (non-JSON), ``-numa``, ``-m``, ``-name`` and the ``-qmp`` socket
  options.
* **keyval** (``util/keyval.c``): dotted keys building nested dictionaries and, from
  all-numeric key fragments, lists (``sgx-epc.0.memdev=mem1``). Used by ``-machine`` and
  ``-smp``.
* **JSON** (``qobject/json-parser.c``): ``-object '{"qom-type": ...}'``.

:class:`QemuOptionError` carries QEMU's exact message (with the option text QEMU puts in
front of it when the error is reported while that option is being parsed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

PROG = "qemu-system-x86_64"
"""The program name QEMU puts before every error line (``util/qemu-error.c``
``error_vprintf_unless_qmp`` via ``error_report``)."""


class QemuOptionError(ValueError):
    """A command line QEMU (or vsgx) refuses.

    ``detail`` is the error text; ``location`` is the option as typed (``-object
    memory-backend-ram,id=a``) when QEMU reports the error while that option is current
    (``util/qemu-error.c`` ``print_loc``), else None. ``message`` joins them the way QEMU
    prints them; ``hint`` holds the extra lines QEMU prints unprefixed after the message
    (``error_append_hint``); ``also`` holds further messages QEMU reports right after this one
    (with the same location).
    """

    def __init__(self, detail: str, *, location: str | None = None, hint: str = "",
                 also: tuple[str, ...] = ()) -> None:
        self.detail = detail
        self.location = location
        self.hint = hint
        self.also = also
        self.message = f"{location}: {detail}" if location else detail
        super().__init__(self.message)

    def at(self, location: str) -> QemuOptionError:
        """The same error reported while ``location`` is the current option."""
        return QemuOptionError(self.detail, location=location, hint=self.hint, also=self.also)

    def render(self, prog: str = PROG) -> str:
        """Exactly what QEMU writes to stderr before exiting with status 1."""
        lines = [f"{prog}: {self.message}"]
        if self.hint:
            lines.append(self.hint.rstrip("\n"))
        where = f"{self.location}: " if self.location else ""
        lines.extend(f"{prog}: {where}{line}" for line in self.also)
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# C number parsing, as QEMU's helpers see it


_C_SPACE = " \t\n\v\f\r"


def c_strtoull(text: str, base: int = 0) -> tuple[int, int] | None:
    """C ``strtoull(text, &end, base)`` for base 0, 10 or 16: returns (value, end index), or
    None when no digits were consumed. ``value`` may exceed 2**64-1 (C's ``ERANGE``); a
    leading ``-`` negates modulo 2**64 as C does."""
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < len(text) and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    has_hex_prefix = (text[i:i + 2] in ("0x", "0X") and i + 2 < len(text)
                      and text[i + 2] in "0123456789abcdefABCDEF")
    if base in (0, 16) and has_hex_prefix:
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if text[i:i + 1] == "0" else 10
    digits = {16: "0123456789abcdefABCDEF", 10: "0123456789", 8: "01234567"}[base]
    start = i
    while i < len(text) and text[i] in digits:
        i += 1
    if i == start:
        return None
    value = int(text[start:i], base)
    if negative and value <= (1 << 64) - 1:
        value = (-value) & ((1 << 64) - 1)
    return value, i


def parse_uint(text: str) -> tuple[int, int] | None:
    """``parse_uint()`` (``util/cutils.c``): ``strtoull`` base 0 that rejects a leading ``-``
    and values of 2**64 and above; returns (value, end index) or None."""
    parsed = c_strtoull(text)
    if parsed is None or parsed[0] > (1 << 64) - 1 or text.lstrip(_C_SPACE).startswith("-"):
        return None
    return parsed


def parse_int64(text: str) -> int | None:
    """``qemu_strtoi64(text, NULL, 0, ...)`` (``util/cutils.c``): the whole string must be an
    int64 in C base-0 notation; None otherwise."""
    match = re.fullmatch(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not match:
        return None
    body = match.group(2)
    value = int(body, 16) if body[:2] in ("0x", "0X") else int(body, 8) if body[0] == "0" \
        else int(body)
    value = -value if match.group(1) == "-" else value
    return value if -(1 << 63) <= value < (1 << 63) else None


def parse_bool(name: str, value: str) -> bool:
    """``qapi_bool_parse()`` (``qapi/qapi-util.c``): on/yes/true/y and off/no/false/n, case
    sensitive; anything else is ``Parameter 'NAME' expects 'on' or 'off'``."""
    if value in ("on", "yes", "true", "y"):
        return True
    if value in ("off", "no", "false", "n"):
        return False
    raise QemuOptionError(f"Parameter '{name}' expects 'on' or 'off'")


# ---------------------------------------------------------------------------------------------
# QemuOpts


class QemuOpt(NamedTuple):
    """One ``name=value`` of a QemuOpts string; ``flag`` marks the short ``name``/``noname``
    form (value ``on``/``off``), which QEMU 7.2 still accepts with a deprecation warning."""

    name: str
    value: str
    flag: bool = False


def _opt_value(params: str, pos: int) -> tuple[str, int]:
    """``get_opt_value()``: read up to a single comma, turning ``,,`` into ``,``."""
    out: list[str] = []
    while pos < len(params):
        ch = params[pos]
        if ch == ",":
            if params[pos + 1:pos + 2] != ",":
                break
            pos += 1
        out.append(ch)
        pos += 1
    return "".join(out), pos


def split_opts(params: str, implied: str | None = None) -> list[QemuOpt]:
    """Split a QemuOpts string exactly as ``opts_do_parse()``/``get_opt_name_value()``
    (``util/qemu-option.c``) do. Names end at the first ``=`` or ``,`` and are never
    unescaped; values end at a single ``,``. The first element is named ``implied`` when it
    has no ``=`` before its first comma. A trailing single comma ends the list."""
    opts: list[QemuOpt] = []
    pos = 0
    firstname = implied
    while pos < len(params):
        rest = params[pos:]
        end = pos + len(re.split(r"[=,]", rest, maxsplit=1)[0])
        if end >= len(params) or params[end] != "=":
            if firstname is not None:
                value, pos = _opt_value(params, pos)
                opts.append(QemuOpt(firstname, value))
            else:
                name = params[pos:end]
                pos = end
                if name.startswith("no"):
                    opts.append(QemuOpt(name[2:], "off", True))
                else:
                    opts.append(QemuOpt(name, "on", True))
        else:
            name = params[pos:end]
            value, pos = _opt_value(params, end + 1)
            opts.append(QemuOpt(name, value))
        firstname = None
        if pos < len(params):  # at a separating comma
            pos += 1
    return opts


def format_opts(opts: Iterable[tuple[str, str]], implied: str | None = None) -> str:
    """The inverse of :func:`split_opts` for explicit ``name=value`` pairs: commas in values
    are doubled; the first pair is written bare when it is the implied name and that text
    cannot be misread as ``name=value`` (it is not empty and has no ``=`` before its first
    comma)."""
    parts: list[str] = []
    for index, (name, value) in enumerate(opts):
        escaped = value.replace(",", ",,")
        if index == 0 and name == implied and value and "=" not in value.split(",", 1)[0]:
            parts.append(escaped)
        else:
            parts.append(f"{name}={escaped}")
    return ",".join(parts)


IDENTIFIER_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."
"""The hint ``qemu_opts_create()`` and ``user_creatable_add_type()`` append to a bad id."""


def id_wellformed(ident: str) -> bool:
    """``id_wellformed()`` (``util/id.c``): a letter, then letters, digits, ``-._``."""
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", ident) is not None


def parse_opts_id(params: str) -> str | None:
    """``opts_parse_id()``: the first ``id=`` value, found by a parse with no implied name."""
    for opt in split_opts(params):
        if opt.name == "id":
            return opt.value
    return None


def parse_uint_list(name: str, values: Iterable[str]) -> tuple[int, ...]:
    """An integer list as the options visitor reads it (``qapi/opts-visitor.c``
    ``opts_type_uint64`` in list mode, then ``visit_type_uint16``): each occurrence is ``N``
    or an inclusive range ``N-M`` (M >= N, under 65536 values), C base-0 numbers; each
    element must fit uint16 (the element has no name, so QEMU says ``'null'``)."""
    result: list[int] = []
    for text in values:
        parsed = parse_uint(text)
        items: list[int] | None = None
        if parsed is not None:
            low, end = parsed
            if end == len(text):
                items = [low]
            elif text[end] == "-":
                upper = parse_uint(text[end + 1:])
                if upper is not None and upper[1] == len(text) - end - 1 \
                        and low <= upper[0] and upper[0] - low < 65536:
                    items = list(range(low, upper[0] + 1))
        if items is None:
            raise QemuOptionError(f"Parameter '{name}' expects a uint64 value or range")
        for item in items:
            if item > 0xFFFF:
                raise QemuOptionError("Parameter 'null' expects uint16_t")
        result.extend(items)
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# keyval


class KeyvalStr(str):
    """A scalar that came from keyval text: every keyval scalar is a string, converted by
    the keyval input visitor (``qobject_input_visitor_new_keyval``), unlike a JSON string."""

    __slots__ = ()


@dataclass
class KeyvalHelp:
    """Whether a keyval string asked for ``help`` (``starts_with_help_option``)."""

    wanted: bool = False


def _qapi_name_length(text: str) -> int:
    """``parse_qapi_name(text, false)`` (``qapi/qapi-util.c``): the length of the name at the
    start of ``text`` (optional ``__RFQDN_`` prefix, a letter, then ``[A-Za-z0-9_-]``), or 0."""
    match = re.match(r"(?:__[A-Za-z0-9.-]*_)?[A-Za-z][A-Za-z0-9_-]*", text)
    return match.end() if match else 0


def _index_length(text: str) -> int:
    """``key_to_index()``: the length of a leading run of decimal digits (0 if none)."""
    match = re.match(r"[0-9]+", text)
    return match.end() if match else 0


def _keyval_put(cur: dict[str, Any], key_in_cur: str, value: KeyvalStr | None,
                key_so_far: str) -> Any:
    """``keyval_parse_put()``: store ``value`` (or a new dict when None) under ``key_in_cur``;
    a string where a dict is (or the reverse, or anything already turned into a list) is
    ``Parameters 'KEY.*' used inconsistently``. A repeated scalar is overwritten."""
    old = cur.get(key_in_cur)
    if old is not None:
        if isinstance(old, str) != (value is not None) or isinstance(old, list):
            raise QemuOptionError(f"Parameters '{key_so_far}.*' used inconsistently")
        if value is None:
            return old
    new: Any = value if value is not None else {}
    cur[key_in_cur] = new
    return new


def _keyval_parse_one(qdict: dict[str, Any], params: str, pos: int, implied: str | None,
                      help_: KeyvalHelp) -> int:
    """``keyval_parse_one()`` (``util/keyval.c``): parse one ``key=value`` at ``pos``."""
    rest = params[pos:]
    length = len(re.split(r"[=,]", rest, maxsplit=1)[0])
    key, val_end = rest, -1
    if length and (length == len(rest) or rest[length] != "="):
        if rest[:length] in ("help", "?"):
            help_.wanted = True
            return pos + length + (1 if rest[length:length + 1] == "," else 0)
        if implied is not None:
            key, val_end, length = implied, pos + length, len(implied)
    key_end = length
    cur = qdict
    s = 0
    key_in_cur = ""
    while True:
        frag = key[s:key_end]
        if s != 0 and _index_length(frag):
            flen = _index_length(frag)
        else:
            flen = _qapi_name_length(frag)
        if not flen or (s + flen < key_end and key[s + flen] != "."):
            raise QemuOptionError(f"Invalid parameter '{key[:key_end]}'")
        if flen >= 128:
            fragment = " fragment" if s != 0 or s + flen != key_end else ""
            raise QemuOptionError(f"Parameter{fragment} '{key[s:s + flen]}' is too long")
        if s != 0:
            cur = _keyval_put(cur, key_in_cur, None, key[:s - 1])
        key_in_cur = key[s:s + flen]
        s += flen
        if s >= len(key) or key[s] != ".":
            break
        s += 1
    if val_end >= 0:
        value = params[pos:val_end]
        next_pos = val_end + (1 if params[val_end:val_end + 1] == "," else 0)
    else:
        if key[s:s + 1] != "=":
            raise QemuOptionError(f"Expected '=' after parameter '{key[:s]}'")
        chars: list[str] = []
        i = pos + s + 1
        while i < len(params):
            if params[i] == ",":
                i += 1
                if params[i:i + 1] != ",":
                    break
            chars.append(params[i])
            i += 1
        value, next_pos = "".join(chars), i
    _keyval_put(cur, key_in_cur, KeyvalStr(value), key[:key_end])
    return next_pos


def _keyval_listify(cur: dict[str, Any], path: list[str]) -> Any:
    """``keyval_listify()``: turn every dict whose keys are all indices into a list, checking
    that indices 0..n-1 are all present (``Parameter 'KEY.N' missing``)."""
    has_index = has_member = False
    for key, value in list(cur.items()):
        if _index_length(key) == len(key):
            has_index = True
        else:
            has_member = True
        if isinstance(value, dict):
            cur[key] = _keyval_listify(value, [*path, key])
    prefix = "".join(p + "." for p in path)
    if has_index and has_member:
        raise QemuOptionError(f"Parameters '{prefix}*' used inconsistently")
    if not has_index:
        return cur
    elements: dict[int, Any] = {}
    for key, value in cur.items():
        elements[int(key)] = value
    result = []
    for index in range(len(cur) + 1):
        if index not in elements:
            if index < len(cur):
                raise QemuOptionError(f"Parameter '{prefix}{index}' missing")
            break
        result.append(elements[index])
    return result


def keyval_parse_into(qdict: dict[str, Any], params: str, implied: str | None) -> bool:
    """``keyval_parse_into()`` (``util/keyval.c``): parse ``params`` into ``qdict`` (which may
    already hold earlier options, as QEMU 7.2's ``-machine`` does), then listify it. Returns
    True when ``help`` was asked for."""
    help_ = KeyvalHelp()
    pos = 0
    while pos < len(params):
        pos = _keyval_parse_one(qdict, params, pos, implied, help_)
        implied = None
    listified = _keyval_listify(qdict, [])
    assert listified is qdict
    return help_.wanted


def keyval_merge(dest: dict[str, Any], merged: dict[str, Any], path: str = "") -> None:
    """``keyval_merge()`` (``util/keyval.c`` ``keyval_do_merge``): dicts merge recursively,
    lists are appended to, scalars replace; a type clash is ``Parameter 'KEY' used
    inconsistently``."""
    for key, value in merged.items():
        old = dest.get(key)
        if old is not None:
            if _qtype(old) != _qtype(value):
                raise QemuOptionError(f"Parameter '{path}{key}' used inconsistently")
            if isinstance(value, dict):
                keyval_merge(old, value, f"{path}{key}.")
                continue
            if isinstance(value, list):
                old.extend(value)
                continue
        dest[key] = value


def _qtype(value: Any) -> str:
    """The QObject type of a parsed value (QDict, QList or a scalar)."""
    return "dict" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


# ---------------------------------------------------------------------------------------------
# JSON


def parse_json_object(text: str) -> dict[str, Any]:
    """``qobject_from_json()`` (``qobject/qjson.c``, ``qobject/json-parser.c``) for an
    argument starting with ``{``: the messages QEMU gives for an unterminated object
    (``premature EOI``), a repeated key and trailing text are reproduced; other syntax
    errors are reported as ``JSON parse error, `` followed by the decoder's description."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise QemuOptionError("JSON parse error, duplicate key")
            result[key] = value
        return result

    def bad_constant(name: str) -> Any:
        raise QemuOptionError(f"JSON parse error, invalid keyword '{name}'")

    decoder = json.JSONDecoder(object_pairs_hook=pairs, parse_constant=bad_constant)
    try:
        value, end = decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip(_C_SPACE)):
            raise QemuOptionError("JSON parse error, premature EOI") from exc
        raise QemuOptionError(f"JSON parse error, {exc.msg[:1].lower()}{exc.msg[1:]}") from exc
    if text[end:].strip(_C_SPACE):
        raise QemuOptionError("Expecting at most one JSON value")
    assert isinstance(value, dict)
    return value
