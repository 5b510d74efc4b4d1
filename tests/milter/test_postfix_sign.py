"""Signing through a real Postfix whose relay path downgrades 8-bit mail.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` from its
smtpd and relays to `smtp-sink -8`, which does not announce 8BITMIME: Postfix's
SMTP client therefore converts 8-bit message content to quoted-printable on
the way. A signature over 8-bit content would not survive that; sealgate
makes the content 7-bit safe before it signs, so the signature must still
verify at the far end.

alice@example.com has an S/MIME certificate (RSA, from a test CA that is the
gateway's trust anchor) and an OpenPGP secret key in the gateway's keystore.
Policy: default action none; recipient smime@other.example -> sign with
S/MIME, pgp@other.example -> sign with OpenPGP; the Postfix on loopback may
sign for its senders without SMTP AUTH (signing_networks).

  a) the relay path really downgrades: the sink does not announce 8BITMIME
     (Postfix's own smtpd does), a plain 8-bit UTF-8 message arrives with its
     Content-Transfer-Encoding changed by Postfix from 8bit to
     quoted-printable, and a multipart/signed message that openssl signed
     over the same 8-bit part (verifiable before sending) arrives with a
     signature that no longer verifies.
  b) the same 8-bit message to smime@other.example arrives S/MIME signed and
     verifies with `openssl cms -verify` (detached and whole message) and
     `gpgsm --verify`; the signed text decodes to the original.
  c) the same to pgp@other.example arrives OpenPGP signed and verifies with
     `gpg --verify` in a home with alice's public key only.
smtp-sink removes every CR; the delivered copies are checked in their
canonical CRLF form (as a receiving mail program sees them).
"""

import os
import unittest

import miltertest
import signtest
import sgtest
import smimetest
from miltertest import ALICE, strip_added_received, with_diagnostics
from sgtest import canon, make_message, split_header_body, std_headers

SMIME_RCPT = "smime@other.example"
PGP_RCPT = "pgp@other.example"
PLAIN_RCPT = "plain@other.example"

POLICY = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool", trusted_networks: [127.0.0.0/8],
           signing_networks: [127.0.0.0/8] }
internal_domains: [example.com]
outbound:
  default: { action: none }
  rules:
    - name: smime-sign
      when: { recipient: [smime@other.example] }
      action: sign
      methods: [smime]
    - name: pgp-sign
      when: { recipient: [pgp@other.example] }
      action: sign
      methods: [openpgp]
