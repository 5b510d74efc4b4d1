"""The milter protocol as sealgate negotiates it, seen from the MTA's side
(tests/lib/milterclient.py), on a unix socket and on 127.0.0.1.

On a unix socket sealgate asks the MTA not to wait for an answer to DATA,
each header field and the end of the header (SMFIP_NR_DATA, _HDR, _EOH):
the MTA sends them back to back. Connect, MAIL, RCPT, each body chunk and
the end of the message are answered. A spool that fails while the header
is read is refused at the end of the message (451 4.3.0), and that
refusal belongs to its message only: the next message of the connection,
after an abort or after the refusal, is judged afresh. Over TCP every
step is answered (an MTA's small packets sent back to back would wait on
Nagle's algorithm), so there the refusal comes at the header field.

Checked here (the milters run as root without the capabilities that
ignore file modes, so that a spool directory without write permission
stops them):
  - what each socket negotiates, offering everything Postfix offers;
  - a message pipelined in full over the unix socket gets exactly four
    answers before the end of the message (connect, MAIL, RCPT, the body
    chunk); its replacement body is OpenPGP that carol's gpg decrypts to
    the original; over TCP every step is answered; also when the MTA
    sends the last body bytes with the end of the message;
  - an MTA that offers no step without answer (protocol flags 0) is
    answered at every step on the unix socket too (libmilter answers
    for sealgate);
  - too large (gateway.max_message_size), on either socket: 552 5.3.4 at
    the body chunk that crosses the limit; the next message on the same
    connection is accepted and encrypted;
  - the spool fails in the header (fields over its memory bound, spool
    directory not writable): on the unix socket no answer until the end
    of the message, then 451 4.3.0, and the next message of the
    connection is accepted; also when the MTA aborts the refused message;
    over TCP 451 at the field where it failed;
  - a refusal whose text would be too long for libmilter (a missing-key
    refusal naming 40 recipients) keeps its code and the start of its
    text, cut with "...";
  - through a real Postfix on the unix socket: the large message is
    refused and nothing reaches smtp-sink; the next message of the same
    SMTP session arrives encrypted.
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
SPOOL_MEMORY = 1024 * 1024                  # the spool's memory bound
DAC_CAPS = "-dac_override,-dac_read_search"
SMFIP_NR = {"data": 0x10000, "header": 0x80, "eoh": 0x40000}
NR_ALL = sum(SMFIP_NR.values())
# Never asked for: no answer to connect, HELO, MAIL, RCPT, unknown
# commands, body chunks; SMFIS_SKIP, rejected recipients, leading spaces.
NOT_ASKED = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x20000 | 0x80000 | \
    0x400 | 0x800 | 0x100000
POSTFIX_OFFER = 0x1FFFFF       # every protocol flag of version 6

POLICY = """\
version: 1
gateway: {{ keystore: "store", spool_dir: "spool", max_message_size: {limit} }}
internal_domains: [example.com]
outbound:
  default: {{ action: encrypt-if-key }}
  rules:
    - name: mandatory
      when: {{ recipient_domain: [nokey.example] }}
      action: encrypt
      on_missing_key: reject
""".format(limit=LIMIT)

PGP_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----",
                    re.S)

STATE = {}


def setUpModule():
    sgtest.require_binary()
    sgtest.require_program("gpg")
    setpriv = sgtest.require_program("setpriv")
    tmp = sgtest.tmpdir("sgproto")
    os.chmod(tmp, 0o755)            # the postfix user reaches the socket
    carol, _fpr = sgtest.new_key_home(tmp, sgtest.CAROL)
    gw = sgtest.Gateway(os.path.join(tmp, "gw"))
    with open(gw.policy, "w") as f:
        f.write(POLICY)
    gw.check_policy()
    gw.import_keys_checked(sgtest.export_public_key(tmp, carol, sgtest.CAROL))
    STATE.update(tmp=tmp, carol=carol, gw=gw)
    argv = lambda spec: [setpriv, "--inh-caps=" + DAC_CAPS,  # noqa: E731
                         "--bounding-set=" + DAC_CAPS, "--", gw.bin, "milter",
                         "-c", gw.policy, "-s", spec, "-f"] + \
        sgtest.milter_user_args()
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


def message(body_size=2000, rcpt=sgtest.CAROL, extra_fields=()):
    line = (sgtest.MARKER + " quarterly figures, confidential\r\n").encode()
    body = line * (body_size // len(line) + 1)
    return sgtest.make_message(sgtest.std_headers(to="<%s>" % rcpt) +
                               list(extra_fields), body)


def big_header_message():
    """A message whose header alone is over the spool's memory bound."""
    value = "x" * 60000
    n = SPOOL_MEMORY // len(value) + 2
    return message(extra_fields=[("X-Filler-%d" % i, value) for i in range(n)]), n


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


