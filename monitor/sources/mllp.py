"""MLLP: HL7 v2 over TCP, framed as 0x0B <message> 0x1C 0x0D.

`MLLPDecoder` cuts a byte stream into messages whatever the packets look like;
`MLLPServer` runs the listener. The server knows nothing of HL7 or the store: its
handler takes one message text and returns the ACK text, and the caller stores
the message *before* returning, so an ACK always means "committed". When the
handler raises, the connection is closed with no ACK and the sender, which has
not been told the message was taken, sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 50  # an interface engine uses a few; a flood is refused past this
DEFAULT_IDLE_TIMEOUT = 120.0  # seconds without a byte
DEFAULT_FRAME_TIMEOUT = 30.0  # seconds for a frame, once started, to end
HEAD_BYTES = 4096  # kept of a frame too large to take: its MSH, to answer it with AR

Handler = Callable[[str], Awaitable[str]]
# (the first bytes of a refused message as text, the reason) -> the AR to send back
Refusal = Callable[[str, str], str]


def frame(text: str | bytes, encoding: str = "utf-8") -> bytes:
    """One message wrapped for the wire."""
    body = text.encode(encoding) if isinstance(text, str) else text
    return bytes([START_BLOCK]) + body + bytes([END_BLOCK, CARRIAGE_RETURN])


def decode_text(message: bytes) -> str:
    """Message bytes as text: UTF-8, or Latin-1 for the older senders that use it."""
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        return message.decode("latin-1")


class MLLPDecoder:
    """Incremental MLLP framing: feed bytes as they arrive, get whole messages back.

    Frames split across packets are joined, several frames in one packet are all
    returned, and bytes outside a frame (noise, keep-alives) are skipped and
    counted in `discarded_bytes`. A start block inside a frame means the frame
    was cut off: its bytes are dropped and counted in `broken_frames`, since a
    partial message must never be handed on. A frame longer than
    `max_message_bytes` is dropped too (`overflows`), to bound memory; its first
    `HEAD_BYTES` stay in `overflow_head` so the sender can be answered.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.discarded_bytes = 0
        self.broken_frames = 0
        self.overflows = 0
        self.overflow_head: bytes | None = None
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0  # bytes of the current frame already searched for an end

    @property
    def pending(self) -> int:
        """Bytes held for a frame that has not ended yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            if not self._in_frame:
                start = self._buffer.find(START_BLOCK)
                if start == -1:
                    self.discarded_bytes += len(self._buffer)
                    self._buffer.clear()
                    return out
                self.discarded_bytes += start
                del self._buffer[: start + 1]
                self._in_frame = True
                self._scanned = 0
            end = self._buffer.find(END_BLOCK, self._scanned)
            restart = self._buffer.find(START_BLOCK, self._scanned)
            if restart != -1 and (end == -1 or restart < end):
                self.broken_frames += 1
                self.discarded_bytes += restart + 1
                del self._buffer[:restart]
                self._in_frame = False
                continue
            if end > self.max_message_bytes:  # a whole frame over the limit in one read
                self.overflows += 1
                self.overflow_head = bytes(self._buffer[: min(end, HEAD_BYTES)])
                self.discarded_bytes += end + 1
                del self._buffer[: end + 1]
                self._in_frame = False
                continue
            if end == -1:
                if len(self._buffer) > self.max_message_bytes:
                    self.overflows += 1
                    self.overflow_head = bytes(self._buffer[:HEAD_BYTES])
                    self.discarded_bytes += len(self._buffer)
                    self._buffer.clear()
                    self._in_frame = False
                    return out
                self._scanned = len(self._buffer)
                return out
            if end + 1 >= len(self._buffer):
                self._scanned = end  # wait for the byte after 0x1C
                return out
            out.append(bytes(self._buffer[:end]))
            consumed = end + 2 if self._buffer[end + 1] == CARRIAGE_RETURN else end + 1
            del self._buffer[:consumed]
            self._in_frame = False


class MLLPServer:
    """An asyncio MLLP listener: many connections, messages handled in order per connection.

    `handler(text) -> ack_text` is awaited for each message; the ACK is sent only
    after it returns. `close()` stops accepting, lets a handler that is running
    finish and send its ACK (up to `shutdown_grace` seconds), and drops idle
    connections. `port=0` picks a free port; read it from `port` after `start()`.

    Bounded: past `max_connections` a new connection is closed at once (counted in
    `refused`), so a flood of idle sockets cannot take the process's descriptors; a
    connection silent for `idle_timeout` seconds is closed, and so is one whose
    frame has started but not ended within `frame_timeout` (a slow sender cannot
    hold a slot by trickling bytes). A frame over `max_message_bytes` is answered
    with `refuse(head, reason)` (an AR naming the limit, so the sender stops resending
    and someone looks) and the connection closed; nothing of it is stored.

    With `tls` (an `ssl.SSLContext`, see `monitor.sources.mllp_tls`) the listener
    speaks MLLP inside TLS; a client without an accepted certificate fails the
    handshake and never reaches the handler.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        shutdown_grace: float = 10.0,
        tls: ssl.SSLContext | None = None,
        refuse: Refusal | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._handler = handler
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.max_connections = max_connections
        self.refused = 0
        self.shutdown_grace = shutdown_grace
        self.tls = tls
        self.refuse = refuse
        self.too_large = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False
        self._stopped = asyncio.Event()

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        if self._server is not None:
            return
        self._closing = False
        self._stopped.clear()
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self._port,
            ssl=self.tls,
            # a TLS handshake is bounded like a frame: a silent socket cannot hold it open
            ssl_handshake_timeout=(self.frame_timeout or DEFAULT_FRAME_TIMEOUT)
            if self.tls
            else None,
        )
        log.info("mllp.listening", host=self.host, port=self.port, tls=self.tls is not None)

    async def serve_forever(self) -> None:
        """Start if needed and run until `close()`."""
        await self.start()
        await self._stopped.wait()

    async def close(self) -> None:
        server = self._server
        if server is None:
            return
        self._closing = True
        server.close()
        for task in list(self._connections):
            if task not in self._busy:
                task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await server.wait_closed()
        self._server = None
        self._stopped.set()
        log.info("mllp.closed", port=self._port)

    async def __aenter__(self) -> MLLPServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _read(self, reader: asyncio.StreamReader, frame_deadline: float | None) -> bytes:
        """The next bytes, within the idle timeout and the open frame's deadline."""
        limits = [t for t in (self.idle_timeout,) if t is not None]
        if frame_deadline is not None:
            limits.append(max(0.0, frame_deadline - asyncio.get_running_loop().time()))
        if not limits:
            return await reader.read(65536)
        return await asyncio.wait_for(reader.read(65536), min(limits))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            log.warning("mllp.connection_refused", peer=str(peer), limit=self.max_connections)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._connections.add(task)
        decoder = MLLPDecoder(self.max_message_bytes)
        log.info("mllp.connected", peer=str(peer))
        frame_deadline: float | None = None
        try:
            while not self._closing:
                try:
                    data = await self._read(reader, frame_deadline)
                except TimeoutError:
                    why = "mllp.frame_timeout" if frame_deadline else "mllp.idle_timeout"
                    log.info(why, peer=str(peer))
                    return
                if not data:
                    return
                messages = decoder.feed(data)
                if decoder.pending and self.frame_timeout is not None:
                    if frame_deadline is None:
                        frame_deadline = asyncio.get_running_loop().time() + self.frame_timeout
                else:
                    frame_deadline = None
                if decoder.overflows:
                    await self._refuse_too_large(decoder, writer, str(peer))
                    return
                for message in messages:
                    if not await self._answer(task, message, writer, str(peer)):
                        return
                    if self._closing:
                        return
        except (ConnectionError, OSError) as exc:
            log.info("mllp.connection_lost", peer=str(peer), error=type(exc).__name__)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # close() ended this idle connection: a normal end, not an error. (Python
            # 3.11's StreamReaderProtocol reports a cancelled handler task to the loop's
            # exception handler: one error and a traceback per open connection at every
            # shutdown.)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if decoder.discarded_bytes or decoder.broken_frames:
                log.warning(
                    "mllp.noise",
                    peer=str(peer),
                    discarded_bytes=decoder.discarded_bytes,
                    broken_frames=decoder.broken_frames,
                )
            log.info("mllp.disconnected", peer=str(peer))

    async def _refuse_too_large(
        self, decoder: MLLPDecoder, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        self.too_large += 1
        log.warning("mllp.message_too_large", peer=peer, limit=self.max_message_bytes)
        if self.refuse is None or decoder.overflow_head is None:
            return
        reason = (
            f"message larger than this receiver's limit of {self.max_message_bytes} bytes "
            "(sources.mllp.max_message_bytes): not stored, split it or raise the limit"
        )
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(frame(self.refuse(decode_text(decoder.overflow_head), reason)))
            await writer.drain()

    async def _answer(
        self, task: asyncio.Task[None], message: bytes, writer: asyncio.StreamWriter, peer: str
    ) -> bool:
        """Handle one message and send its ACK; False when the connection must close."""
        self._busy.add(task)
        try:
            try:
                ack = await self._handler(decode_text(message))
            except Exception as exc:
                # no message text in the log: it holds patient data
                log.error(
                    "mllp.handler_failed", peer=peer, error=type(exc).__name__, bytes=len(message)
                )
                return False
            writer.write(frame(ack))
            await writer.drain()
            return True
        finally:
            self._busy.discard(task)
