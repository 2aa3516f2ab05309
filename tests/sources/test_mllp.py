"""MLLP framing and the listener over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.sources.mllp import MLLPDecoder, MLLPServer, frame

ONE = "MSH|^~\\&|A|B|C|D|20240301||ORU^R01|M1|P|2.5.1\rPID|1||X\r"
TWO = "MSH|^~\\&|A|B|C|D|20240301||ORU^R01|M2|P|2.5.1\rPID|1||Y\r"


def test_frame_wraps_in_start_and_end_blocks() -> None:
    assert frame("MSH|x\r") == b"\x0bMSH|x\r\x1c\x0d"


def test_frame_split_across_packets() -> None:
    data = frame(ONE)
    decoder = MLLPDecoder()
    out: list[bytes] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [ONE.encode()]
    assert decoder.pending == 0 and decoder.discarded_bytes == 0


def test_several_frames_in_one_packet_and_garbage_between() -> None:
    decoder = MLLPDecoder()
    data = b"noise" + frame(ONE) + b"\r\n\x00" + frame(TWO) + b"junk"
    assert decoder.feed(data) == [ONE.encode(), TWO.encode()]
    assert decoder.discarded_bytes == len(b"noise") + 3 + len(b"junk")


def test_a_frame_cut_off_by_a_new_start_is_dropped_never_handed_on() -> None:
    decoder = MLLPDecoder()
    out = decoder.feed(b"\x0bMSH|half a mess" + frame(TWO))
    assert out == [TWO.encode()]
    assert decoder.broken_frames == 1


def test_end_block_split_from_its_carriage_return() -> None:
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0b" + ONE.encode() + b"\x1c") == []
    assert decoder.feed(b"\x0d") == [ONE.encode()]


def test_oversized_frame_is_dropped() -> None:
    decoder = MLLPDecoder(max_message_bytes=10)
    assert decoder.feed(b"\x0b" + b"x" * 50) == []
    assert decoder.overflows == 1 and decoder.pending == 0


@given(
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
    st.binary(max_size=20).filter(lambda b: 0x0B not in b),
)
def test_any_packet_split_gives_the_same_messages(cuts: list[int], noise: bytes) -> None:
    data = noise + frame(ONE) + noise + frame(TWO) + noise
    decoder = MLLPDecoder()
    out: list[bytes] = []
    pos = 0
    for cut in cuts:
        out += decoder.feed(data[pos : pos + cut])
        pos += cut
    out += decoder.feed(data[pos:])
    assert out == [ONE.encode(), TWO.encode()]


# --- the server --------------------------------------------------------------------


async def exchange(port: int, messages: list[str], *, chunked: bool = False) -> list[bytes]:
    """Send messages on one connection (all at once or in pieces), read one ACK each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"".join(frame(m) for m in messages)
    if chunked:
        for i in range(0, len(payload), 7):
            writer.write(payload[i : i + 7])
            await writer.drain()
    else:
        writer.write(payload)
        await writer.drain()
    decoder = MLLPDecoder()
    acks: list[bytes] = []
    while len(acks) < len(messages):
        data = await asyncio.wait_for(reader.read(4096), 5)
        if not data:
            break
        acks += decoder.feed(data)
    writer.close()
    await writer.wait_closed()
    return acks


def echo_control_id(text: str) -> str:
    control = text.split("\r", 1)[0].split("|")[9]
    return f"MSH|^~\\&|MON|||||ACK|A{control}|P|2.5.1\rMSA|AA|{control}\r"


async def test_several_messages_on_one_connection_are_acked_in_order() -> None:
    seen: list[str] = []

    async def handler(text: str) -> str:
        seen.append(text)
        return echo_control_id(text)

    async with MLLPServer("127.0.0.1", 0, handler) as server:
        acks = await exchange(server.port, [ONE, TWO, ONE], chunked=True)
    assert [a.decode().split("MSA|AA|")[1].strip() for a in acks] == ["M1", "M2", "M1"]
    assert seen == [ONE, TWO, ONE]


async def test_many_concurrent_connections() -> None:
    active = 0
    peak = 0

    async def handler(text: str) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return echo_control_id(text)

    async with MLLPServer("127.0.0.1", 0, handler) as server:
        messages = [ONE.replace("M1", f"C{i}") for i in range(25)]
        results = await asyncio.gather(*(exchange(server.port, [m, TWO]) for m in messages))
    for i, acks in enumerate(results):
        assert [a.decode().rsplit("|", 1)[1].strip() for a in acks] == [f"C{i}", "M2"]
    assert peak > 1  # connections were served at the same time


async def test_handler_failure_closes_the_connection_without_an_ack() -> None:
    calls = 0

    async def handler(text: str) -> str:
        nonlocal calls
        calls += 1
        if "M2" in text:
            raise RuntimeError("store is down")
        return echo_control_id(text)

    async with MLLPServer("127.0.0.1", 0, handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(ONE) + frame(TWO) + frame(ONE))
        await writer.drain()
        received = b""
        while True:
            data = await asyncio.wait_for(reader.read(4096), 5)
            if not data:
                break  # the server closed the connection
            received += data
        writer.close()
        await writer.wait_closed()
        assert MLLPDecoder().feed(received) == [echo_control_id(ONE).encode()]
        assert calls == 2  # the message after the failure was not handled
        # the server is still up for the resend
        assert len(await exchange(server.port, [ONE])) == 1


