"""RESP request parser and reply encoder (pastedb.core.resp)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pastedb.core.resp import Encoder, Parser, encode_command

KIB = 1024


def cmd(*args: bytes) -> bytes:
    return encode_command(list(args))


def parse(data: bytes, **limits) -> list[list[bytes]]:
    return Parser(**limits).feed(data)


def error_of(data: bytes, **limits) -> str:
    with pytest.raises(ValueError) as e:
        Parser(**limits).feed(data)
    return str(e.value)


def feed_chunks(chunks, move_tail=False, **limits):
    """(commands, error or None, pending bytes) after feeding the chunks in turn."""
    p = Parser(**limits)
    out: list = []
    for k, c in enumerate(chunks):
        try:
            out += p.feed(c, move_tail=move_tail, move_to=k % 5)
        except ValueError as e:
            return out + e.commands, str(e), None
    return out, None, p.pending


def split_at(data: bytes, cuts) -> list[bytes]:
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]


# ---------------------------------------------------------------- multibulk

def test_multibulk_basic():
    assert parse(b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n") == [[b"GET", b"foo"]]


def test_multibulk_empty_and_pipelined():
    data = cmd(b"SET", b"", b"v") + cmd(b"PING") + cmd(b"x" * 1000)
    assert parse(data) == [[b"SET", b"", b"v"], [b"PING"], [b"x" * 1000]]


def test_binary_payload_with_crlf_inside():
    payload = bytes(range(256)) + b"\r\n*1\r\n$1\r\n" + b"\r\n" * 10
    assert parse(cmd(b"SET", b"\r\n", payload)) == [[b"SET", b"\r\n", payload]]


@pytest.mark.parametrize("empty", [b"*0\r\n", b"*-1\r\n", b"*-10\r\n", b"\r\n", b"\n",
                                   b"   \r\n", b" \t \n"])
def test_empty_commands_are_skipped(empty):
    assert parse(empty + cmd(b"PING") + empty + b"PING\r\n" + empty) == [[b"PING"], [b"PING"]]


def test_empty_commands_advance_cmd_start():
    p = Parser()
    assert p.feed(b"*0\r\n*-1\r\n\r\n") == []
    assert p.pending == 0
    assert p.feed(b"*1\r\n$4\r\nPI") == []
    assert p.pending == len(b"*1\r\n$4\r\nPI")


# ---------------------------------------------------------------- inline

def test_inline_plain_whitespace():
    assert parse(b"SET  key\tvalue \r\n") == [[b"SET", b"key", b"value"]]
    assert parse(b"PING\n") == [[b"PING"]]


def test_inline_double_quotes_and_escapes():
    line = b'SET "a b" "\\x41\\x7a\\xff\\n\\r\\t\\b\\a\\"\\\\\\q" ""\r\n'
    assert parse(line) == [[b"SET", b"a b", b'Az\xff\n\r\t\b\a"\\q', b""]]


def test_inline_invalid_hex_escape_is_literal():
    assert parse(b'"\\xZZ" "\\x4"\r\n') == [[b"xZZ", b"x4"]]


def test_inline_single_quotes():
    assert parse(b"SET 'a \"b' 'it\\'s' '\\n'\r\n") == [[b"SET", b'a "b', b"it's", b"\\n"]]


def test_inline_quote_inside_token_joins():
    # sdssplitargs: a quote may open in the middle of a token
    assert parse(b'foo"bar baz" x\r\n') == [[b"foobar baz", b"x"]]


def test_inline_nul_ends_the_line_like_redis():
    assert parse(b"GET a\x00 ignored\r\nPING\r\n") == [[b"GET", b"a"], [b"PING"]]


def test_inline_vertical_tab_inside_token():
    # blanks between tokens are isspace(); inside a token only " \t\r\n" split
    assert parse(b"a\x0bb \x0b c\r\n") == [[b"a\x0bb", b"c"]]


@pytest.mark.parametrize("line", [
    b'SET """test-key""" test-value\r\n',   # Redis's own protocol test
    b'"abc\r\n',
    b"'abc\r\n",
    b'"abc"x\r\n',
    b"'abc'x\r\n",
    b'"abc\\"\r\n',
])
def test_inline_unbalanced_quotes(line):
    assert error_of(line) == "ERR Protocol error: unbalanced quotes in request"


def test_inline_unescapes_in_place_without_touching_later_commands():
    data = b'"\\x41\\x42\\x43" "x"\r\n' + cmd(b"after") + b"'q' z\r\n"
    assert parse(data) == [[b"ABC", b"x"], [b"after"], [b"q", b"z"]]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("count", [b"abc", b"1x", b"01", b"+1", b"-0", b"", b" 1",
                                   b"99999999999999999999", b"9223372036854775808",
                                   b"20000000"])
def test_invalid_multibulk_length(count):
    assert error_of(b"*" + count + b"\r\n") == "ERR Protocol error: invalid multibulk length"


def test_multibulk_length_needs_lf_after_cr():
    assert error_of(b"*1\rX$1\r\na\r\n") == "ERR Protocol error: invalid multibulk length"


@pytest.mark.parametrize("length", [b"-1", b"-10", b"01", b"abc", b"", b"+1", b"2000000000",
                                    b"1 ", b"-0"])
def test_invalid_bulk_length(length):
    assert (error_of(b"*1\r\n$" + length + b"\r\n")
            == "ERR Protocol error: invalid bulk length")


def test_bulk_length_needs_lf_after_cr():
    assert error_of(b"*1\r\n$1\rXa\r\n") == "ERR Protocol error: invalid bulk length"


def test_expected_dollar():
    # Redis's own protocol test
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"
    assert error_of(data) == "ERR Protocol error: expected '$', got 'f'"


@pytest.mark.parametrize("byte,shown", [(b"\r", "\\x0d"), (b"\n", "\\x0a"), (b"\x00", "\\x00"),
                                        (b"\xff", "\\xff"), (b"*", "*")])
def test_expected_dollar_quotes_control_bytes_safely(byte, shown):
    assert error_of(b"*1\r\n" + byte) == f"ERR Protocol error: expected '$', got '{shown}'"


@pytest.mark.parametrize("tail", [b"XY", b"\rX", b"X\n", b"\n\r"])
def test_bulk_must_end_in_crlf(tail):
    assert (error_of(b"*1\r\n$3\r\nfoo" + tail)
            == "ERR Protocol error: expected '\\r\\n' after bulk data")


def test_too_big_count_strings():
    assert (error_of(b"*" + b"1" * 100, max_inline=64)
            == "ERR Protocol error: too big mbulk count string")
    assert (error_of(b"*1\r\n$" + b"1" * 100, max_inline=64)
            == "ERR Protocol error: too big bulk count string")
    # decided from the length of the line, not from where the read ended
    assert (error_of(b"*" + b"1" * 100 + b"\r\n", max_inline=64)
            == "ERR Protocol error: too big mbulk count string")


def test_too_big_count_string_default_is_64k():
    p = Parser()
    assert p.feed(b"*" + b"1" * (64 * KIB - 1)) == []
    with pytest.raises(ValueError, match="too big mbulk count string"):
        p.feed(b"11")


def test_too_big_inline():
    assert parse(b"a" * 16 + b"\r\n", max_inline=17) == [[b"a" * 16]]     # 17 bytes before \n
    assert parse(b"a" * 17 + b"\n", max_inline=17) == [[b"a" * 17]]
    assert error_of(b"a" * 18 + b"\n", max_inline=17) == "ERR Protocol error: too big inline request"
    assert error_of(b"a" * 18, max_inline=17) == "ERR Protocol error: too big inline request"
    p = Parser()
    assert p.feed(b"x" * (64 * KIB)) == []
    with pytest.raises(ValueError, match="too big inline request"):
        p.feed(b"x")


def test_error_is_sticky_and_keeps_earlier_commands():
    p = Parser()
    with pytest.raises(ValueError) as e:
        p.feed(cmd(b"PING") + b"*x\r\n" + cmd(b"PING"))
    assert e.value.commands == [[b"PING"]]
    with pytest.raises(ValueError, match="invalid multibulk length"):
        p.feed(cmd(b"PING"))


# ---------------------------------------------------------------- limits

def test_max_bulk_len_boundary():
    assert parse(cmd(b"x" * 10), max_bulk_len=10) == [[b"x" * 10]]
    assert error_of(cmd(b"x" * 11), max_bulk_len=10) == "ERR Protocol error: invalid bulk length"


def test_max_args_boundary():
    assert parse(cmd(*[b"a"] * 5), max_args=5) == [[b"a"] * 5]
    assert (error_of(cmd(*[b"a"] * 6), max_args=5)
            == "ERR Protocol error: invalid multibulk length")
    assert parse(b"a a a a a\r\n", max_args=5) == [[b"a"] * 5]
    assert (error_of(b"a a a a a a\r\n", max_args=5)
            == "ERR Protocol error: too many arguments in inline request")


def test_redis_default_limits():
    assert error_of(b"*1048577\r\n") == "ERR Protocol error: invalid multibulk length"
    p = Parser()
    assert p.feed(b"*1048576\r\n") == []
    assert error_of(b"*1\r\n$536870913\r\n") == "ERR Protocol error: invalid bulk length"
    p = Parser()
    assert p.feed(b"*1\r\n$536870912\r\n") == []
    assert p.need_total == len(b"*1\r\n$536870912\r\n") + 536870912 + 2


def test_declared_count_does_not_allocate():
    p = Parser()
    start = p.arg_capacity
    assert p.feed(b"*1000000\r\n" + b"$1\r\na\r\n" * 3) == []
    assert p.arg_capacity == start


def test_arg_arrays_grow_with_received_arguments():
    p = Parser()
    assert p.feed(b"*1000000\r\n" + b"$1\r\na\r\n" * 100) == []
    assert 100 <= p.arg_capacity <= 256          # doubling from what arrived


def test_arg_arrays_shrink_after_a_huge_command():
    p = Parser()
    big = [b"%d" % i for i in range(5000)]
    assert p.feed(cmd(*big)) == [big]
    assert p.arg_capacity <= 1024
    mid = [b"m"] * 600
    assert p.feed(cmd(*mid)) == [mid]
    assert p.arg_capacity >= 600                 # moderate sizes are kept


# ---------------------------------------------------------------- resumption

PIPELINE = (
    cmd(b"SET", b"key", b"va\r\nlue")
    + b"*0\r\n"
    + b'GET "quoted \\x41" plain\r\n'
    + cmd(b"DEL", b"", b"\x00\xff")
    + b"\r\n"
    + b"*-1\r\n"
    + cmd(b"x" * 300)
    + b"PING\n"
)
PIPELINE_CMDS = [
    [b"SET", b"key", b"va\r\nlue"],
    [b"GET", b"quoted A", b"plain"],
    [b"DEL", b"", b"\x00\xff"],
    [b"x" * 300],
    [b"PING"],
]


def test_pipeline_whole():
    assert parse(PIPELINE) == PIPELINE_CMDS


@pytest.mark.parametrize("move_tail", [False, True])
def test_every_split_point(move_tail):
    for i in range(len(PIPELINE) + 1):
        got = feed_chunks([PIPELINE[:i], PIPELINE[i:]], move_tail=move_tail)
        assert got == (PIPELINE_CMDS, None, 0), i


@pytest.mark.parametrize("move_tail", [False, True])
def test_byte_at_a_time(move_tail):
    chunks = [PIPELINE[i:i + 1] for i in range(len(PIPELINE))]
    assert feed_chunks(chunks, move_tail=move_tail) == (PIPELINE_CMDS, None, 0)


@pytest.mark.parametrize("move_tail", [False, True])
def test_three_way_splits_of_an_error_stream(move_tail):
    data = cmd(b"a") + b"*2\r\n$1\r\nb\r\n$x\r\n"
    want = ([[b"a"]], "ERR Protocol error: invalid bulk length", None)
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 3):
            assert feed_chunks(split_at(data, [i, j]), move_tail=move_tail) == want


def test_move_tail_keeps_parsed_args_relative():
    p = Parser()
    head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva"
    assert p.feed(head, move_tail=True, move_to=7) == []
    assert p.pending == len(head)
    assert p.feed(b"lue\r\n", move_tail=True) == [[b"SET", b"k", b"value"]]


def test_need_total_for_a_big_bulk():
    value = bytes(range(256)) * 400                    # 102400 bytes
    data = cmd(b"SET", b"key", value)
    header_len = data.index(value)
    p = Parser()
    assert p.feed(data[:header_len - 3]) == []         # inside "$102400\r\n"
    assert p.need_total == 0
    assert p.feed(data[header_len - 3:header_len + 10], move_tail=True) == []
    assert p.need_total == header_len + len(value) + 2 == len(data)
    # the server sized the new buffer to exactly need_total and receives in place
    assert p.capacity == len(data)
    rest = data[header_len + 10:]
    chunks = [rest[i:i + 4096] for i in range(0, len(rest), 4096)]
    for c in chunks[:-1]:
        assert p.feed(c) == []
        assert p.need_total == len(data)
        assert p.capacity == len(data)
    assert p.feed(chunks[-1]) == [[b"SET", b"key", value]]


def test_need_total_exact_and_payload_in_place():
    value = b"v" * 50000
    data = cmd(b"SET", b"k", value)
    cut = data.index(value) + 1
    p = Parser()
    assert p.feed(data[:cut], move_tail=True) == []
    assert p.need_total == len(data)
    assert p.capacity == len(data)
    assert p.feed(data[cut:-1]) == []
    assert p.need_total == len(data)            # one byte (the LF) still missing
    assert p.capacity == len(data)
    assert p.feed(data[-1:]) == [[b"SET", b"k", value]]


def test_need_total_zero_outside_bulk():
    p = Parser()
    p.feed(b"*2\r\n$3\r\nGET\r\n")
    assert p.need_total == 0
    p.feed(b"$3\r")
    assert p.need_total == 0
    p.feed(b"\nfo")
    assert p.need_total == len(b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n")


# ---------------------------------------------------------------- property

args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(cmds=st.lists(args_st, min_size=1, max_size=8), data=st.data())
def test_roundtrip_random_splits(cmds, data):
    stream = b"".join(encode_command(c) for c in cmds)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    move_tail = data.draw(st.booleans())
    assert feed_chunks(split_at(stream, cuts), move_tail=move_tail) == (cmds, None, 0)


def redis_quote(arg: bytes) -> bytes:
    """Like Redis's sdscatrepr: a double-quoted token that sdssplitargs reads back as arg."""
    out = [b'"']
    for b in arg:
        c = bytes([b])
        if c in b'"\\':
            out.append(b"\\" + c)
        elif c == b"\n":
            out.append(b"\\n")
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(b"\\x%02x" % b)
    out.append(b'"')
    return b"".join(out)