def send_transaction(conn, msg, rcpt=sgtest.CAROL, end=True, body_in_end=False):
    """MAIL, RCPT, DATA, the header fields, end of header, the body and
    (end) end of message, sent back to back without reading an answer.
    body_in_end: the last body chunk goes with the end of message."""
    conn.send(b"M", _z("<%s>" % sgtest.SENDER), ("i", "PROTO1"))
    for r in [rcpt] if isinstance(rcpt, str) else rcpt:
        conn.send(b"R", _z("<%s>" % r))
    conn.send(b"T")
    fields, body = milterclient.split_message(msg)
    for name, value in fields:
        conn.send(b"L", _z(name, value))
    conn.send(b"N")
    chunks = [body[off:off + CHUNK] for off in range(0, len(body), CHUNK)]
    last = chunks.pop() if body_in_end else b""
    for chunk in chunks:
        conn.send(b"B", chunk)
    if end:
        conn.send(b"E", last)
    return len(fields), len(chunks)


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
                self.assertEqual(steps & NOT_ASKED, 0, hex(steps))

    def test_b_unix_answers_connect_envelope_body_and_end(self):
        for body_in_end in (False, True):
            with self.subTest(body_in_end=body_in_end):
                conn, _a, _s = open_session("unix")
                try:
                    _fields, chunks = send_transaction(conn, message(),
                                                       body_in_end=body_in_end)
                    continues, code, data, mods = answers(conn)
                finally:
                    conn.close()
                self.assertEqual(continues, 3 + chunks)
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

    def test_e_too_large_refused_at_body_then_next_message(self):
        for name in ("unix", "tcp"):
            with self.subTest(socket=name):
                conn, _a, steps = open_session(name)
                try:
                    fields, _chunks = send_transaction(
                        conn, message(LIMIT + 3 * CHUNK), end=False)
                    continues, code, data, mods = answers(conn)
                    self.assertEqual(code, b"y")
                    self.assertRegex(data.decode(),
                                     r"^552 5\.3\.4 .*limit of %d" % LIMIT)
                    self.assertEqual(mods, [])
                    # Refused at the second chunk, the one over the limit.
                    header_steps = 0 if steps & NR_ALL else 1 + fields + 1
                    self.assertEqual(continues, 3 + header_steps + 1)
                    # The next message of the connection is its own.
                    conn.send(b"A")
                    send_transaction(conn, message())
                    continues, code, data, mods = answers(conn)
                    self.assertEqual(code, b"a", data)
                    self.assert_encrypted_for_carol(mods)
                finally:
                    conn.close()

    def test_i_long_refusal_text_cut(self):
        # The missing-key refusal names every recipient without a key: 40
        # of 60 characters make a text libmilter would not take (over 980
        # bytes), which used to leave the MTA a bare "5.7.1 Command
        # rejected" without the reason.
        rcpts = ["%s-%02d@nokey.example" % ("r" * 44, i) for i in range(40)]
        conn, _a, _s = open_session("unix")
        try:
            send_transaction(conn, message(rcpt=rcpts[0]), rcpt=rcpts)
            continues, code, data, mods = answers(conn)
        finally:
            conn.close()
        self.assertEqual((continues, code), (3 + len(rcpts), b"y"))
        self.assertEqual([m for m in mods if m[0] != b"p"], [])
        text = data.rstrip(b"\0").decode()
        self.assertRegex(text, r'^550 5\.7\.1 encryption required by rule '
                         r'"mandatory"; no usable .* for: ' + re.escape(rcpts[0]))
        self.assertTrue(text.endswith("..."), text)
        self.assertLessEqual(len(text), 980)

    def spool_fails(self, name, abort):
        """A message whose header overflows the spool's memory into a
        directory the milter may not write; then (abort: after an abort
        instead of its end) a small message on the same connection."""
        spool = os.path.join(STATE["gw"].dir, "spool")
        big, _n = big_header_message()
        second = None
        conn, _a, _s = open_session(name)
        try:
            os.chmod(spool, 0o500)
            try:
                fields, chunks = send_transaction(conn, big, end=not abort)
                if abort:
                    conn.send(b"A")
                    send_transaction(conn, message())
                first = answers(conn)
            finally:
                os.chmod(spool, 0o700)
            if not abort:
                send_transaction(conn, message())
                second = answers(conn)
        finally:
            conn.close()
        return fields, chunks, first, second

    def test_f_unix_spool_fails_in_header_refused_at_end(self):
        fields, chunks, first, second = self.spool_fails("unix", abort=False)
        continues, code, data, mods = first
        self.assertEqual((code, mods), (b"y", []))
        self.assertRegex(data.decode(), r"^451 4\.3\.0 ")
        # No answer to the fields, the end of header; the body is answered.
        self.assertEqual(continues, 3 + chunks)
        continues, code, data, mods = second
        self.assertEqual(code, b"a", data)
        self.assert_encrypted_for_carol(mods)
        log = STATE["unix"].log_text()
        self.assertRegex(log, r"cannot spool header in \S+: Permission denied")

    def test_g_unix_spool_fails_then_abort(self):
        _fields, chunks, first, _second = self.spool_fails("unix", abort=True)
        continues, code, data, mods = first
        # The refused message ended with an abort: the next one is judged
        # on its own (connect, 2 x (MAIL, RCPT), the chunks of both).
        self.assertEqual(code, b"a", data)
        self.assertEqual(continues, 1 + 2 + chunks + 2 + 1)
        self.assert_encrypted_for_carol(mods)

    def test_h_tcp_spool_fails_at_the_field(self):
        fields, _chunks, first, second = self.spool_fails("tcp", abort=False)
        continues, code, data, mods = first
        self.assertEqual((code, mods), (b"y", []))
        self.assertRegex(data.decode(), r"^451 4\.3\.0 ")
        self.assertGreater(fields, SPOOL_MEMORY // 60000)
        # connect, MAIL, RCPT, DATA and the fields that fit in memory
        self.assertLess(continues, 4 + fields)
        self.assertGreaterEqual(continues, 4 + SPOOL_MEMORY // 60000 - 1)
        self.assertEqual(second[1], b"a", second[2])


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


class ZStop(unittest.TestCase):
    """Last: the milters stop on SIGTERM, and in a sanitizer build their
    logs hold no report (a use after free, a leak, undefined behaviour)."""

    def test_no_sanitizer_report(self):
        for name in ("unix", "tcp"):
            m = STATE[name]
            m.stop()
            log = m.log_text()
            for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                self.assertNotIn(word, log, "%s milter: %s" % (name, log[-3000:]))


if __name__ == "__main__":
    unittest.main()
