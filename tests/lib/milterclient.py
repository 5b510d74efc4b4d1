"""A minimal milter-protocol client (the MTA side), for tests that watch
the protocol itself (progress reports) and for benchmarks that drive
`sealgate milter` directly, without an MTA's own costs in the figures.

It speaks protocol version 6 as Postfix does: option negotiation offering no
protocol shortcuts, so the milter answers every step; then connect, HELO,
MAIL, RCPT, the header fields, end of header, the body and end of message,
collecting the milter's modifications until its final answer.
"""
import socket
import struct

SMFI_VERSION = 6
ALL_ACTIONS = 0x1FF
FINAL = {b"a": "accept", b"c": "continue", b"r": "reject", b"t": "tempfail",
         b"d": "discard", b"y": "reply"}
CHUNK = 65535


class MilterError(Exception):
    pass


class Connection:
    def __init__(self, address, timeout=60):
        """address: (host, port), or the path of a unix socket."""
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.send(b"Q")
        except OSError:
            pass
        self.sock.close()

    @staticmethod
    def packet(cmd, data=b""):
        return struct.pack(">I", len(data) + 1) + cmd + data

    def send(self, cmd, data=b"", macros=None):
        """Sends a command, after the macros (a D packet) for it if any:
        in one write, as an MTA does."""
        head = b""
        if macros:
            head = self.packet(b"D", cmd + _z(*macros))
        self.sock.sendall(head + self.packet(cmd, data))

    def _read(self, n):
        while len(self.buf) < n:
            got = self.sock.recv(65536)
            if not got:
                raise MilterError("the milter closed the connection")
            self.buf += got
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self):
        (length,) = struct.unpack(">I", self._read(4))
        packet = self._read(length)
        return packet[:1], packet[1:]

    def step(self, cmd, data=b"", macros=None):
        """Sends one step; returns the milter's answer (a FINAL value)."""
        self.send(cmd, data, macros)
        code, _data = self.reply()
        if code not in FINAL:
            raise MilterError("unexpected answer %r to %r" % (code, cmd))
        return FINAL[code]


def _z(*parts):
    return b"".join(p.encode() + b"\0" for p in parts)


def negotiate(conn):
    conn.send(b"O", struct.pack(">III", SMFI_VERSION, ALL_ACTIONS, 0))
    code, _data = conn.reply()
    if code != b"O":
        raise MilterError("option negotiation failed: %r" % code)


def split_message(msg):
    """(fields as [(name, value)], body) of a message in bytes (CRLF)."""
    head, _sep, body = msg.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line.decode())
        else:
            name, _c, value = line.decode().partition(":")
            fields.append((name, value.lstrip(" ")))
    return fields, body


def send_message(address, sender, rcpts, msg, queue_id="BENCH1",
                 client=("localhost", "127.0.0.1")):
    """One SMTP session with one message through the milter at address
    (see Connection). Returns (final answer, [(code, data)]): the
    modifications and progress reports (b"p") after end of message, in
    order."""
    conn = Connection(address)
    try:
        negotiate(conn)
        answer = conn.step(b"C", _z(client[0]) + b"4" + struct.pack(">H", 25) +
                           _z(client[1]),
                           ("j", "mx.example.com", "{daemon_name}", "bench"))
        if answer == "continue":
            answer = conn.step(b"H", _z("client.example.com"))
        if answer == "continue":
            answer = conn.step(b"M", _z("<%s>" % sender), ("i", queue_id))
        for rcpt in rcpts:
            if answer != "continue":
                break
            answer = conn.step(b"R", _z("<%s>" % rcpt))
        fields, body = split_message(msg)
        for name, value in fields:
            if answer != "continue":
                break
            answer = conn.step(b"L", _z(name, value))
        if answer == "continue":
            answer = conn.step(b"N")
        for off in range(0, len(body), CHUNK):
            if answer != "continue":
                break
            answer = conn.step(b"B", body[off:off + CHUNK])
        mods = []
        if answer == "continue":
            conn.send(b"E")
            while True:
                code, data = conn.reply()
                if code in FINAL:
                    answer = FINAL[code]
                    break
                mods.append((code, data))   # b"p" (progress): keep waiting
        return answer, mods
    finally:
        conn.close()