"""

STATE = {}

BINARY = miltertest.require_tools()
for _prog in ("openssl", "gpgsm"):
    sgtest.require_program(_prog)

TEXT = ("Grüße aus Köln! Çà et là, ½ € — ありがとう.\n"
        "Zweite Zeile: äöüÄÖÜß %s\n"
        "Dritte Zeile.\n")


def utf8_message(to, marker):
    """A UTF-8 text message with Content-Transfer-Encoding 8bit, LF line
    ends (smtplib sends them as CRLF)."""
    headers = std_headers(sender="Alice Example <%s>" % ALICE, to="<%s>" % to,
                          subject="8-bit text")
    headers += [("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Transfer-Encoding", "8bit")]
    return make_message(headers, TEXT % marker, eol=b"\n")


def setUpModule():
    miltertest.set_up_gateway(STATE, "sgps", POLICY)
    tmp, gw = STATE["tmp"], STATE["gw"]
    ca = smimetest.TestCA(os.path.join(tmp, "ca"), key="rsa:2048")
    alice_x = ca.issue("Alice Example", [ALICE], key="rsa:2048")
    alice_pgp = sgtest.GpgHome(os.path.join(tmp, "alice"))
    alice_fpr = alice_pgp.gen_key("Alice Example", ALICE)
    secret = signtest.write(os.path.join(tmp, "alice.sec.asc"), alice_pgp.export_secret(ALICE))
    verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
    verifier.import_keys(alice_pgp.export_public(ALICE))
    alice_pgp.kill()
    cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", ca.cert)
    if cp.returncode != 0:
        raise RuntimeError("trust anchor import failed: %s%s" % (cp.stdout, cp.stderr))
    gw.import_keys_checked(alice_x.cert, alice_x.key, secret)
    STATE.update(ca=ca, alice_x=alice_x, alice_fpr=alice_fpr, verifier=verifier,
                 gpgsm=signtest.gpgsm_home(os.path.join(tmp, "gsm"), ca),
                 scratch=signtest.Scratch(os.path.join(tmp, "chk")))
    signtest.start_milter_and_postfix(STATE, BINARY, sink_args=("-8",))


def tearDownModule():
    miltertest.tear_down(STATE)


class PostfixSign(miltertest.MilterTestCase):

    state = STATE

    def setUp(self):
        super().setUp()
        self.scratch = STATE["scratch"]

    def deliver(self, rcpt, msg):
        """Send msg (exact bytes, smtplib) from alice to rcpt; return the one
        copy the sink receives, without Postfix's Received: field, in CRLF
        form."""
        self.pf.sink.clear()
        code, text, refused = self.pf.send_smtplib(ALICE, [rcpt], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].rcpts, [rcpt])
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())
        return canon(strip_added_received(bytes(msgs[0])))

    def assert_fields_kept(self, original, delivered, ctype="multipart/signed"):
        signtest.assert_outer_fields_kept(self, original, delivered, ctype)

    def assert_signed_text(self, original, content):
        """content (the signed first part) is 7-bit, keeps the original's
        Content-Type and decodes to the original text."""
        signtest.assert_7bit_safe(self, content)
        ((fields, body),) = signtest.leaves(content)
        self.assertIn(signtest.cte(fields), ("quoted-printable", "base64"))
        self.assertEqual(signtest.without_cte(signtest.content_fields(content)),
                         signtest.without_cte(signtest.content_fields(original)))
        _f, obody = split_header_body(canon(original))
        self.assertEqual(signtest.decode_body(fields, body), obody)

    # -- a) the relay downgrades 8-bit mail -------------------------------

    @with_diagnostics
    def test_a_relay_path_downgrades_8bit(self):
        self.assertNotIn("8BITMIME", signtest.ehlo_features(self.pf.sink.port),
                         "smtp-sink -8 announces 8BITMIME")
        self.assertIn("8BITMIME", signtest.ehlo_features(self.pf.port))

        # A plain 8-bit message: Postfix converts it to quoted-printable.
        secret = miltertest.marker()
        orig = utf8_message(PLAIN_RCPT, secret)
        got = self.deliver(PLAIN_RCPT, orig)
        self.assertEqual(miltertest.header(got, "Content-Transfer-Encoding"),
                         ["quoted-printable"], "Postfix did not downgrade the 8-bit message")
        _f, body = split_header_body(got)
        signtest.assert_7bit_safe(self, body, "downgraded body")
        _f, obody = split_header_body(canon(orig))
        self.assertNotEqual(body, obody)
        self.assertEqual(signtest.decode_body([("Content-Transfer-Encoding",
                                                "quoted-printable")], body), obody)

        # A message signed by openssl over the same 8-bit part verifies
        # before it is sent, and no longer after the relay.
        entity = sgtest.expected_entity(orig)
        ctype, body = signtest.openssl_sign_entity(entity, STATE["alice_x"], self.scratch)
        headers = [h for h in std_headers(to="<%s>" % PLAIN_RCPT, subject="signed 8-bit")
                   if h[0] != "Received"] + [("Content-Type", ctype)]
        signed = make_message(headers, body)
        rc, err, _content = signtest.openssl_verify_message(self.scratch, signed,
                                                            STATE["ca"].cert)
        self.assertEqual(rc, 0, "the control message does not verify before sending: %s" % err)
        got = self.deliver(PLAIN_RCPT, signed)
        s = signtest.signed_parts(self, got, signtest.SMIME_SIG, "sha-256")
        fields, _b = split_header_body(s.content)
        self.assertEqual(signtest.cte(fields), "quoted-printable",
                         "Postfix did not convert the signed 8-bit part")
        rc, err, _content = signtest.openssl_verify_message(self.scratch, got,
                                                            STATE["ca"].cert)
        self.assertNotEqual(rc, 0, "an 8-bit signed part survived the downgrade: %s" % err)

    # -- b) S/MIME --------------------------------------------------------

    @with_diagnostics
    def test_b_smime_signature_survives_downgrade(self):
        secret = miltertest.marker()
        orig = utf8_message(SMIME_RCPT, secret)
        got = self.deliver(SMIME_RCPT, orig)
        self.assert_fields_kept(orig, got)
        s = signtest.assert_smime_verifies(self, self.scratch, got, STATE["ca"],
                                           STATE["gpgsm"], STATE["alice_x"])
        self.assert_signed_text(orig, s.content)
        self.assertIn(secret.encode(), signtest.decode_body(*signtest.leaves(s.content)[0]))

    # -- c) OpenPGP -------------------------------------------------------

    @with_diagnostics
    def test_c_openpgp_signature_survives_downgrade(self):
        secret = miltertest.marker()
        orig = utf8_message(PGP_RCPT, secret)
        got = self.deliver(PGP_RCPT, orig)
        self.assert_fields_kept(orig, got)
        s = signtest.assert_pgp_verifies(self, self.scratch, got, STATE["verifier"],
                                         STATE["alice_fpr"])
        self.assert_signed_text(orig, s.content)


if __name__ == "__main__":
    unittest.main()
