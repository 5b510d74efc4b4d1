"""Outbound encryption through a real Postfix.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` for mail it
receives by SMTP (smtpd_milters) and from `sendmail -C` (non_smtpd_milters),
and relays everything to smtp-sink. The partner's secret key lives only in a
separate GnuPG home; delivered messages are decrypted there with gpg.

  a) internal sender -> partner with a key: PGP/MIME on the wire, decrypts to
     the original entity, outer headers unchanged, no plaintext anywhere.
  b) sealgate down: nothing reaches the sink, nothing is lost; after a
     restart and a queue flush, the queued mail arrives encrypted.
  c) a partner with a key and a keyless recipient in one transaction: the
     milter answers 452 4.5.3 for the second class; Postfix (as the relaying
     MTA) delivers it in a separate transaction -- one encrypted copy only to
     the partner, one plain copy only to the keyless recipient.
  d) a keyless external recipient gets the message unchanged.
"""

import functools
import os
import re
import sys
import time
import unittest
import uuid

import sgtest
import postfix

ALICE = "alice@example.com"
CAROL = "carol@partner.example"
DAVE = "dave@nokey.example"

STATE = {}

BINARY = sgtest.require_binary()
_ok, _why = postfix.can_run()
if not _ok:
    sgtest.skip_file(_why)
sgtest.require_program("gpg")


def setUpModule():
    binary = BINARY
    tmp = sgtest.tmpdir("sgpo")
    os.chmod(tmp, 0o755)

    carol = sgtest.GpgHome(os.path.join(tmp, "carol"))
    carol.gen_key("Carol Partner", CAROL)
    pub = os.path.join(tmp, "carol.asc")
    with open(pub, "wb") as f:
        f.write(carol.export_public(CAROL))

    # Policy: internal_domains [example.com], outbound default
    # encrypt-if-key. Postfix connects from 127.0.0.1.
    gw = sgtest.Gateway(os.path.join(tmp, "gw"))
    cp = gw.run("policy", "check", "-c", gw.policy)
    if cp.returncode != 0:
        raise RuntimeError("policy check failed (%d): %s%s"
                           % (cp.returncode, cp.stdout, cp.stderr))
    cp = gw.import_keys(pub)
    if cp.returncode != 0:
        raise RuntimeError("sealgate keys import failed (%d): %s%s"
                           % (cp.returncode, cp.stdout, cp.stderr))

    milter = postfix.MilterProcess(
        lambda spec: [binary, "milter", "-c", gw.policy, "-s", spec, "-f"],
        os.path.join(tmp, "sealgate.log"))
    milter.start()
    pf = postfix.PrivatePostfix(milter.postfix_spec)
    STATE.update(tmp=tmp, carol=carol, gw=gw, milter=milter, pf=pf)


def tearDownModule():
    pf = STATE.get("pf")
    if pf is not None:
        pf.stop()
    milter = STATE.get("milter")
    if milter is not None:
        milter.stop()
    carol = STATE.get("carol")
    if carol is not None:
        carol.kill()


def marker():
    return "PLAINTEXT-MARKER-%s" % uuid.uuid4().hex


def make_msg(to, body_marker, subject="Quarterly figures", extra_body=""):
    """A plain-text message with LF line ends and nothing swaks would expand
    (no '%' tokens, no backslashes)."""
    headers = sgtest.std_headers(sender="Alice Example <%s>" % ALICE,
                                 to="<%s>" % to, subject=subject)
    headers += [("Content-Type", "text/plain; charset=us-ascii"),
                ("Content-Transfer-Encoding", "7bit")]
    body = ("Hello,\n\nthe figures are attached below.\n%s\n%s\n"
            "Regards,\nAlice\n" % (body_marker, extra_body))
    msg = sgtest.make_message(headers, body, eol=b"\n")
    assert b"%" not in msg and b"\\" not in msg
    return msg


_ADDED_RECEIVED = re.compile(
    rb"^Received: [^\n]*(?:\n[ \t][^\n]*)*", re.I)


def strip_added_received(msg):
    """Remove the Received: fields the private Postfix prepended (the by-host
    is one of its own names); the original's own Received: stays."""
    while True:
        m = _ADDED_RECEIVED.match(msg)
        if not m or b"sgtest.invalid (Postfix" not in m.group(0):
            return msg
        msg = msg[m.end() + 1:]


def header(msg, name):
    fields, _ = sgtest.split_header_body(sgtest.canon(msg))
    return [sgtest.norm_value(v) for v in sgtest.header_values(fields, name)]


def top_content_type(msg):
    vals = header(msg, "Content-Type")
    return sgtest.parse_content_type(vals[0])[0] if vals else None


def with_diagnostics(fn):
    """On failure, print the maillog and sealgate's log of this test."""
    @functools.wraps(fn)
    def wrapper(self):
        try:
            fn(self)
        except unittest.SkipTest:
            raise
        except BaseException:
            sys.stderr.write("\n=== %s failed; diagnostics ===\n%s\n"
                             % (fn.__name__, self.diagnostics()))
            raise
    return wrapper


