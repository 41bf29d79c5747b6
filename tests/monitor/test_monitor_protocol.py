"""The QMP session and command table without sockets: every recorded QEMU 7.2 exchange of
``qmp_cases.py`` (re-checked on the real binary by ``test_monitor_qemu_oracle.py``), the
64 MiB message limit at its exact boundary, the commands' replies and the HMP texts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from monitor_fakes import TWO_SECTIONS, FakeMachine
from qmp_cases import CASES, Case, normalise

from vsgx.monitor import CommandTable, Session
from vsgx.monitor.qjson import MAX_TOKEN_SIZE, JsonError, JsonStreamer, encode

NEGOTIATE = b'{"execute":"qmp_capabilities"}\n'


class Conversation:
    """A session wired to a machine as the server wires it: events and replies go out in
    the order they happen."""

    def __init__(self, machine: FakeMachine, *, negotiate: bool = True) -> None:
        self.machine = machine
        self.session = Session(CommandTable(machine))
        self.sent: list[str] = []
        machine.subscribe(self._event)
        if negotiate:
            assert self.send(NEGOTIATE) == ['{"return": {}}']

    def _event(self, name: str, data: dict[str, Any]) -> None:
        message = self.session.event(name, data, 1_700_000_000_123_456)
        if message is not None:
            self.sent.append(_line(message))

    def send(self, data: bytes) -> list[str]:
        """Feed ``data``; return every line sent since the last call."""
        for reply in self.session.feed(data):
            self.sent.append(_line(reply))
        lines, self.sent = self.sent, []
        return lines

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one command; return its ``return`` value (or the whole error reply), ignoring
        the events it caused."""
        request = {"execute": command, "arguments": arguments} if arguments \
            else {"execute": command}
        reply = json.loads(self.send(json.dumps(request).encode())[-1])
        return reply.get("return", reply)

    def hmp(self, command_line: str, **arguments: Any) -> Any:
        return self.execute("human-monitor-command", **{"command-line": command_line},
                            **arguments)


def _line(message: bytes) -> str:
    assert message.endswith(b"\r\n")
    return message[:-2].decode("ascii")


# -- the recorded QEMU exchanges ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_matches_recording(case: Case) -> None:
    conversation = Conversation(FakeMachine(), negotiate=case.negotiated)
    assert [normalise(line) for line in conversation.send(case.sent)] == list(case.replies)


@pytest.mark.parametrize("case", CASES[:12], ids=[case.name for case in CASES[:12]])
def test_case_fed_byte_by_byte(case: Case) -> None:
    conversation = Conversation(FakeMachine(), negotiate=case.negotiated)
    lines = []
    for index in range(len(case.sent)):
        lines += conversation.send(case.sent[index:index + 1])
    assert [normalise(line) for line in lines] == list(case.replies)


def test_greeting() -> None:
    session = Session(CommandTable(FakeMachine()))
    assert session.greeting() == (
        b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
        b'"package": "vsgx 0.1.0"}, "capabilities": ["oob"]}}\r\n')


def test_events_wait_for_command_mode() -> None:
    session = Session(CommandTable(FakeMachine()))
    assert session.event("STOP", {}, 0) is None
    list(session.feed(NEGOTIATE))
    assert session.event("STOP", {}, 1_700_000_000_123_456) == (
        b'{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, '
        b'"event": "STOP"}\r\n')


def test_events_interleave_with_replies_as_they_happen() -> None:
    conversation = Conversation(FakeMachine())
    lines = conversation.send(b'{"execute":"stop","id":1}{"execute":"cont","id":2}')
    assert [json.loads(line).get("event", json.loads(line).get("id")) for line in lines] == \
        ["STOP", 1, "RESUME", 2]


def test_quit_ignores_what_follows() -> None:
    conversation = Conversation(FakeMachine())
    lines = conversation.send(b'{"execute":"quit"}{"execute":"stop"}\n')
    assert [json.loads(line).get("event") for line in lines] == ["SHUTDOWN", None]
    assert conversation.session.hung_up and conversation.machine.status == "running"
    assert conversation.send(b'{"execute":"stop"}\n') == []


# -- the message limits (qobject/json-streamer.c) -------------------------------------------

# The tokens of {"execute":"query-name","id": before the id string, byte for byte.
_PREFIX = b'{"execute":"query-name","id":'
_AFTER = b'{"execute":"query-name","id":"after"}\n'


def _message_with_id_string(total: int) -> bytes:
    """A request whose tokens add up to ``total`` bytes (the id string fills it up)."""
    string = total - len(_PREFIX) - 1  # the closing brace is one more token byte
    return _PREFIX + b'"' + b"a" * (string - 2) + b'"}\n'


def test_largest_message() -> None:
    # A message's tokens may add up to MAX_TOKEN_SIZE - 1 bytes: the streamer refuses a
    # token when queued bytes + its length + 1 exceed 64 MiB. Observed on QEMU 7.2.22 (with
    # this very message: a 67108856-byte reply); the three limit tests took QEMU 5 to 6
    # minutes each, as it reads its monitor one byte per main-loop iteration.
    conversation = Conversation(FakeMachine())
    (line,) = conversation.send(_message_with_id_string(MAX_TOKEN_SIZE - 1))
    assert line.startswith('{"return": {}, "id": "aaa') and len(line) > MAX_TOKEN_SIZE - 64