async def test_close_lets_a_running_handler_finish_and_ack() -> None:
    started = asyncio.Event()

    async def handler(text: str) -> str:
        started.set()
        await asyncio.sleep(0.2)
        return echo_control_id(text)

    server = MLLPServer("127.0.0.1", 0, handler, shutdown_grace=5)
    await server.start()
    port = server.port
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    pending = asyncio.create_task(exchange(port, [ONE]))
    await started.wait()
    await server.close()
    acks = await pending
    assert len(acks) == 1
    assert await asyncio.wait_for(idle_reader.read(10), 5) == b""  # idle one was closed
    idle_writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer listening


async def test_serve_forever_returns_after_close() -> None:
    async def handler(text: str) -> str:
        return echo_control_id(text)

    server = MLLPServer("127.0.0.1", 0, handler)
    runner = asyncio.create_task(server.serve_forever())
    while server.port == 0:
        await asyncio.sleep(0.01)
    assert len(await exchange(server.port, [ONE])) == 1
    await server.close()
    await asyncio.wait_for(runner, 5)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection (EOF) within `seconds`."""
    try:
        return await asyncio.wait_for(reader.read(4096), seconds) == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_connections_past_the_cap_are_closed_and_the_rest_still_served() -> None:
    async def handler(text: str) -> str:
        return echo_control_id(text)

    async with MLLPServer("127.0.0.1", 0, handler, max_connections=2) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0)  # let the server register them
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await _closed_within(extra_reader, 5)
        assert server.refused == 1
        extra_writer.close()
        held_reader, held_writer = held[0]
        held_writer.write(frame(ONE))  # a connection within the cap is answered
        await held_writer.drain()
        assert b"MSA|AA|M1" in await asyncio.wait_for(held_reader.read(4096), 5)
        held[1][1].close()
        for _ in range(100):  # a freed slot is taken again
            if len(server._connections) < 2:
                break
            await asyncio.sleep(0.01)
        acks = await exchange(server.port, [TWO])
        assert b"MSA|AA|M2" in acks[0]
        held_writer.close()


async def test_idle_and_trickling_connections_are_closed() -> None:
    async def handler(text: str) -> str:
        return echo_control_id(text)

    async with MLLPServer("127.0.0.1", 0, handler, idle_timeout=0.2, frame_timeout=0.3) as server:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await _closed_within(idle_reader, 5)
        idle_writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = asyncio.get_running_loop().time()
        body = frame(ONE)[:-2]
        closed = False
        for i in range(len(body)):  # one byte every 0.05 s: never idle, never done
            try:
                writer.write(body[i : i + 1])
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if await _closed_within(reader, 0.05):
                closed = True
                break
        assert closed
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()


async def test_an_oversized_message_is_answered_ar_naming_the_limit_and_not_handled() -> None:
    from monitor.sources.hl7v2 import build_ack

    seen: list[str] = []

    async def handler(text: str) -> str:
        seen.append(text)
        return echo_control_id(text)

    big = ONE + "OBX|1|NM|1742-6^ALT||" + "9" * 5000 + "\r"
    async with MLLPServer(
        "127.0.0.1",
        0,
        handler,
        max_message_bytes=1000,
        refuse=lambda head, reason: build_ack(head, "AR", reason),
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(big))
        await writer.drain()
        decoder = MLLPDecoder()
        acks: list[bytes] = []
        while not acks:
            data = await asyncio.wait_for(reader.read(4096), 5)
            assert data, "closed without an answer"
            acks += decoder.feed(data)
        writer.close()
        assert server.too_large == 1
    ack = acks[0].decode()
    assert "MSA|AR|M1" in ack
    assert "limit of 1000 bytes" in ack and "9999" not in ack
    assert seen == []


def test_a_whole_frame_over_the_limit_in_one_packet_is_dropped_too() -> None:
    decoder = MLLPDecoder(max_message_bytes=10)
    assert decoder.feed(frame("x" * 50)) == []
    assert decoder.overflows == 1 and decoder.overflow_head == b"x" * 50
    assert decoder.feed(frame("short")) == [b"short"]


async def test_closing_with_idle_connections_open_reports_no_error_to_the_loop() -> None:
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    async def handler(text: str) -> str:
        return echo_control_id(text)

    try:
        server = MLLPServer("127.0.0.1", 0, handler)
        await server.start()
        clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        while len(server._connections) < 3:  # each connection's handler has started
            await asyncio.sleep(0)
        await server.close()
        for _ in range(5):  # the protocols' done-callbacks run on later turns
            await asyncio.sleep(0)
        for reader, writer in clients:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            writer.close()
    finally:
        loop.set_exception_handler(None)
    assert errors == []
