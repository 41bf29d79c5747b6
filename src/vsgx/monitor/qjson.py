"""QEMU's JSON dialect, as QEMU 7.2's QMP monitor reads and writes it.

Input (docs/interop/qmp-spec.rst, "Protocol Specification" and "Forcing the JSON parser into
known-good state"): :class:`JsonStreamer` splits a byte stream into top-level JSON values the
way ``qobject/json-lexer.c`` + ``json-streamer.c`` + ``json-parser.c`` do, including their
extensions (single-quoted strings, ``\\'``), their limits (64 MiB per message, 2 Mi tokens,
nesting depth 1024), their error recovery (after a lexical error, input is skipped up to the
next structural character or control character) and their error messages, word for word.

Output: :func:`encode` writes a value as ``qobject/json-writer.c`` does: ASCII only, with
``\\u`` and four upper-case hex digits for control characters, DEL and everything beyond
ASCII, doubles as ``%.17g``, and object members in the order QEMU's ``QDict`` hash table
iterates them (``qobject/qdict.c``), so that replies match QEMU's byte for byte.

Parsed values are ``dict`` (members in input order), ``list``, ``str``, ``int`` (JSON integers
that fit int64 or uint64), ``float`` (everything else, as ``strtod`` reads it), ``bool`` and
``None``.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass
from enum import IntEnum

MAX_TOKEN_SIZE = 64 << 20
"""Bytes of tokens one message may hold (``json-streamer.c``/``json-lexer.c``)."""
MAX_TOKEN_COUNT = 2 << 20
"""Tokens one message may hold."""
MAX_NESTING = 1 << 10
"""Open brackets and braces one message may nest."""


@dataclass(frozen=True)
class JsonError:
    """Input that is not a JSON value; QMP answers it with a ``GenericError`` and no ``id``."""

    desc: str


class _Tok(IntEnum):
    """``JSONTokenType`` (``qobject/json-parser-int.h``); ERROR is a lexical error."""

    ERROR = 0
    LCURLY = 100
    RCURLY = 101
    LSQUARE = 102
    RSQUARE = 103
    COLON = 104
    COMMA = 105
    INTEGER = 106
    FLOAT = 107
    KEYWORD = 108
    STRING = 109


# ---------------------------------------------------------------------------------------------
# Lexer: the json_lexer[][] state table of qobject/json-lexer.c (without interpolation, which
# the QMP monitor does not enable). An entry is a state, a token type (the token ends) or
# ERROR; _LOOKAHEAD marks entries that do not consume the character.

_RECOVERY, _DQ_ESC, _DQ, _SQ_ESC, _SQ, _ZERO, _EXP_DIGITS, _EXP_SIGN, _EXP_E = range(1, 10)
_MANTISSA, _MANTISSA_DIGITS, _DIGITS, _SIGN, _KEYWORD, _START = range(10, 16)
_LOOKAHEAD = 0x1000
_DIGIT_BYTES = b"0123456789"
_LOWER = bytes(range(ord("a"), ord("z") + 1))


def _build_table() -> dict[int, list[int]]:
    table = {state: [int(_Tok.ERROR)] * 256 for state in range(_RECOVERY, _START + 1)}

    def put(state: int, chars: bytes | range, entry: int) -> None:
        for c in chars:
            table[state][c] = entry

    def terminal(state: int, token: _Tok) -> None:
        put(state, range(256), token | _LOOKAHEAD)

    # Skip until a structural character, a control character other than '\t', or 0xFE/0xFF.
    put(_RECOVERY, range(0x00, 0x20), _START | _LOOKAHEAD)
    put(_RECOVERY, range(0x20, 0xFE), _RECOVERY)
    put(_RECOVERY, b"\xfe\xff", _START | _LOOKAHEAD)
    put(_RECOVERY, b"\t", _RECOVERY)
    put(_RECOVERY, b"[]{}:,", _START | _LOOKAHEAD)
    for string, escape, quote in ((_DQ, _DQ_ESC, b'"'), (_SQ, _SQ_ESC, b"'")):
        put(escape, range(0x20, 0xFE), string)
        put(string, range(0x20, 0xFE), string)
        put(string, b"\\", escape)
        put(string, quote, _Tok.STRING)
    terminal(_ZERO, _Tok.INTEGER)
    put(_ZERO, _DIGIT_BYTES, _Tok.ERROR)
    put(_ZERO, b".", _MANTISSA)
    terminal(_EXP_DIGITS, _Tok.FLOAT)
    put(_EXP_DIGITS, _DIGIT_BYTES, _EXP_DIGITS)
    put(_EXP_SIGN, _DIGIT_BYTES, _EXP_DIGITS)
    put(_EXP_E, b"-+", _EXP_SIGN)
    put(_EXP_E, _DIGIT_BYTES, _EXP_DIGITS)
    terminal(_MANTISSA_DIGITS, _Tok.FLOAT)
    put(_MANTISSA_DIGITS, _DIGIT_BYTES, _MANTISSA_DIGITS)
    put(_MANTISSA_DIGITS, b"eE", _EXP_E)
    put(_MANTISSA, _DIGIT_BYTES, _MANTISSA_DIGITS)
    terminal(_DIGITS, _Tok.INTEGER)
    put(_DIGITS, _DIGIT_BYTES, _DIGITS)
    put(_DIGITS, b"eE", _EXP_E)
    put(_DIGITS, b".", _MANTISSA)
    put(_SIGN, b"0", _ZERO)
    put(_SIGN, b"123456789", _DIGITS)
    terminal(_KEYWORD, _Tok.KEYWORD)
    put(_KEYWORD, _LOWER, _KEYWORD)
    put(_START, b'"', _DQ)
    put(_START, b"'", _SQ)
    put(_START, b"0", _ZERO)
    put(_START, b"123456789", _DIGITS)
    put(_START, b"-", _SIGN)
    for char, token in zip(b"{}[],:", (_Tok.LCURLY, _Tok.RCURLY, _Tok.LSQUARE, _Tok.RSQUARE,
                                        _Tok.COMMA, _Tok.COLON), strict=True):
        table[_START][char] = token
    put(_START, _LOWER, _KEYWORD)
    put(_START, b" \t\r\n", _START)
    return table


_TABLE = _build_table()
_TOKENS = {int(token): token for token in _Tok}


def _runs(table: dict[int, list[int]]) -> dict[int, re.Pattern[bytes]]:
    """Per state, a pattern for the run of characters that consume and keep that state, so
    long strings, numbers, whitespace and skipped input are lexed in bulk."""
    runs = {}
    for state, row in table.items():
        stay = bytes(c for c in range(256) if row[c] == state)
        if stay:
            runs[state] = re.compile(b"[" + b"".join(b"\\x%02x" % c for c in stay) + b"]+")
    return runs


_RUNS = _runs(_TABLE)
_TRUNCATING = (_START, _RECOVERY)
"""States whose consumed characters do not accumulate into a token."""


class JsonStreamer:
    """Split a QMP input byte stream into JSON values (``JSONMessageParser``).

    :meth:`feed` takes any chunk of the stream (partial messages are kept until complete,
    several messages may arrive at once) and returns, in order, each complete top-level value
    or a :class:`JsonError` for each rejected one.
    """

    def __init__(self, max_size: int = MAX_TOKEN_SIZE, max_tokens: int = MAX_TOKEN_COUNT,
                 max_nesting: int = MAX_NESTING) -> None:
        self._max_size = max_size
        self._max_tokens = max_tokens
        self._max_nesting = max_nesting
        self._state = _START
        self._token = bytearray()
        self._kinds: list[_Tok] = []
        self._texts: list[bytes] = []
        self._size = 0
        self._braces = 0
        self._brackets = 0
        self._out: list[object] = []

    def feed(self, data: bytes) -> list[object]:
        """Lex ``data`` (``json_lexer_feed``); return the values and errors it completed."""
        out: list[object] = []
        self._out = out
        pos, end = 0, len(data)
        while pos < end:
            run = _RUNS.get(self._state)
            match = run.match(data, pos) if run is not None else None
            if match is None:
                pos = self._step(data[pos], pos)
            elif self._state in _TRUNCATING:
                pos = match.end()
                continue
            else:
                take = min(match.end() - pos, self._max_size + 1 - len(self._token))
                self._token += data[pos:pos + take]
                pos += take
            if len(self._token) > self._max_size:
                # The lexer flushes a token that outgrows the limit; the streamer rejects it.
                self._token.clear()
                self._state = _START
                self._reset(JsonError("JSON token size limit exceeded"))
        return out

    def _step(self, char: int, pos: int) -> int:
        """Feed one character that ends the current state; return the next position."""
        entry = _TABLE[self._state][char]
        consumed = not entry & _LOOKAHEAD
        entry &= ~_LOOKAHEAD
        if consumed:
            self._token.append(char)
        if entry >= _Tok.LCURLY:
            self._process(_TOKENS[entry], bytes(self._token))
            self._token.clear()
            entry = _START
        elif entry == _Tok.ERROR:
            self._reset(JsonError(f"JSON parse error, stray '{_c_string(self._token)}'"))
            self._token.clear()
            entry = _RECOVERY
        elif entry in _TRUNCATING:
            self._token.clear()
        self._state = entry
        return pos + 1 if consumed else pos

    def _process(self, kind: _Tok, text: bytes) -> None:
        """``json_message_process_token``: queue a token, emit the message it completes."""
        if kind is _Tok.LCURLY:
            self._braces += 1
        elif kind is _Tok.RCURLY:
            self._braces -= 1
        elif kind is _Tok.LSQUARE:
            self._brackets += 1
        elif kind is _Tok.RSQUARE:
            self._brackets -= 1
        if self._size + len(text) + 1 > self._max_size:
            self._reset(JsonError("JSON token size limit exceeded"))
            return
        if len(self._kinds) + 1 > self._max_tokens:
            self._reset(JsonError("JSON token count limit exceeded"))
            return
        if self._braces + self._brackets > self._max_nesting:
            self._reset(JsonError("JSON nesting depth limit exceeded"))
            return
        self._kinds.append(kind)
        self._texts.append(text)
        self._size += len(text)
        if (self._braces > 0 or self._brackets > 0) and self._braces >= 0 \
                and self._brackets >= 0:
            return
        try:
            value = _Parser(self._kinds, self._texts).parse()
        except _ParseError as error:
            value = JsonError("JSON parse error, " + _lenient_decode(error.message[:1023]))
        self._reset(value)

    def _reset(self, emitted: object) -> None:
        """Forget the queued message and emit ``emitted``."""
        self._braces = self._brackets = self._size = 0
        self._kinds = []
        self._texts = []
        self._out.append(emitted)


# ---------------------------------------------------------------------------------------------
# Parser: qobject/json-parser.c's recursive descent, run with an explicit stack (a message may
# nest 1024 deep). The first error wins, as parse_error() keeps only the first.


class _ParseError(Exception):
    def __init__(self, message: bytes) -> None:
        super().__init__(message)
        self.message = message


_KEY, _VALUE, _ELEMENT = range(3)
_KEYWORDS: dict[bytes, object] = {b"true": True, b"false": False, b"null": None}
_INT64 = range(-(1 << 63), 1 << 63)
_UINT64 = range(0, 1 << 64)
_INTEGER_DIGITS = len(str(-(1 << 63)))
"""Longest integer token that can fit int64 or uint64 (the lexer allows no leading zeros)."""


class _Parser:
    def __init__(self, kinds: list[_Tok], texts: list[bytes]) -> None:
        self._kinds = kinds
        self._texts = texts
        self._next = 0

    def _peek(self) -> _Tok:
        if self._next == len(self._kinds):
            raise _ParseError(b"premature EOI")
        return self._kinds[self._next]

    def _pop(self) -> _Tok:
        kind = self._peek()
        self._next += 1
        return kind

    def parse(self) -> object:
        # Each frame is [container, phase, key]: an object waiting for a key or a value, or
        # an array waiting for an element.
        stack: list[list[object]] = []
        while True:
            kind = self._pop()
            value: object
            if kind is _Tok.LCURLY:
                if self._peek() is _Tok.RCURLY:
                    self._next += 1
                    value = {}
                else:
                    stack.append([{}, _KEY, None])
                    continue
            elif kind is _Tok.LSQUARE:
                if self._peek() is _Tok.RSQUARE:
                    self._next += 1
                    value = []
                else:
                    stack.append([[], _ELEMENT, None])
                    continue
            else:
                value = self._scalar(kind, self._texts[self._next - 1])
            # Hand the finished value to the enclosing containers.
            while stack:
                frame = stack[-1]
                container, phase = frame[0], frame[1]
                if phase == _KEY:
                    if not isinstance(value, str):
                        raise _ParseError(b"key is not a string in object")
                    if self._pop() is not _Tok.COLON:
                        raise _ParseError(b"missing : in object pair")
                    frame[1], frame[2] = _VALUE, value
                    break
                if phase == _VALUE:
                    assert isinstance(container, dict)
                    if frame[2] in container:
                        raise _ParseError(b"duplicate key")
                    container[frame[2]] = value
                    separator = self._pop()
                    if separator is _Tok.COMMA:
                        frame[1] = _KEY
                        break
                    if separator is not _Tok.RCURLY:
                        raise _ParseError(b"expected separator in dict")
                else:
                    assert isinstance(container, list)
                    container.append(value)
                    separator = self._pop()
                    if separator is _Tok.COMMA:
                        break
                    if separator is not _Tok.RSQUARE:
                        raise _ParseError(b"expected separator in list")
                stack.pop()
                value = container
            else:
                return value

    @staticmethod
    def _scalar(kind: _Tok, text: bytes) -> object:
        if kind is _Tok.STRING:
            return _parse_string(text)
        if kind is _Tok.INTEGER and len(text) <= _INTEGER_DIGITS:
            number = int(text)
            if number in _INT64 or number in _UINT64:
                return number
        if kind in (_Tok.INTEGER, _Tok.FLOAT):
            return float(text)
        if kind is _Tok.KEYWORD:
            if text in _KEYWORDS:
                return _KEYWORDS[text]
            raise _ParseError(b"invalid keyword '" + text + b"'")
        raise _ParseError(b"expecting value")


_SIMPLE_ESCAPES = {ord('"'): '"', ord("'"): "'", ord("\\"): "\\", ord("/"): "/",
                   ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r",
                   ord("t"): "\t"}
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
# The noncharacters U+FDD0..U+FDEF and U+xFFFE/U+xFFFF as UTF-8 (with the overlong and
# beyond-U+10FFFF look-alikes QEMU rejects as well); each is a whole sequence wherever it is.
_NONCHARACTERS = re.compile(
    rb"\xef\xb7[\x90-\xaf]|\xef\xbf[\xbe\xbf]|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]")
_NONCHARACTER_LEADS = (b"\xef", b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")


def _has_noncharacter(data: bytes) -> bool:
    return any(lead in data for lead in _NONCHARACTER_LEADS) \
        and _NONCHARACTERS.search(data) is not None


def _valid_codepoint(cp: int) -> bool:
    """``is_valid_codepoint`` (``util/unicode.c``): Unicode scalar values that are not
    noncharacters."""
    return 0 <= cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF \
        and not 0xFDD0 <= cp <= 0xFDEF and cp & 0xFFFE != 0xFFFE


def _decode_raw(raw: bytes) -> str | None:
    """Decode unescaped string bytes as modified UTF-8 (``\\xC0\\x80`` is U+0000); None when
    ``mod_utf8_codepoint`` would reject any of them."""
    if _has_noncharacter(raw):
        return None
    try:
        return raw.replace(b"\xc0\x80", b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_string(token: bytes) -> str:
    """``parse_string``: unquote and unescape a string token (the lexer has already rejected
    control characters, 0xFE and 0xFF)."""
    quote = token[0]
    body = token[1:-1]
    if b"\\" not in body:
        text = _decode_raw(body)
        if text is None:
            raise _ParseError(b"invalid UTF-8 sequence in string")
        return text
    parts: list[str] = []
    pos = 0
    while True:
        backslash = body.find(b"\\", pos)
        raw = body[pos:] if backslash < 0 else body[pos:backslash]
        text = _decode_raw(raw)
        if text is None:
            raise _ParseError(b"invalid UTF-8 sequence in string")
        parts.append(text)
        if backslash < 0:
            return "".join(parts)
        escape = body[backslash + 1]
        pos = backslash + 2
        if escape in _SIMPLE_ESCAPES:
            parts.append(_SIMPLE_ESCAPES[escape])
            continue
        if escape != ord("u"):
            raise _ParseError(b"invalid escape sequence in string")
        cp = _hex4(body, pos)
        pos += 4
        if 0xD800 <= cp <= 0xDBFF and body[pos:pos + 2] == b"\\u":
            trailing = _hex4(body, pos + 2)
            if 0xDC00 <= trailing <= 0xDFFF:
                cp = 0x10000 + ((cp & 0x3FF) << 10) | (trailing & 0x3FF)
                pos += 6
            else:
                cp = -1
        if not _valid_codepoint(cp):
            # QEMU quotes the escape as written; C stops reading at the token's end.
            message = (body + bytes([quote]))[backslash:pos]
            raise _ParseError(message + b" is not a valid Unicode character")
        parts.append(chr(cp))


def _hex4(body: bytes, pos: int) -> int:
    """``cvt4hex``: four hex digits at ``pos``, -1 when there are not four."""
    return int(body[pos:pos + 4], 16) if _HEX4.match(body, pos) else -1


# ---------------------------------------------------------------------------------------------
# Bytes QEMU quotes in messages reach the wire through json-writer.c, which decodes them with
# mod_utf8_codepoint() and writes U+FFFD for each sequence it rejects.


def _mod_utf8_codepoint(data: bytes, pos: int) -> tuple[int, int]:
    """``mod_utf8_codepoint`` (``util/unicode.c``): the code point at ``pos`` (-1 when
    invalid) and where the next sequence starts."""
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return byte, pos
    if byte >= 0xFE or not byte & 0x40:
        return -1, pos
    length, mask = 0, 0x80
    while byte & mask:
        length += 1
        mask >>= 1
    cp = byte & (mask - 1)
    for _ in range(1, length):
        if pos >= len(data) or data[pos] & 0xC0 != 0x80:
            return -1, pos
        cp = cp << 6 | data[pos] & 0x3F
        pos += 1
    minimum = (0x80, 0x800, 0x10000, 0x200000, 0x4000000)[length - 2]
    if not _valid_codepoint(cp) or (cp < minimum and not (cp == 0 and length == 2)):
        return -1, pos
    return cp, pos


def _qemu_replace(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    cp, end = _mod_utf8_codepoint(error.object, error.start)
    return ("\ufffd" if cp < 0 else chr(cp)), end


codecs.register_error("vsgx-qemu-mutf8", _qemu_replace)


def _lenient_decode(data: bytes) -> str:
    """What QEMU's JSON writer makes of ``data`` inside a string: each rejected sequence
    becomes U+FFFD (noncharacters included)."""
    if _has_noncharacter(data):
        data = _NONCHARACTERS.sub("\ufffd".encode(), data)
    return data.decode("utf-8", errors="vsgx-qemu-mutf8")


def _c_string(data: bytes | bytearray) -> str:
    """``data`` as a C ``%s`` argument would print it: up to the first NUL."""
    return _lenient_decode(bytes(data).split(b"\x00", 1)[0])


# ---------------------------------------------------------------------------------------------
# Writer


@functools.lru_cache(maxsize=4096)
def _tdb_hash(key: str) -> int:
    """``tdb_hash`` (``qobject/qdict.c``) of the key's modified UTF-8 bytes."""
    data = key.encode("utf-8", errors="surrogatepass").replace(b"\x00", b"\xc0\x80")
    value = 0x238F13AF * len(data) & 0xFFFFFFFF
    for i, byte in enumerate(data):
        value = value + (byte << (i * 5 % 24)) & 0xFFFFFFFF
    return 1103515243 * value + 12345 & 0xFFFFFFFF