def test_message_one_byte_too_large() -> None:
    # Observed on QEMU 7.2.22: the closing brace overflows; nothing else is reported and the
    # next request works.
    conversation = Conversation(FakeMachine())
    assert conversation.send(_message_with_id_string(MAX_TOKEN_SIZE) + _AFTER) == [
        '{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}',
        '{"return": {}, "id": "after"}']


def test_token_larger_than_limit() -> None:
    # Observed on QEMU 7.2.22: the lexer flushes a token at 64 MiB + 1 bytes; the rest of
    # the string is then lexed as new input: a keyword, then a string cut by the newline.
    conversation = Conversation(FakeMachine())
    sent = _PREFIX + b'"' + b"a" * (MAX_TOKEN_SIZE + 5) + b'bc"}\n' + _AFTER
    assert conversation.send(sent) == [
        '{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}',
        '{"error": {"class": "GenericError", '
        '"desc": "JSON parse error, invalid keyword \'aaaaabc\'"}}',
        '{"error": {"class": "GenericError", '
        '"desc": "JSON parse error, stray \'\\"}\\n\'"}}',
        '{"return": {}, "id": "after"}']


@pytest.mark.parametrize(("elements", "result"), [
    (1023, [[1] * 1023]),  # 2047 tokens
    (1024, [JsonError("JSON token count limit exceeded")]),  # 2049: the closing bracket
])
def test_token_count_limit(elements: int, result: list[object]) -> None:
    # Observed on QEMU 7.2.22 with its limit of 2**21 tokens: [1,1,...,1] with 2**20 - 1
    # elements (2**21 - 1 tokens) is a value, with 2**20 elements (2**21 + 1 tokens) the
    # closing bracket is refused and nothing else is reported. The same at 2**11 tokens
    # (lexing 2 Mi tokens takes vsgx seconds):
    streamer = JsonStreamer(max_tokens=1 << 11)
    assert streamer.feed(b"[" + b"1," * (elements - 1) + b"1]\n") == result


def test_invalid_keyword_message_is_cut_at_1023_bytes() -> None:
    # parse_error() formats into char message[1024].
    (error,) = JsonStreamer().feed(b"x" * 2000 + b"\n")
    assert isinstance(error, JsonError)
    assert error.desc == "JSON parse error, invalid keyword '" + "x" * (1023 - 17)


# -- JSON round trip -----------------------------------------------------------------------

# QEMU stores strings as modified UTF-8 and refuses noncharacters (util/unicode.c).
_text = st.text(st.characters(codec="utf-8").filter(
    lambda char: not 0xFDD0 <= ord(char) <= 0xFDEF and ord(char) & 0xFFFE != 0xFFFE))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda children: st.lists(children) | st.dictionaries(_text, children),
    max_leaves=20)


@settings(max_examples=60)
@given(_json)
def test_encode_then_parse_round_trips(value: Any) -> None:
    text = encode(value)
    assert text.isascii()
    assert JsonStreamer().feed(text.encode() + b"\n") == [value]
    assert json.loads(text) == value


# -- the commands --------------------------------------------------------------------------


@pytest.fixture
def sgx() -> Conversation:
    return Conversation(FakeMachine(name="guest0", cpus=2, sections=TWO_SECTIONS))


def test_query_commands_lists_what_is_implemented(sgx: Conversation) -> None:
    names = [command["name"] for command in sgx.execute("query-commands")]
    assert names == ["query-sgx-capabilities", "query-sgx", "human-monitor-command", "cont",
                     "stop", "query-name", "query-memory-devices", "system_reset",
                     "query-cpus-fast", "quit", "query-commands", "query-version",
                     "qmp_capabilities", "migrate-incoming", "migrate",
                     "migrate-set-capabilities", "query-migrate", "query-status"]
    for name in names[:9]:  # up to quit, which would end the session
        reply = sgx.execute(name)
        assert not isinstance(reply, dict) or "CommandNotFound" not in str(reply)


def test_query_version(sgx: Conversation) -> None:
    assert sgx.send(b'{"execute":"query-version"}') == [
        '{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "vsgx 0.1.0"}}']


def test_query_name(sgx: Conversation) -> None:
    assert sgx.execute("query-name") == {"name": "guest0"}


def test_query_sgx(sgx: Conversation) -> None:
    # Members in QDict order (this host has no SGX to show QEMU's own reply).
    assert sgx.send(b'{"execute":"query-sgx"}') == [
        '{"return": {"sgx": true, "sgx2": true, "sgx1": true, "sections": '
        '[{"size": 67108864, "node": 0}, {"size": 29360128, "node": 1}], '
        '"section-size": 96468992, "flc": true}}']


def test_query_sgx_capabilities_error(sgx: Conversation) -> None:
    assert sgx.execute("query-sgx-capabilities") == {
        "error": {"class": "GenericError", "desc": "SGX is not enabled in KVM"}}


