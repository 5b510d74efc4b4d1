"""Local submission through a real Postfix against `sealgate process`
without --client-ip and --auth.

A private Postfix (tests/lib/postfix.py) hands mail from its `sendmail -C`
(pickup, non_smtpd_milters) to `sealgate milter`; Postfix presents such mail
as a connection from localhost[127.0.0.1] without SASL login. `sealgate
process` run on the same message with no client options must decide the same:
same verdict, rule, action, method, keys and reason as the milter's log line,
the same refusal text that Postfix logs.

Keystore: carol@partner.example's public key (her secret key only in her own
GnuPG home) and alice@example.com's secret key. Policy: trusted_networks and
signing_networks at their defaults (loopback trusted; no signing without a
login), default encrypt-if-key; "must-sign" (signed@other.example) signs or
rejects, "may-sign" (maybe@other.example) signs or sends plain.

  a) alice -> carol: both encrypt; gpg in carol's home decrypts both.
  b) alice -> signed@other.example: the milter refuses (Postfix logs the
     reply for localhost[127.0.0.1]); process exits 2 with that reply.
  c) alice -> maybe@other.example: both leave the message as it was.
"""

import os
import re
import unittest

import miltertest
import sgtest
from miltertest import ALICE, CAROL, make_msg, marker, with_diagnostics

SIGNED = "signed@other.example"
MAYBE = "maybe@other.example"
ASSUMED = "127.0.0.1 (assumed: local submission; --client-ip/--auth to change)"

POLICY = sgtest.policy_yaml(rules=sgtest.SIGN_RULES)

# The milter's summary line (gateway/milter.c log_summary).
SUMMARY_RE = (r"sealgate: (\w+): from=<%s> rcpts=1 class=\S+ verdict=(\S+) rule=(\S+) "
              r"action=(\S+) method=(\S+) keys=(\S+) reason=\"(.*)\" time=" % re.escape(ALICE))

STATE = {}

BINARY = miltertest.require_tools()


def setUpModule():
    miltertest.set_up_gateway(STATE, "sgpl", policy=POLICY)
    tmp, gw = STATE["tmp"], STATE["gw"]
    signer = sgtest.GpgHome(os.path.join(tmp, "alice"))
    signer.gen_key("Alice Example", ALICE)
    path = os.path.join(tmp, "alice.sec.asc")
    with open(path, "wb") as f:
        f.write(signer.export_secret(ALICE))
    signer.kill()
    gw.import_keys_checked(path)
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)


class PostfixLocalSubmission(miltertest.MilterTestCase):

    state = STATE

    def milter_decision(self):
        """(queue id, (verdict, rule, action, method, keys, reason)) of the
        milter's one summary line for alice's message in this test."""
        self.assertIsNotNone(self.wait_sealgate_log(SUMMARY_RE, timeout=30),
                             "no summary line in sealgate's log")
        found = re.findall(SUMMARY_RE, self.milter.log_since(self.log_mark))
        self.assertEqual(len(found), 1, found)
        return found[0][0], tuple(found[0][1:])

    def process(self, msg, rcpt):
        """`sealgate process` without client options: (rc, output, stderr,
        the decision as in the milter's summary line)."""
        rc, out, err = self.gw.process(msg, ALICE, [rcpt], client_ip=None)
        self.assertEqual(sgtest.stderr_field(err, "client"), [ASSUMED], err)
        action = sgtest.stderr_field(err, "action")
        self.assertEqual(len(action), 1, err)
        act, _s, method = action[0].partition(" method=")
        rule = sgtest.stderr_field(err, "rule")
        reason = sgtest.stderr_field(err, "reason")
        decision = (sgtest.verdict(err), rule[0] if rule else "-", act, method or "-",
                    ",".join(sgtest.stderr_field(err, "key")) or "-",
                    reason[0] if reason else "")
        return rc, out, err, decision

    def sendmail(self, rcpt, msg):
        rc, text = self.pf.sendmail(ALICE, [rcpt], msg)
        self.assertEqual(rc, 0, text)

    @with_diagnostics
    def test_a_encrypted_as_process_encrypts(self):
        secret = marker()
        orig = make_msg(CAROL, secret)
        self.sendmail(CAROL, orig)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual((msgs[0].mail_from, msgs[0].rcpts), (ALICE, [CAROL]))
        self.assert_encrypted_copy(msgs[0], orig, secret)
        _qid, milter = self.milter_decision()
        self.assertEqual(milter[:4], ("accept", "-", "encrypt", "openpgp"))

        rc, out, err, decision = self.process(orig, CAROL)
        self.assertEqual(rc, 0, err)
        self.assertEqual(decision, milter)
        self.assertNotIn(secret.encode(), out)
        sgtest.assert_decrypts_to_original(self, self.carol, orig, out)

    @with_diagnostics
    def test_b_sign_rule_refused_as_process_refuses(self):
        orig = make_msg(SIGNED, marker())
        self.sendmail(SIGNED, orig)
        m = self.pf.wait_maillog(r"milter-reject: END-OF-MESSAGE from "
                                 r"localhost\[127\.0\.0\.1\]: (5\.7\.1 .*); "
                                 r"from=<%s>" % re.escape(ALICE))
        self.assertIsNotNone(m, "Postfix did not log the milter's refusal of local mail")
        _qid, milter = self.milter_decision()
        self.assertEqual(milter[:2], ("reject", "must-sign"))
        # The refused local mail comes back to alice as a bounce; nothing
        # reaches the recipient.
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual([(m.mail_from, m.rcpts) for m in msgs], [("", [ALICE])])

        rc, out, err, decision = self.process(orig, SIGNED)
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertEqual(decision, milter)
        replies = [ln for ln in err.splitlines() if ln.startswith("550 ")]
        self.assertEqual(replies, ["550 " + m.group(1)])
        self.assertIn("may not sign: client 127.0.0.1 is not authenticated", replies[0])

    @with_diagnostics
    def test_c_send_plain_unchanged_as_process(self):
        secret = marker()
        orig = make_msg(MAYBE, secret)
        self.sendmail(MAYBE, orig)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual([(m.mail_from, m.rcpts) for m in msgs], [(ALICE, [MAYBE])])
        self.assertIn(secret.encode(), bytes(msgs[0]))
        self.assertNotIn(b"multipart/", bytes(msgs[0]))
        _qid, milter = self.milter_decision()
        self.assertEqual(milter[:2], ("accept", "may-sign"))

        rc, out, err, decision = self.process(orig, MAYBE)
        self.assertEqual(rc, 0, err)
        self.assertEqual(decision, milter)
        self.assertEqual(out, orig)


if __name__ == "__main__":
    unittest.main()