_QDICT_BUCKETS = 512


def qdict_order(keys: list[str]) -> list[str]:
    """The order in which a QDict built by inserting ``keys`` in this order iterates them:
    by hash bucket, and within a bucket newest first (``qdict_first``/``qdict_next``)."""
    return list(_qdict_order(tuple(keys)))


@functools.lru_cache(maxsize=1024)
def _qdict_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`qdict_order` for a key tuple; replies repeat the same few key sets."""
    position = {key: i for i, key in enumerate(keys)}
    return tuple(sorted(keys, key=lambda key: (_tdb_hash(key) % _QDICT_BUCKETS,
                                               -position[key])))


_ESCAPED = re.compile("[\"\\\\\x00-\x1f\x7f-\U0010ffff]")
_CHAR_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                 "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _CHAR_ESCAPES:
        return _CHAR_ESCAPES[char]
    cp = ord(char)
    if not _valid_codepoint(cp):
        cp = 0xFFFD
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    return f"\\u{cp:04X}"


def encode(value: object) -> str:
    """``qobject_to_json``: ``value`` as QEMU writes it (ASCII, ``", "`` and ``": "``
    separators). Raises TypeError for anything that is not JSON data."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.17g}"
    if isinstance(value, str):
        return '"' + _ESCAPED.sub(_escape, value) + '"'
    if isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise TypeError(f"not a JSON object: {value!r}")
        return "{" + ", ".join(f"{encode(key)}: {encode(value[key])}"
                               for key in _qdict_order(tuple(keys))) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(encode(item) for item in value) + "]"
    raise TypeError(f"not JSON data: {value!r}")
