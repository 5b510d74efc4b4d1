"""Key administration takes effect in a running milter, without a restart
or a signal.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. The gateway (internal domain example.com, outbound default
encrypt-if-key) holds alice@example.com's OpenPGP key pair; carol's key is
in her own GnuPG home only, where mail to her is decrypted with gpg and
mail to alice is encrypted.

  1) mail from alice to carol arrives plain while the keystore has no key
     for carol; after `sealgate keys import carol.pub.asc` the next message
     arrives PGP/MIME-encrypted and gpg in carol's home decrypts it.
  2) OpenPGP mail from carol to alice arrives decrypted; after
     `sealgate keys deactivate alice@example.com` the next one arrives as
     sent, marked `X-Sealgate-Decrypted: no; reason=deactivated`; after
     `reactivate` it is decrypted again.
  3) with carol's OpenPGP key removed, mail to her arrives plain; after
     `sealgate keys import` of her S/MIME certificate (and her CA as a
     trust anchor) the next message arrives S/MIME-encrypted and openssl
     decrypts it with her key; after `sealgate keys remove` of the
     certificate it arrives plain again.
"""

import os
import unittest

import inboundtest
import miltertest
import sgtest
import smimetest
from inboundtest import ALICE, CAROL, InboundCase, inbound_policy, new_marker, \
    outer_headers, pgp_mime_message, status_fields, text_entity
from miltertest import make_msg, marker, strip_added_received, with_diagnostics

STATE = {}

BINARY = miltertest.require_tools()
sgtest.require_program("swaks")

STATUS_YES = "yes; method=openpgp; integrity=mdc"


def setUpModule():
    tmp = sgtest.tmpdir("sgpk")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    ids = inboundtest.Identities(tmp, smime=False)
    gw = ids.gateway(os.path.join(tmp, "gw"), inbound_policy(), openpgp=(ALICE,), smime=())
    carol_pub = sgtest.export_public_key(tmp, ids.sender, CAROL)
    ca = smimetest.TestCA(os.path.join(tmp, "ca"), key="ec")
    carol_cert = ca.issue("Carol Partner", [CAROL], key="ec:P-256")
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender, carol_pub=carol_pub,
                 ca=ca, carol_cert=carol_cert)
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


class PostfixKeys(miltertest.MilterTestCase, InboundCase):

    state = STATE

    def keys(self, *args):
        return self.gw.run("keys", "-c", self.gw.policy, *args)

    def outbound(self, secret):
        """Send a message from alice to carol; returns (message, delivered)."""
        msg = make_msg(CAROL, secret)
        self.submit([CAROL], msg)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].rcpts, [CAROL])
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        return msg, msgs[0]

    def inbound(self, msg):
        """Send msg from carol to alice with smtplib; returns the delivered
        bytes without the Received fields the private Postfix added."""
        code, text, refused = self.pf.send_smtplib(CAROL, [ALICE], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].rcpts, [ALICE])
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        return strip_added_received(bytes(msgs[0]))

    @with_diagnostics
    def test_1_import_takes_effect_without_restart(self):
        pid = self.milter.proc.pid if hasattr(self.milter, "proc") else None
        cp = self.keys("list")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn(CAROL, cp.stdout)

        secret = marker()
        msg, delivered = self.outbound(secret)
        self.assert_plain_copy(delivered, msg, secret)

        cp = self.keys("import", self.state["carol_pub"])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn(CAROL, self.keys("list").stdout)

        secret = marker()
        msg, delivered = self.outbound(secret)
        self.assert_encrypted_copy(delivered, msg, secret)
        self.assertTrue(self.milter.running(), "the milter stopped")
        if pid is not None:
            self.assertEqual(self.milter.proc.pid, pid, "the milter was restarted")

    @with_diagnostics
    def test_2_deactivate_and_reactivate_without_restart(self):
        ids = self.state["ids"]
        entity = text_entity(new_marker())
        msg = pgp_mime_message(ids.sender.encrypt(entity, [ALICE]), headers=outer_headers())

        got = self.inbound(msg)
        self.check_decrypted(got, msg, entity, STATUS_YES)

        cp = self.keys("deactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        try:
            got = self.inbound(msg)
            self.assertEqual(status_fields(got)[0], ["no; reason=deactivated"])
            self.check_passthrough(got, msg, "no; reason=deactivated", canonical=True)
            self.assertIn(b"-----BEGIN PGP MESSAGE-----", got)
        finally:
            cp = self.keys("reactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)

        got = self.inbound(msg)
        self.check_decrypted(got, msg, entity, STATUS_YES)
        self.assertTrue(self.milter.running(), "the milter stopped")

    @with_diagnostics
    def test_3_smime_certificate_import_and_remove_without_restart(self):
        cert = self.state["carol_cert"]
        cp = self.keys("remove", CAROL)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        secret = marker()
        msg, delivered = self.outbound(secret)
        self.assert_plain_copy(delivered, msg, secret)

        cp = self.keys("import", "--trust-anchor", self.state["ca"].cert)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        cp = self.keys("import", cert.cert)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        secret = marker()
        msg, delivered = self.outbound(secret)
        self.assertNotIn(secret.encode(), delivered.raw, "sent in clear")
        out = strip_added_received(bytes(delivered))
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        smimetest.assert_openssl_decrypts(self, der, cert, msg)

        cp = self.keys("remove", cert.fpr)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        secret = marker()
        msg, delivered = self.outbound(secret)
        self.assert_plain_copy(delivered, msg, secret)
        self.assertTrue(self.milter.running(), "the milter stopped")


if __name__ == "__main__":
    unittest.main()