@settings(max_examples=200, deadline=None)
@given(cmds=st.lists(args_st, min_size=1, max_size=5), data=st.data())
def test_inline_quoted_roundtrip(cmds, data):
    stream = b"".join(b" ".join(redis_quote(a) for a in c) + b"\r\n" for c in cmds)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    assert feed_chunks(split_at(stream, cuts), move_tail=data.draw(st.booleans())) == (cmds, None, 0)


# ---------------------------------------------------------------- encoder

def enc(resp3=False):
    return Encoder(resp3)


@pytest.mark.parametrize("v", [0, 1, -1, 42, 2**63 - 1, -(2**63), -(2**63) + 1, 10**18])
def test_out_int(v):
    assert enc().integer(v).getvalue() == b":%d\r\n" % v


def test_out_bulk_simple_error():
    e = enc().bulk(b"").bulk(b"a\r\nb").simple(b"OK").error(b"ERR x")
    assert e.getvalue() == b"$0\r\n\r\n$4\r\na\r\nb\r\n+OK\r\n-ERR x\r\n"


def test_out_line_strips_crlf():
    assert enc().error(b"ERR a\r\nb").simple(b"x\ny").getvalue() == b"-ERR a  b\r\n+x y\r\n"


def test_out_null_bool_array_map():
    assert (enc().null().null_array().boolean(True).boolean(False).array(3).map(2).getvalue()
            == b"$-1\r\n*-1\r\n:1\r\n:0\r\n*3\r\n*4\r\n")
    assert (enc(True).null().null_array().boolean(True).boolean(False).array(3).map(2).getvalue()
            == b"_\r\n_\r\n#t\r\n#f\r\n*3\r\n%2\r\n")


