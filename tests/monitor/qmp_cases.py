"""What QEMU 7.2 answers on QMP, recorded from the real binary and shared by the unit tests
(which replay every case through :class:`vsgx.monitor.Session` with :class:`FakeMachine`) and
the oracle test (which replays them on ``qemu-system-x86_64 -machine none -qmp stdio``).

Observed on QEMU 7.2.22 (Debian ``qemu-system-x86`` 1:7.2+dfsg-7+deb12u18+b3). Each case is
the bytes a client sends and the lines (without their CRLF) QEMU sends back; cases marked
``negotiated`` start after ``qmp_capabilities``, the others right after the greeting. Event
timestamps are written ``"seconds": S, "microseconds": U`` (see :func:`normalise`).

The machine-dependent answers assume ``-machine none`` without ``-name``: running, no name,
no SGX; :class:`monitor_fakes.FakeMachine` defaults to the same.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Case(NamedTuple):
    name: str
    sent: bytes
    replies: tuple[str, ...]
    negotiated: bool = True


def _e(desc: str, error_class: str = "GenericError", id_: str | None = None) -> str:
    """An error reply as QEMU writes it (``id`` first: QDict order)."""
    head = f'{{"id": {id_}, ' if id_ is not None else "{"
    return head + f'"error": {{"class": "{error_class}", "desc": "{desc}"}}}}'


def _j(desc: str) -> str:
    return _e("JSON parse error, " + desc)


OK = '{"return": {}}'
RUNNING = '{"return": {"status": "running", "singlestep": false, "running": true}}'
NOT_NEGOTIATED = "Expecting capabilities negotiation with 'qmp_capabilities'"


def _hmp(command_line: str) -> bytes:
    return (b'{"execute":"human-monitor-command","arguments":{"command-line":"'
            + command_line.encode() + b'"}}\n')


def _event(name: str, data: str | None = None) -> str:
    tail = f', "data": {data}' if data is not None else ""
    return ('{"timestamp": {"seconds": S, "microseconds": U}, '
            f'"event": "{name}"{tail}}}')


CASES: list[Case] = [
    # -- capabilities negotiation (qmp-spec.rst "Capabilities Negotiation") ----------------
    Case("command before negotiation", b'{"execute":"query-status"}\n',
         (_e(NOT_NEGOTIATED, "CommandNotFound"),), negotiated=False),
    Case("unknown command before negotiation keeps id", b'{"execute":"nosuch","id":7}\n',
         (_e(NOT_NEGOTIATED, "CommandNotFound", "7"),), negotiated=False),
    Case("exec-oob before negotiation", b'{"exec-oob":"qmp_capabilities"}\n',
         (_e("QMP input member 'exec-oob' is unexpected"),), negotiated=False),
    Case("member check before negotiation", b'{"execute":"qmp_capabilities","foo":1}\n',
         (_e("QMP input member 'foo' is unexpected"),), negotiated=False),
    Case("unknown capability", b'{"execute":"qmp_capabilities","arguments":{"enable":["foo"]}}\n',
         (_e("Parameter 'null' does not accept value 'foo'"),), negotiated=False),
    Case("enable not a list", b'{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}\n',
         (_e("Invalid parameter type for 'enable', expected: array"),), negotiated=False),
    Case("enable element not a string",
         b'{"execute":"qmp_capabilities","arguments":{"enable":[1]}}\n',
         (_e("Invalid parameter type for 'enable[0]', expected: string"),), negotiated=False),
    Case("qmp_capabilities unknown argument",
         b'{"execute":"qmp_capabilities","arguments":{"bar":1}}\n',
         (_e("Parameter 'bar' is unexpected"),), negotiated=False),
    Case("qmp_capabilities twice",
         b'{"execute":"qmp_capabilities"}\n{"execute":"qmp_capabilities","id":"again"}\n',
         (OK, _e("Capabilities negotiation is already complete, command ignored",
                 "CommandNotFound", '"again"')), negotiated=False),
    # With oob enabled QEMU answers exec-oob requests at once, overtaking queued in-band
    # ones (vsgx, with no command that allows OOB, answers everything in order), so the
    # exec-oob requests come first here to keep QEMU's order deterministic.
    Case("oob enabled",
         b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n'
         b'{"exec-oob":"query-status"}\n'
         b'{"exec-oob":"query-status","id":1}\n'
         b'{"exec-oob":"nosuch"}\n'
         b'{"execute":"query-status","exec-oob":"query-status"}\n'
         b'{"execute":"query-status"}\n',
         (OK,
          _e("The command query-status does not support OOB"),
          _e("The command query-status does not support OOB", id_="1"),
          _e("The command nosuch has not been found", "CommandNotFound"),
          _e("QMP input member 'execute' clashes with 'exec-oob'"),
          RUNNING), negotiated=False),
    # -- request members (qapi/qmp-dispatch.c qmp_dispatch_check_obj) ----------------------
    Case("exec-oob without oob", b'{"exec-oob":"query-status"}\n',
         (_e("QMP input member 'exec-oob' is unexpected"),)),
    Case("unknown command", b'{"execute":"nosuch"}\n',
         (_e("The command nosuch has not been found", "CommandNotFound"),)),
    Case("unknown command keeps id", b'{"execute":"nosuch","id":"x"}\n',
         (_e("The command nosuch has not been found", "CommandNotFound", '"x"'),)),
    Case("execute not a string", b'{"execute":1}\n',
         (_e("QMP input member 'execute' must be a string"),)),
    Case("arguments not an object", b'{"execute":"query-status","arguments":[]}\n',
         (_e("QMP input member 'arguments' must be an object"),)),
    Case("unexpected member", b'{"execute":"query-status","foo":1,"id":5}\n',
         (_e("QMP input member 'foo' is unexpected", id_="5"),)),
    Case("first bad member in QDict order", b'{"foo":1,"arguments":2,"execute":3}\n',
         (_e("QMP input member 'execute' must be a string"),)),
    Case("top level not an object", b'[1,2]\n"str"\n42\ntrue\nnull\n',
         (_e("QMP input must be a JSON object"),) * 5),
    Case("missing execute", b'{}\n{"id":3}\n{"arguments":{}}\n',
         (_e("QMP input lacks member 'execute'"),
          _e("QMP input lacks member 'execute'", id_="3"),
          _e("QMP input lacks member 'execute'"))),
    Case("command named exec-oob", b'{"execute":"exec-oob"}\n',
         (_e("The command exec-oob has not been found", "CommandNotFound"),)),
    # -- arguments (qapi/qobject-input-visitor.c) ------------------------------------------
    Case("unexpected argument", b'{"execute":"query-status","arguments":{"a":1}}\n',
         (_e("Parameter 'a' is unexpected"),)),
    Case("missing argument", b'{"execute":"human-monitor-command"}\n',
         (_e("Parameter 'command-line' is missing"),)),
    Case("missing before unexpected",
         b'{"execute":"human-monitor-command","arguments":{"a":1,"b":2}}\n',
         (_e("Parameter 'command-line' is missing"),)),
    Case("argument of the wrong type",
         b'{"execute":"human-monitor-command","arguments":{"command-line":5}}\n'
         b'{"execute":"human-monitor-command","arguments":{"command-line":null}}\n',
         (_e("Invalid parameter type for 'command-line', expected: string"),) * 2),
    Case("extra argument",
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","foo":1}}\n',
         (_e("Parameter 'foo' is unexpected"),)),
    Case("cpu-index not an int64",
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":"x"}}\n'
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":1.5}}\n'
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":null}}\n'
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":18446744073709551615}}\n',
         (_e("Invalid parameter type for 'cpu-index', expected: integer"),) * 4),
    Case("cpu-index of no CPU (-machine none has none)",
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":-1}}\n'
         b'{"execute":"human-monitor-command","arguments":'
         b'{"command-line":"info status","cpu-index":0}}\n',
         (_e("Parameter 'cpu-index' expects a CPU number"),) * 2),
    # -- id echoing (qmp-spec.rst "Commands Responses") -----------------------------------
    Case("id of any type",
         b'{"execute":"query-status","id":[1,{"a":2}]}\n'
         b'{"execute":"query-name","id":null}\n'
         b'{"execute":"query-name","id":{"b":1,"a":2,"execute":3,"id":4}}\n',
         ('{"return": {"status": "running", "singlestep": false, "running": true}, '
          '"id": [1, {"a": 2}]}',
          '{"return": {}, "id": null}',
          '{"return": {}, "id": {"a": 2, "execute": 3, "b": 1, "id": 4}}')),
    Case("numbers as QEMU stores them",
         b'{"execute":"query-name","id":0.1}\n'
         b'{"execute":"query-name","id":1.0}\n'
         b'{"execute":"query-name","id":1e5}\n'
         b'{"execute":"query-name","id":-0}\n'
         b'{"execute":"query-name","id":1e999}\n'
         b'{"execute":"query-name","id":18446744073709551615}\n'
         b'{"execute":"query-name","id":18446744073709551616}\n'
         b'{"execute":"query-name","id":-9223372036854775809}\n'
         b'{"execute":"query-name","id":1.5e-7}\n',
         ('{"return": {}, "id": 0.10000000000000001}', '{"return": {}, "id": 1}',
          '{"return": {}, "id": 100000}', '{"return": {}, "id": 0}',
          '{"return": {}, "id": inf}', '{"return": {}, "id": 18446744073709551615}',
          '{"return": {}, "id": 1.8446744073709552e+19}',
          '{"return": {}, "id": -9.2233720368547758e+18}',
          '{"return": {}, "id": 1.4999999999999999e-07}')),
    Case("strings as QEMU writes them",
         b'{"execute":"query-name","id":"\\u007f/\\"\\\\\\b\\f\\n\\r\\t\\u0001"}\n'
         b'{"execute":"query-name","id":"\\u00e9\\ud83d\\ude00"}\n'
         b'{"execute":"query-name","id":"\xc3\xa9\xf0\x9f\x98\x80"}\n'
         b'{"execute":"query-name","id":"\xc0\x80"}\n'
         b"{'execute':'query-name','id':'it\\'s \"q\"'}\n",
         ('{"return": {}, "id": "\\u007F/\\"\\\\\\b\\f\\n\\r\\t\\u0001"}',
          '{"return": {}, "id": "\\u00E9\\uD83D\\uDE00"}',
          '{"return": {}, "id": "\\u00E9\\uD83D\\uDE00"}',
          '{"return": {}, "id": "\\u0000"}',
          '{"return": {}, "id": "it\'s \\"q\\""}')),
    # -- JSON framing (qobject/json-lexer.c, json-streamer.c, json-parser.c) ---------------
    Case("message split over lines", b'{"execute":\n"query-status"}\n', (RUNNING,)),
    Case("two messages on a line",
         b'{"execute":"query-status"}{"execute":"query-name","id":2}   \n',
         (RUNNING, '{"return": {}, "id": 2}')),
    Case("CRLF line ends", b'{"execute":"query-name"}\r\n', (OK,)),
    Case("missing colon", b'{"execute" "query-status"}\n', (_j("missing : in object pair"),)),
    Case("trailing comma", b'{"execute":"query-status",}\n', (_j("expecting value"),)),
    Case("stray closers", b'}\n]\n:\n,\n', (_j("expecting value"),) * 4),
    Case("bad keyword", b'nonsense\n', (_j("invalid keyword 'nonsense'"),)),
    Case("garbage after a message", b'{"execute":"query-status"} garbage\n',
         (RUNNING, _j("invalid keyword 'garbage'"))),
    Case("stray character, then recovery at the closer", b'@\n%d}\nTRUE}\n',
         (_j("stray '@'"), _j("stray '%'"), _j("expecting value"), _j("stray 'T'"),
          _j("expecting value"))),
    Case("NUL byte", b'\x00\n', (_j("stray ''"),)),
    Case("0xFF resynchronises", b'\xff{"execute":"query-name"}\n',
         (_j("stray '\\uFFFD'"), OK)),
    Case("0xFE inside a message", b'{"execute":\xfe"query-name"}\n',
         (_j("stray '\\uFFFD'"), _j("expecting value"))),
    Case("invalid byte in a string", b'{"execute":"query-name","id":"\xff"}\n',
         (_j("stray '\\\"\\uFFFD'"), _j("expecting value"))),
    Case("control character in a string", b'{"execute":"query-name","id":"a\tb"}\n',
         (_j("stray '\\\"a\\t'"), _j("expecting value"))),
    Case("bad escape", b'"\\x"\n', (_j("invalid escape sequence in string"),)),
    Case("bad unicode escapes",
         b'"\\ud800"\n"\\ud800\\u0041"\n"\\uffff"\n"\\uzzzz"\n"\\ufdd0"\n',
         (_j("\\\\ud800 is not a valid Unicode character"),
          _j("\\\\ud800 is not a valid Unicode character"),
          _j("\\\\uffff is not a valid Unicode character"),
          _j("\\\\uzzzz is not a valid Unicode character"),
          _j("\\\\ufdd0 is not a valid Unicode character"))),
    Case("bad UTF-8", b'"\xc3"\n"\xc1\x81"\n"\xed\xa0\x80"\n"\xef\xbf\xbf"\n',
         (_j("invalid UTF-8 sequence in string"),) * 4),
    Case("bad numbers", b'01}\n-}\n1.}\n',
         (_j("stray '01'"), _j("expecting value"), _j("stray '-}'"), _j("stray '1.}'"))),
    Case("duplicate key", b'{"execute":"query-status","execute":"query-name"}\n',
         (_j("duplicate key"),)),
    Case("key not a string", b'{1:2}\n', (_j("key is not a string in object"),)),
    Case("missing separators", b'{"a":1 "b":2}\n[1 2]\n',
         (_j("expected separator in dict"), _j("expected separator in list"))),
    Case("empty elements", b'[1,]\n[,]\n', (_j("expecting value"),) * 2),
    Case("mismatched brackets", b'[}\n{"execute":"query-name"}\n]\n{]\n',
         (_j("expecting value"), OK, _j("expecting value"), _j("expecting value"))),
    Case("nesting depth 1024 is fine", b"[" * 1024 + b"]" * 1024 + b"\n",
         (_e("QMP input must be a JSON object"),)),
    Case("nesting depth 1025 is not",
         b"[" * 1025 + b'\n{"execute":"query-name"}\n',
         (_e("JSON nesting depth limit exceeded"), OK)),
    # -- human-monitor-command (monitor/hmp.c) ---------------------------------------------
    Case("hmp info status", _hmp("info status"), ('{"return": "VM status: running\\r\\n"}',)),
    Case("hmp info name without a name", _hmp("info name"), ('{"return": ""}',)),
    Case("hmp empty line", _hmp("") + _hmp("   "), ('{"return": ""}',) * 2),
    Case("hmp unknown command", _hmp("bogus") + _hmp("  bogus  x"),
         ("{\"return\": \"unknown command: 'bogus'\\r\\n\"}",
          "{\"return\": \"unknown command: '  bogus'\\r\\n\"}")),
    Case("hmp unknown info command", _hmp("info bogus") + _hmp("info/status"),
         ("{\"return\": \"unknown command: 'info bogus'\\r\\n\"}",
          "{\"return\": \"unknown command: 'info'\\r\\n\"}")),
    Case("hmp blanks", _hmp("  info   status  "), ('{"return": "VM status: running\\r\\n"}',)),
    Case("hmp extra argument", _hmp("info status extra") + _hmp(" info  status  x y"),
         ('{"return": "status: extraneous characters at the end of line\\r\\n'
          'Try \\"help info status\\" for more information\\r\\n"}',
          '{"return": "status: extraneous characters at the end of line\\r\\n'
          'Try \\"help  info  status\\" for more information\\r\\n"}')),
    # -- run state commands and their events (qmp-spec.rst "Asynchronous events") ----------
    Case("stop, cont and system_reset with their events",
         b'{"execute":"cont"}\n{"execute":"stop"}\n{"execute":"stop"}\n'
         b'{"execute":"query-status"}\n{"execute":"cont","id":"c"}\n'
         b'{"execute":"system_reset"}\n{"execute":"cont","arguments":{"x":1}}\n',
         (OK,
          _event("STOP"), OK, OK,
          '{"return": {"status": "paused", "singlestep": false, "running": false}}',
          _event("RESUME"), '{"return": {}, "id": "c"}',
          _event("RESET", '{"guest": false, "reason": "host-qmp-system-reset"}'), OK,
          _e("Parameter 'x' is unexpected"))),
    # -- migration (migration/migration.c, qapi/migration.json) ---------------------------
    Case("query-migrate before any migration", b'{"execute":"query-migrate"}\n', (OK,)),
    Case("migrate to an unknown protocol, with events",
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"events","state":true}]}}\n'
         b'{"execute":"migrate","arguments":{"uri":"bogus"}}\n{"execute":"query-migrate"}\n',
         (OK, _event("MIGRATION", '{"status": "setup"}'),
          _event("MIGRATION", '{"status": "failed"}'),
          _e("Parameter 'uri' expects a valid migration protocol"),
          '{"return": {"status": "failed"}}')),
    Case("migrate argument checks",
         b'{"execute":"migrate"}\n{"execute":"migrate","arguments":{"uri":5}}\n'
         b'{"execute":"migrate","arguments":{"uri":"x","detach":1}}\n'
         b'{"execute":"migrate","arguments":{"uri":"x","extra":1}}\n',
         (_e("Parameter 'uri' is missing"),
          _e("Invalid parameter type for 'uri', expected: string"),
          _e("Invalid parameter type for 'detach', expected: boolean"),
          _e("Parameter 'extra' is unexpected"))),
    Case("migrate-incoming without -incoming",
         b'{"execute":"migrate-incoming","arguments":{"uri":"file:/x"}}\n',
         (_e("'-incoming' was not specified on the command line"),)),
    Case("migrate-set-capabilities argument checks",
         b'{"execute":"migrate-set-capabilities"}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":{}}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[5]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"state":true}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":5,"state":true}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"foo","state":true}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"events"}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"events","state":1}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"events","state":true,"x":1}]}}\n'
         b'{"execute":"migrate-set-capabilities","arguments":{"capabilities":'
         b'[{"capability":"events","state":false}]}}\n',
         (_e("Parameter 'capabilities' is missing"),
          _e("Invalid parameter type for 'capabilities', expected: array"),
          _e("Invalid parameter type for 'capabilities[0]', expected: object"),
          _e("Parameter 'capabilities[0].capability' is missing"),
          _e("Invalid parameter type for 'capabilities[0].capability', expected: string"),
          _e("Parameter 'capability' does not accept value 'foo'"),
          _e("Parameter 'capabilities[0].state' is missing"),
          _e("Invalid parameter type for 'capabilities[0].state', expected: boolean"),
          _e("Parameter 'capabilities[0].x' is unexpected"),
          OK)),
    Case("quit", b'{"execute":"quit","id":"q"}\n{"execute":"query-status"}\n',
         (_event("SHUTDOWN", '{"guest": false, "reason": "host-qmp-quit"}'),
          '{"return": {}, "id": "q"}')),
]

_TIMESTAMP = re.compile(r'"timestamp": \{"seconds": \d+, "microseconds": \d+\}')


def normalise(line: str) -> str:
    """``line`` with its event timestamp replaced by the placeholder the cases use."""
    return _TIMESTAMP.sub('"timestamp": {"seconds": S, "microseconds": U}', line)