def test_query_memory_devices(sgx: Conversation) -> None:
    assert sgx.execute("query-memory-devices") == [
        {"type": "sgx-epc", "data": {"memaddr": 0x180000000, "size": 64 << 20, "node": 0,
                                     "memdev": "/objects/mem1"}},
        {"type": "sgx-epc", "data": {"memaddr": 0x184000000, "size": 28 << 20, "node": 1,
                                     "memdev": "/objects/mem2"}}]


def test_query_cpus_fast_in_qemu_member_order(sgx: Conversation) -> None:
    # QEMU 7.2 writes {"thread-id", "props": {"core-id", "thread-id", "socket-id"},
    # "qom-path", "cpu-index", "target"} (its QDict order).
    line = sgx.send(b'{"execute":"query-cpus-fast"}')[0]
    assert line.startswith('{"return": [{"thread-id": 1000, "props": {"core-id": 0, '
                           '"thread-id": 0, "socket-id": 0}, "qom-path": '
                           '"/machine/unattached/device[0]", "cpu-index": 0, '
                           '"target": "x86_64"}, ')


# -- human-monitor-command -----------------------------------------------------------------


def test_info_sgx(sgx: Conversation) -> None:
    # hmp_info_sgx as disassembled from the 7.2.22 binary: after "FLC support: %s\n" it
    # prints "size: %lu\n" (section_size; the string is the tail of info memory-devices'
    # "  size: %lu\n", so strings(1) hides it), then the sections; no "total size=" (8.0).
    assert sgx.hmp("info sgx") == (
        "SGX support: enabled\r\nSGX1 support: enabled\r\nSGX2 support: enabled\r\n"
        "FLC support: enabled\r\nsize: 96468992\r\n"
        "NUMA node #0: size=67108864\r\nNUMA node #1: size=29360128\r\n")


def test_info_sgx_error() -> None:
    conversation = Conversation(FakeMachine())
    assert conversation.hmp("info sgx") == "SGX is only supported on PC machines\r\n"


def test_info_memory_devices(sgx: Conversation) -> None:
    assert sgx.hmp("info memory-devices") == (
        'Memory device [sgx-epc]: ""\r\n  memaddr: 0x180000000\r\n  size: 67108864\r\n'
        "  node: 0\r\n  memdev: /objects/mem1\r\n"
        'Memory device [sgx-epc]: ""\r\n  memaddr: 0x184000000\r\n  size: 29360128\r\n'
        "  node: 1\r\n  memdev: /objects/mem2\r\n")


def test_info_status_run_states(sgx: Conversation) -> None:
    # Observed: "VM status: paused (prelaunch)" under -S, "VM status: paused" after stop,
    # and a reset of a stopped machine leaves it in prelaunch.
    assert sgx.hmp("info status") == "VM status: running\r\n"
    sgx.execute("stop")
    assert sgx.hmp("info status") == "VM status: paused\r\n"
    sgx.execute("system_reset")
    assert sgx.hmp("info status") == "VM status: paused (prelaunch)\r\n"


def test_info_name_and_version(sgx: Conversation) -> None:
    assert sgx.hmp("info name") == "guest0\r\n"
    assert sgx.hmp("info version") == "7.2.0vsgx 0.1.0\r\n"  # QEMU: "7.2.22Debian 1:7.2..."


def test_info_alone_lists_the_info_commands(sgx: Conversation) -> None:
    assert sgx.hmp("info") == (
        "info memory-devices  -- show memory devices\r\n"
        "info name  -- show the current VM name\r\n"
        "info sgx  -- show intel SGX information\r\n"
        "info status  -- show the current VM status (running|paused)\r\n"
        "info version  -- show the version of QEMU\r\n")


def test_info_sgx_extra_argument(sgx: Conversation) -> None:
    # Observed with -machine pc.
    assert sgx.hmp("info sgx x") == (
        'sgx: extraneous characters at the end of line\r\nTry "help info sgx" for more '
        "information\r\n")


@pytest.mark.parametrize(("cpu_index", "valid"), [(0, True), (1, True), (2, False), (-1, False),
                                                  (1 << 32, True), ((1 << 32) + 2, False)])
def test_hmp_cpu_index(sgx: Conversation, cpu_index: int, valid: bool) -> None:
    # QEMU passes the int64 to monitor_set_cpu(int): 4294967296 is CPU 0 (observed with
    # -machine pc).
    reply = sgx.hmp("info name", **{"cpu-index": cpu_index})
    assert reply == ("guest0\r\n" if valid else {"error": {
        "class": "GenericError", "desc": "Parameter 'cpu-index' expects a CPU number"}})


def test_target_bug_gets_an_error_reply_and_the_session_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    machine = FakeMachine()

    def broken() -> dict[str, Any]:
        raise RuntimeError("machine exploded")

    monkeypatch.setattr(machine, "query_status", broken)
    conversation = Conversation(machine)
    assert conversation.send(b'{"execute":"query-status","id":1}{"execute":"query-name"}') == [
        '{"id": 1, "error": {"class": "GenericError", "desc": "machine exploded"}}',
        '{"return": {}}']
    assert "QMP command query-status failed" in caplog.text