@pytest.mark.parametrize("v,text", [
    (0.1, b"0.1"), (1.0, b"1"), (-2.5, b"-2.5"), (1e300, b"1e+300"), (0.0, b"0"),
    (-0.0, b"-0"), (math.inf, b"inf"), (-math.inf, b"-inf"), (math.nan, b"nan"),
    (1 / 3, b"0.3333333333333333"), (5e-324, b"4.94065645841247e-324"),
])
def test_out_double(v, text):
    assert enc(True).double(v).getvalue() == b"," + text + b"\r\n"
    assert enc().double(v).getvalue() == b"$%d\r\n%s\r\n" % (len(text), text)


@given(st.floats(allow_nan=False))
def test_out_double_roundtrips(v):
    out = enc(True).double(v).getvalue()
    assert out[:1] == b"," and out[-2:] == b"\r\n"
    text = out[1:-2]
    assert struct.pack("<d", float(text)) == struct.pack("<d", v)
    assert len(text) <= 24


def test_encoder_grows_and_clears():
    big = b"z" * (3 * 1024 * 1024)
    e = enc().bulk(big)
    assert e.getvalue() == b"$%d\r\n%s\r\n" % (len(big), big)
    assert e.clear().integer(1).getvalue() == b":1\r\n"


def test_encode_command_parses_back():
    args = [b"SET", b"", b"\r\n", bytes(range(256))]
    assert parse(encode_command(args)) == [args]
