"""S/MIME capabilities through a real Postfix: recorded by the running
milter from a partner's signed mail, used for the next message to that
partner, without a restart, a signal or a new keystore snapshot.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. The gateway (internal domain example.com, outbound default
encrypt-if-key) trusts a test CA and holds carol@partner.example's
certificate; carol's signature (tests/lib/capstest.py: openssl's, with an
SMIMECapabilities attribute announcing AES-GCM, checked by `openssl cms
-verify`) comes in over SMTP.

  1) alice -> carol: AES-256-CBC EnvelopedData (carol's capabilities
     unknown), said in the log line's cipher= field; openssl decrypts it
     with carol's key.
  2) carol -> alice, signed: delivered with a valid signature status; the
     log says what was recorded; no new keystore snapshot is built for it.
  3) alice -> carol again: AES-256-GCM AuthEnvelopedData ("all recipients
     announced it"); openssl decrypts it with carol's key.
"""

import os
import re
import unittest

import capstest
import inboundtest
import miltertest
import sgtest
import smimetest
import verifytest as vt
from inboundtest import ALICE, CAROL, inbound_policy, status_fields
from miltertest import make_msg, marker, strip_added_received, with_diagnostics

STATE = {}

BINARY = miltertest.require_tools()


def setUpModule():
    tmp = sgtest.tmpdir("sgpc")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    ids = inboundtest.Identities(tmp)
    gw = ids.gateway(os.path.join(tmp, "gw"), inbound_policy(), openpgp=(), smime=(ALICE,))
    carol = ids.ca.issue("Carol Partner", [CAROL])
    gw.import_keys_checked(carol.cert)
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender, carol_x=carol,
                 scratch=vt.Scratch(os.path.join(tmp, "scratch")))
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


class PostfixCapabilities(miltertest.MilterTestCase):

    state = STATE

    def outbound(self, smime_type, cipher, why):
        """alice -> carol through Postfix: S/MIME of smime_type with cipher
        (the log line's cipher= field says why); carol's key opens it."""
        secret = marker()
        msg = make_msg(CAROL, secret)
        qid, _t = self.submit([CAROL], msg)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        self.assertNotIn(secret.encode(), msgs[0].raw, "sent in clear")
        der = smimetest.smime_der(self, msg, strip_added_received(bytes(msgs[0])),
                                  smime_type)
        self.assertEqual(smimetest.cms_content_cipher(smimetest.cms_print(der)), cipher)
        smimetest.assert_openssl_decrypts(self, der, self.state["carol_x"], msg)
        m = self.wait_sealgate_log(r"(?m)^[^\n]* %s: from=<%s> [^\n]*verdict=accept[^\n]*$"
                                   % (qid, re.escape(ALICE)))
        self.assertIsNotNone(m, self.milter.log_since(self.log_mark))
        self.assertIn(' cipher="%s (%s)" ' % (cipher, why), m.group(0))
        self.assertRegex(m.group(0), r" keys=[0-9A-F]{64} cipher=")

    @with_diagnostics
    def test_recorded_by_the_milter_then_used(self):
        carol_x = self.state["carol_x"]
        self.outbound("enveloped-data", "aes-256-cbc",
                      "capabilities of %s unknown" % CAROL)

        snapshots = self.milter.log_since(0).count("new snapshot in force")
        entity = vt.text_entity("Signed reply. " + inboundtest.new_marker())
        msg, _sig = capstest.signed_message(self.state["scratch"], carol_x, entity,
                                            caps=["aes-256-gcm", "aes-256-cbc"])
        code, text, refused = self.pf.send_smtplib(CAROL, [ALICE], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        got = strip_added_received(bytes(msgs[0]))
        self.assertEqual(status_fields(got)[1], [
            "valid; method=smime; signer=%s; key=%s" % (CAROL, carol_x.fpr)])
        m = self.wait_sealgate_log(r"S/MIME capabilities recorded: %s: "
                                   r"aes-256-gcm,aes-256-cbc" % carol_x.fpr)
        self.assertIsNotNone(m, self.milter.log_since(self.log_mark))

        self.outbound("authEnveloped-data", "aes-256-gcm", "all recipients announced it")
        self.assertEqual(self.milter.log_since(0).count("new snapshot in force"), snapshots,
                         "a capability record made the milter build a new snapshot")
        self.assertTrue(self.milter.running(), "the milter stopped")


if __name__ == "__main__":
    unittest.main()
