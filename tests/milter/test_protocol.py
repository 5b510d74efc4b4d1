"""The milter protocol as sealgate negotiates it, seen from the MTA's side
(tests/lib/milterclient.py), on a unix socket and on 127.0.0.1.

On a unix socket sealgate asks the MTA not to wait for an answer to
connect, DATA, each header field, the end of the header and each body
chunk (SMFIP_NR_*): the MTA sends them back to back. It answers MAIL, RCPT
and the end of the message. A refusal found where no answer is given (a
message over gateway.max_message_size, a spool that fails) is given at the
end of the message, and belongs to that message only: the next message of
the connection, after an abort or after the refusal, is judged afresh.
Over TCP every step is answered (an MTA's small packets sent back to back
would wait on Nagle's algorithm), and a message too large is refused at
the body chunk that crosses the limit.

Checked here:
  - what each socket negotiates, offering everything Postfix offers;
  - a message pipelined in full over the unix socket gets exactly two
    answers before the end of the message (MAIL, RCPT); its replacement
    body is OpenPGP that carol's gpg decrypts to the original; over TCP
    every step is answered;
  - an MTA that offers no step without answer (protocol flags 0) is
    answered at every step on the unix socket too (libmilter answers
    for sealgate);
  - too large on the unix socket: no answer to the body, 552 5.3.4 at its
    end; the next message on the same connection is accepted and
    encrypted, also after an abort in the middle of a refused message;
  - too large over TCP: 552 5.3.4 at the body chunk;
  - through a real Postfix on the unix socket: the large message is
    refused at the end of DATA and nothing reaches smtp-sink; the next
    message of the same SMTP session arrives encrypted.
"""
import os
import re
import smtplib
import struct
import unittest

import milterclient
import postfix
import sgtest
from milterclient import Connection, _z

LIMIT = 100000          # gateway.max_message_size
CHUNK = milterclient.CHUNK

SMFIF_ACTIONS = 0x01 | 0x02 | 0x10          # ADDHDRS, CHGBODY, CHGHDRS
SMFIP_NR = {"connect": 0x1000, "data": 0x10000, "header": 0x80,
            "eoh": 0x40000, "body": 0x80000}
SMFIP_NR_MAIL_RCPT = 0x4000 | 0x8000
NR_ALL = sum(SMFIP_NR.values())
POSTFIX_OFFER = 0x1FFFFF       # every protocol flag of version 6

POLICY = """\
version: 1
gateway: {{ keystore: "store", spool_dir: "spool", max_message_size: {limit} }}
internal_domains: [example.com]
outbound:
  default: {{ action: encrypt-if-key }}
""".format(limit=LIMIT)

PGP_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----",
                    re.S)

STATE = {}


def setUpModule():
    sgtest.require_binary()
    sgtest.require_program("gpg")
    tmp = sgtest.tmpdir("sgproto")
    os.chmod(tmp, 0o755)            # the postfix user reaches the socket
    carol, _fpr = sgtest.new_key_home(tmp, sgtest.CAROL)
    gw = sgtest.Gateway(os.path.join(tmp, "gw"))
    with open(gw.policy, "w") as f:
        f.write(POLICY)
    gw.check_policy()
    gw.import_keys_checked(sgtest.export_public_key(tmp, carol, sgtest.CAROL))
    STATE.update(tmp=tmp, carol=carol, gw=gw)
    argv = lambda spec: [gw.bin, "milter", "-c", gw.policy, "-s", spec,  # noqa: E731
                         "-f"] + sgtest.milter_user_args()
    for name, unix in (("unix", os.path.join(tmp, "milter.sock")),
                       ("tcp", None)):
        m = postfix.MilterProcess(argv, os.path.join(tmp, name + ".log"),
                                  unix=unix)
        STATE[name] = m
        m.start()


def tearDownModule():
    for name in ("pf", "unix", "tcp"):
        if STATE.get(name) is not None:
            STATE[name].stop()
    if "carol" in STATE:
        STATE["carol"].kill()


def address(name):
    m = STATE[name]
    return m.unix if m.unix is not None else ("127.0.0.1", m.port)