class PostfixOutbound(unittest.TestCase):

    def setUp(self):
        self.pf = STATE["pf"]
        self.milter = STATE["milter"]
        self.carol = STATE["carol"]
        if not self.milter.running():
            self.milter.start()
        self.reset_queue()
        self.pf.sink.clear()
        self.pf.mark_maillog()
        self.log_mark = self.milter.log_size()

    def reset_queue(self):
        """Start each test with an empty queue (mail left over from a failed
        test must not show up in the next one)."""
        if self.pf.queue():
            self.pf.flush()
            if not self.pf.wait_queue_empty(10):
                self.pf.purge_queue()
        time.sleep(0.5)

    def diagnostics(self):
        return ("--- maillog of this test ---\n%s\n--- postqueue -p ---\n%s\n"
                "--- sealgate log of this test ---\n%s\n--- sink files ---\n%s"
                % (self.pf.maillog_since(), self.pf.postqueue_p(),
                   self.milter.log_since(self.log_mark),
                   "\n".join(self.pf.sink.files())))

    # -- helpers ---------------------------------------------------------

    def submit(self, rcpts, msg, port=None):
        rc, transcript = self.pf.send_swaks(ALICE, rcpts, msg, port=port)
        self.assertEqual(rc, 0, "swaks failed:\n%s" % transcript)
        m = re.search(r"<-  250 2\.0\.0 Ok: queued as (\w+)", transcript)
        self.assertIsNotNone(m, "message not queued:\n%s" % transcript)
        return m.group(1), transcript

    def assert_encrypted_copy(self, delivered, original, secret):
        """delivered (a SinkMessage) is the PGP/MIME form of original for
        carol: no plaintext, outer fields kept, gpg decrypts it to the
        original entity."""
        self.assertNotIn(secret.encode(), delivered.raw,
                         "plaintext marker in the delivered bytes")
        self.assertEqual(top_content_type(delivered), "multipart/encrypted")
        ct = header(delivered, "Content-Type")[0]
        self.assertRegex(ct, r'(?i)protocol="?application/pgp-encrypted"?')
        out = sgtest.canon(strip_added_received(bytes(delivered)))
        sgtest.assert_outer_headers_kept(self, original, out)
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            self.assertEqual(header(delivered, name), header(original, name),
                             "%s changed" % name)
        plain = sgtest.assert_decrypts_to_original(self, self.carol, original, out)
        self.assertIn(secret.encode(), plain)
        return plain

    def assert_plain_copy(self, delivered, original, secret):
        """delivered is original, byte for byte, apart from Postfix's own
        Received: fields."""
        self.assertIn(secret.encode(), bytes(delivered))
        self.assertNotEqual(top_content_type(delivered), "multipart/encrypted")
        self.assertNotIn(b"-----BEGIN PGP MESSAGE-----", bytes(delivered))
        self.assertEqual(strip_added_received(bytes(delivered)), original,
                         "message to a keyless recipient was changed")

    def wait_sealgate_log(self, needle, timeout=5):
        end = time.monotonic() + timeout
        while True:
            text = self.milter.log_since(self.log_mark)
            if needle in text or time.monotonic() >= end:
                return text
            time.sleep(0.2)

    # -- tests -----------------------------------------------------------

    @with_diagnostics
    def test_a_partner_with_key_gets_pgp_mime(self):
        secret = marker()
        orig = make_msg(CAROL, secret)
        qid, _ = self.submit([CAROL], orig)

        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        got = msgs[0]
        self.assertEqual(got.mail_from, ALICE)
        self.assertEqual(got.rcpts, [CAROL])
        self.assert_encrypted_copy(got, orig, secret)
        self.assertTrue(self.pf.wait_queue_empty(10))

        # One log line per message, with the queue id Postfix gave it.
        log = self.wait_sealgate_log(qid)
        self.assertIn(qid, log, "queue id %s not in sealgate's log" % qid)
        self.assertNotIn(secret, log, "message content in sealgate's log")

    @with_diagnostics
    def test_b_sealgate_down_nothing_lost_nothing_in_clear(self):
        s_smtpd, s_pickup, s_relay = marker(), marker(), marker()
        m_smtpd = make_msg(CAROL, s_smtpd, subject="while down (smtpd)")
        m_pickup = make_msg(CAROL, s_pickup, subject="while down (sendmail)")
        m_relay = make_msg(CAROL, s_relay, subject="while down (relay stage)")

        rc = self.milter.stop()
        self.assertEqual(rc, 0, "sealgate did not exit cleanly on SIGTERM")
        try:
            # smtpd with the milter attached: the client gets 451 4.7.1 and
            # the message is not queued (the client keeps it).
            rc, transcript = self.pf.send_swaks(ALICE, [CAROL], m_smtpd)
            self.assertNotEqual(rc, 0, transcript)
            self.assertRegex(transcript, r"<\*\* 4\d\d 4\.7\.1 ")
            self.assertNotIn("queued as", transcript)

            # sendmail -C (pickup, non_smtpd_milters): accepted locally,
            # kept in the maildrop queue.
            rc, out = self.pf.sendmail(ALICE, [CAROL], m_pickup)
            self.assertEqual(rc, 0, out)
            self.assertTrue(self.pf.wait_maillog(
                r"cleanup\[\d+\]: \w+: milter-reject: \w+ from [^:]*: 4\.7\.1 ",
                timeout=20), "pickup/cleanup did not try the milter")

            # Relay stage: Postfix accepts without a milter and its SMTP
            # client gets 451 4.7.1 from the milter stage: deferred.
            qid_relay, _ = self.submit([CAROL], m_relay, port=self.pf.relay_port)
            self.assertTrue(self.pf.wait_maillog(
                qid_relay + r": to=<%s>.*status=deferred .*451 4\.7\.1"
                % re.escape(CAROL), timeout=20), "relay stage not deferred")

            time.sleep(2)   # let a few queue runs (1 s apart) pass
            self.assertEqual(self.pf.sink.files(), [],
                             "something reached the sink while sealgate was down")
            queue = self.pf.queue()
            where = sorted((e["queue_name"], e["sender"],
                            tuple(r["address"] for r in e["recipients"]))
                           for e in queue)
            self.assertEqual(len(queue), 2, where)
            names = sorted(e["queue_name"] for e in queue)
            self.assertIn("maildrop", names, where)
            self.assertTrue(set(names) <= {"maildrop", "deferred", "active",
                                           "incoming"}, where)
            for e in queue:
                self.assertEqual([r["address"] for r in e["recipients"]], [CAROL])
        finally:
            self.milter.start()

        self.pf.flush()
        msgs = self.pf.wait_for_sink(2, timeout=40, settle=2.0)
        self.assertEqual(len(msgs), 2, msgs)
        for m in msgs:
            self.assertEqual(m.rcpts, [CAROL])
            self.assertNotIn(s_smtpd.encode(), m.raw,
                             "the message refused with 451 was delivered anyway")
        by_subject = {header(m, "Subject")[0]: m for m in msgs}
        self.assertEqual(sorted(by_subject), ["while down (relay stage)",
                                              "while down (sendmail)"])
        self.assert_encrypted_copy(by_subject["while down (sendmail)"],
                                   m_pickup, s_pickup)
        self.assert_encrypted_copy(by_subject["while down (relay stage)"],
                                   m_relay, s_relay)
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())

    @with_diagnostics
    def test_c_mixed_classes_split_into_two_transactions(self):
        secret = marker()
        orig = make_msg(CAROL, secret)
        # To: names both; the envelope decides who gets which copy.
        orig = orig.replace(b"To: <%s>" % CAROL.encode(),
                            b"To: <%s>, <%s>" % (CAROL.encode(), DAVE.encode()))
        # Relay stage: the milter's client is Postfix's SMTP client, which
        # retries the recipient answered with 452 in another transaction.
        self.submit([CAROL, DAVE], orig, port=self.pf.relay_port)

        msgs = self.pf.wait_for_sink(2, timeout=40, settle=2.0)
        self.assertEqual(len(msgs), 2, msgs)
        by_rcpt = {tuple(m.rcpts): m for m in msgs}
        self.assertEqual(sorted(by_rcpt), [(CAROL,), (DAVE,)],
                         "each copy must go to one recipient only: %r" % msgs)
        self.assert_encrypted_copy(by_rcpt[(CAROL,)], orig, secret)
        self.assert_plain_copy(by_rcpt[(DAVE,)], orig, secret)
        self.assertTrue(self.pf.wait_maillog(
            r"milter-reject: RCPT from [^:]*: 452 4\.5\.3 ", timeout=5),
            "no 452 4.5.3 at RCPT time in the maillog")
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())

    @with_diagnostics
    def test_c2_mixed_classes_client_sees_452(self):
        """Directly at the smtpd with the milter, the submitting client gets
        the 452 4.5.3 for the recipient of the second class; what is
        accepted is delivered for the first class only."""
        secret = marker()
        orig = make_msg(CAROL, secret)
        rc, transcript = self.pf.send_swaks(ALICE, [CAROL, DAVE], orig)
        self.assertRegex(
            transcript,
            r"-> RCPT TO:<%s>\s*\n<\*\* 452 4\.5\.3 " % re.escape(DAVE))
        self.assertRegex(transcript, r"-> RCPT TO:<%s>\s*\n<-  250 " % re.escape(CAROL))
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=2.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].rcpts, [CAROL])
        self.assert_encrypted_copy(msgs[0], orig, secret)

    @with_diagnostics
    def test_d_keyless_recipient_unchanged(self):
        secret = marker()
        orig = make_msg(DAVE, secret)
        self.submit([DAVE], orig)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].mail_from, ALICE)
        self.assertEqual(msgs[0].rcpts, [DAVE])
        self.assert_plain_copy(msgs[0], orig, secret)


if __name__ == "__main__":
    unittest.main()
