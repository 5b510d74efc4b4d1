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

import re
import time
import unittest

import miltertest
from miltertest import ALICE, CAROL, header, make_msg, marker, with_diagnostics

DAVE = "dave@nokey.example"

STATE = {}

BINARY = miltertest.require_tools()


def setUpModule():
    # Policy: internal_domains [example.com], outbound default
    # encrypt-if-key. Postfix connects from 127.0.0.1.
    miltertest.set_up_gateway(STATE, "sgpo")
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)


class PostfixOutbound(miltertest.MilterTestCase):

    state = STATE

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
        self.wait_sealgate_log(re.escape(qid), timeout=5)
        log = self.milter.log_since(self.log_mark)
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