def message(body_size=2000, rcpt=sgtest.CAROL):
    line = (sgtest.MARKER + " quarterly figures, confidential\r\n").encode()
    body = line * (body_size // len(line) + 1)
    return sgtest.make_message(sgtest.std_headers(to="<%s>" % rcpt), body)


def negotiate(conn, offer):
    conn.send(b"O", struct.pack(">III", milterclient.SMFI_VERSION, 0x1FF, offer))
    code, data = conn.reply()
    if code != b"O":
        raise milterclient.MilterError("option negotiation failed: %r" % code)
    return struct.unpack(">III", data[:12])


def open_session(name, offer=POSTFIX_OFFER):
    conn = Connection(address(name))
    _version, actions, steps = negotiate(conn, offer)
    conn.send(b"C", _z("localhost") + b"4" + struct.pack(">H", 25) + _z("127.0.0.1"),
              ("j", "mx.example.com"))
    return conn, actions, steps


def send_transaction(conn, msg, rcpt=sgtest.CAROL, end=True):
    """MAIL, RCPT, DATA, the header fields, end of header, the body and
    (end) end of message, sent back to back without reading an answer."""
    conn.send(b"M", _z("<%s>" % sgtest.SENDER), ("i", "PROTO1"))
    conn.send(b"R", _z("<%s>" % rcpt))
    conn.send(b"T")
    fields, body = milterclient.split_message(msg)
    for name, value in fields:
        conn.send(b"L", _z(name, value))
    conn.send(b"N")
    for off in range(0, len(body), CHUNK):
        conn.send(b"B", body[off:off + CHUNK])
    if end:
        conn.send(b"E")
    return len(fields), (len(body) + CHUNK - 1) // CHUNK


def answers(conn):
    """The answers up to the final one: ([continue count], final code,
    final data, [(code, data)] modifications)."""
    continues, mods = 0, []
    while True:
        code, data = conn.reply()
        if code == b"c":
            continues += 1
        elif code in (b"a", b"r", b"t", b"y", b"d"):
            return continues, code, data, mods
        else:
            mods.append((code, data))


def replacement_body(mods):
    return b"".join(data for code, data in mods if code == b"b")


class Protocol(unittest.TestCase):
    def assert_encrypted_for_carol(self, mods):
        body = replacement_body(mods)
        armored = PGP_RE.search(body)
        self.assertIsNotNone(armored, body[:500])
        rc, plain, err = STATE["carol"].decrypt(armored.group(0))
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        self.assertIn(sgtest.MARKER.encode(), plain)

    def test_a_negotiated_steps(self):
        for name, want in (("unix", NR_ALL), ("tcp", 0)):
            with self.subTest(socket=name):
                conn, actions, steps = open_session(name)
                conn.close()
                self.assertEqual(actions, SMFIF_ACTIONS)
                self.assertEqual(steps & NR_ALL, want, hex(steps))
                # MAIL and RCPT are always answered.
                self.assertEqual(steps & SMFIP_NR_MAIL_RCPT, 0, hex(steps))

    def test_b_unix_answers_mail_rcpt_and_end_only(self):
        conn, _a, _s = open_session("unix")
        try:
            send_transaction(conn, message())
            continues, code, data, mods = answers(conn)
        finally:
            conn.close()
        self.assertEqual(continues, 2)
        self.assertEqual(code, b"a", data)
        self.assert_encrypted_for_carol(mods)

    def test_c_tcp_answers_every_step(self):
        conn, _a, _s = open_session("tcp")
        try:
            fields, chunks = send_transaction(conn, message(3 * CHUNK // 2))
            continues, code, data, mods = answers(conn)
        finally:
            conn.close()
        # connect, MAIL, RCPT, DATA, each field, end of header, each chunk
        self.assertEqual(chunks, 2)
        self.assertEqual(continues, 4 + fields + 1 + chunks)
        self.assertEqual(code, b"a", data)
        self.assert_encrypted_for_carol(mods)

    def test_d_mta_without_steps_without_answer(self):
        answer, mods = milterclient.send_message(address("unix"), sgtest.SENDER,
                                                 [sgtest.CAROL], message())
        self.assertEqual(answer, "accept")
        self.assert_encrypted_for_carol(mods)

    def test_e_unix_too_large_refused_at_end_then_next_message(self):
        conn, _a, _s = open_session("unix")
        try:
            send_transaction(conn, message(LIMIT + 3 * CHUNK))
            continues, code, data, mods = answers(conn)
            self.assertEqual(continues, 2)
            self.assertEqual(code, b"y")
            self.assertRegex(data.decode(), r"^552 5\.3\.4 .*limit of %d" % LIMIT)
            self.assertEqual(mods, [])
            # The next message of the connection is its own.
            send_transaction(conn, message())
            continues, code, data, mods = answers(conn)
            self.assertEqual((continues, code), (2, b"a"), data)
            self.assert_encrypted_for_carol(mods)
        finally:
            conn.close()

    def test_f_unix_abort_after_refusal_found(self):
        conn, _a, _s = open_session("unix")
        try:
            # Over the limit, then the MTA gives up on the message.
            send_transaction(conn, message(LIMIT + 2 * CHUNK), end=False)
            conn.send(b"A")
            send_transaction(conn, message())
            continues, code, data, mods = answers(conn)
            self.assertEqual((continues, code), (4, b"a"), data)
            self.assert_encrypted_for_carol(mods)
        finally:
            conn.close()

    def test_g_tcp_too_large_refused_at_body(self):
        conn, _a, _s = open_session("tcp")
        try:
            fields, _chunks = send_transaction(conn, message(LIMIT + 3 * CHUNK),
                                               end=False)
            continues, code, data, _mods = answers(conn)
        finally:
            conn.close()
        self.assertEqual(code, b"y")
        self.assertRegex(data.decode(), r"^552 5\.3\.4 ")
        # Refused at the chunk that crossed the limit, the second.
        self.assertEqual(continues, 4 + fields + 1 + 1)


class ThroughPostfix(unittest.TestCase):
    """The unix socket's held refusal through a real Postfix."""

    @classmethod
    def setUpClass(cls):
        STATE["pf"] = cls.pf = postfix.PrivatePostfix(
            STATE["unix"].postfix_spec, extra_main={"message_size_limit": "10000000"})

    def test_too_large_then_next_message_in_the_session(self):
        big = message(LIMIT + 3 * CHUNK)
        small = message()
        s = smtplib.SMTP("127.0.0.1", self.pf.port, timeout=60)
        try:
            s.ehlo("client.example.com")
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail(sgtest.SENDER, [sgtest.CAROL], big)
            self.assertEqual(cm.exception.smtp_code, 552)
            self.assertIn(b"5.3.4", cm.exception.smtp_error)
            s.sendmail(sgtest.SENDER, [sgtest.CAROL], small)
        finally:
            s.quit()
        got = self.pf.wait_for_sink(1, timeout=60)
        self.pf.wait_queue_empty()
        self.assertEqual(len(self.pf.sink_messages()), 1)
        self.assertNotIn(sgtest.MARKER.encode(), bytes(got[0]))
        sgtest.assert_decrypts_to_original(self, STATE["carol"], small, bytes(got[0]))


if __name__ == "__main__":
    unittest.main()
