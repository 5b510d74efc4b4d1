"""Inbound decryption through a real Postfix.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. The gateway (internal domain example.com) holds the OpenPGP
secret keys and S/MIME identities of alice@example.com and bob@example.com;
mail comes from carol@partner.example, sent with smtplib (exact bytes) to
the milter-facing smtpd. Every encrypted message is made by gpg in carol's
GnuPG home or by `openssl cms -encrypt`.

  a) PGP/MIME to alice arrives decrypted: Content-* fields and body of the
     encrypted entity, other header fields kept, exactly one
     X-Sealgate-Decrypted and one X-Sealgate-Signature field.
  b) S/MIME (AES-GCM) to alice arrives decrypted the same way.
  c) Forged status fields (any case, folded, repeated) in plain, decrypted
     and undecryptable mail do not survive: only sealgate's own fields
     arrive.
  d) A message without MDC arrives as it was sent, marked failed, and its
     plaintext is nowhere: not in the delivered mail, not in sealgate's log,
     not in the maillog.
  e) Only the envelope recipient's own key: a message that only bob's key
     opens, with a session key packet for alice spliced in (OpenPGP) or a
     garbage RecipientInfo for her (S/MIME), sent to alice and bob, arrives
     as it was sent for both.
  f) A CR in a field name inside encrypted mail: the message arrives as it
     was sent, marked failed, with both status fields in its header.
  g) Signature claims hold through Postfix (which adds no Date of its
     own): carol's signature is valid with a current Date, invalid with a
     Date hours away or none (date-mismatch, no-date), and signer-mismatch
     when the From display name shows another address, also RFC 2047
     encoded.
  h) Messages of 8 MiB, PGP/MIME and S/MIME (AES-GCM), arrive decrypted:
     the milter spools them to files, sealgate decrypts them from there
     into its plaintext file and replaces the body from a file.
"""

import base64
import os
import time
import unittest

import inboundtest
import miltertest
import sgtest
import der
import verifytest
from inboundtest import ALICE, BOB, CAROL, InboundCase, alternative_entity, cms_encrypt, \
    gpg_encrypt, inbound_policy, new_marker, outer_headers, pgp_mime_message, pkesks, \
    recipient_info_of, smime_message, spliced, status_fields
from miltertest import strip_added_received, with_diagnostics

STATE = {}


def large_entity(marker, size):
    """multipart/mixed of about size bytes: the marker in a text part, a
    base64 attachment of random bytes."""
    b64 = base64.encodebytes(os.urandom(size * 57 // 78)).replace(b"\n", b"\r\n")
    return (b"Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n"
            b"--big\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            + marker.encode() + b"\r\n--big\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--big--\r\n")

BINARY = miltertest.require_tools()

FORGED = [("X-Sealgate-Decrypted", "yes; method=openpgp; integrity=mdc"),
          ("x-sealgate-DECRYPTED", "yes;\r\n method=smime;\r\n\tintegrity=aead"),
          ("X-SEALGATE-SIGNATURE", "valid; method=smime; signer=ceo@example.com"),
          ("X-Sealgate-Decrypted-By", "an unrelated field that stays"),
          ("X-Sealgate-Signature", "valid;\r\n\tsigner=ceo@example.com"),
          ("X-Sealgate-Decrypted", "yes")]


def setUpModule():
    tmp = sgtest.tmpdir("sgpi")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    ids = inboundtest.Identities(tmp)
    gw = ids.gateway(os.path.join(tmp, "gw"), inbound_policy())
    sgtest.import_public_keys(gw, tmp, [(ids.sender, CAROL)])
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender)
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


class PostfixInbound(miltertest.MilterTestCase, InboundCase):

    state = STATE

    def setUp(self):
        super().setUp()
        self.ids = self.state["ids"]
        self.marker = new_marker()
        self.entity = alternative_entity(self.marker)

    def deliver(self, msg, rcpts=(ALICE,)):
        """Send msg from carol; returns the delivered bytes without the
        Received fields the private Postfix added."""
        code, text, refused = self.pf.send_smtplib(CAROL, list(rcpts), msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(sorted(msgs[0].rcpts), sorted(rcpts))
        self.assertEqual(msgs[0].mail_from, CAROL)
        self.assertTrue(self.pf.wait_queue_empty(10))
        return strip_added_received(bytes(msgs[0]))

    def assert_log_clean(self):
        log = self.milter.log_since(self.log_mark)
        self.assertNotIn(self.marker, log, "plaintext in sealgate's log")
        self.assertNotIn(self.marker, self.pf.maillog_since(), "plaintext in the maillog")

    # -- tests -----------------------------------------------------------

    def signed(self, sender="Carol Partner <%s>" % CAROL, date=True, offset=0):
        h = verifytest.outer(sender=sender)
        h = [(n, sgtest.rfc5322_date(time.time() + offset) if n == "Date" else v)
             for n, v in h if date or n != "Date"]
        return verifytest.pgp_signed_message(self.state["carol"],
                                             verifytest.text_entity(self.marker), h)

    @with_diagnostics
    def test_g_signature_claims(self):
        fpr = self.state["carol"].fingerprint(CAROL)
        for name, msg, want in (
                ("current Date", self.signed(),
                 "valid; method=openpgp; signer=%s; key=%s" % (CAROL, fpr)),
                ("Date 3 h old", self.signed(offset=-3 * 3600),
                 "invalid; method=openpgp; key=%s; reason=date-mismatch" % fpr),
                ("no Date", self.signed(date=False),
                 "invalid; method=openpgp; key=%s; reason=no-date" % fpr),
                ("display name", self.signed(sender='"ceo@example.com" <%s>' % CAROL),
                 "signer-mismatch; method=openpgp; key=%s; reason=display-name" % fpr),
                ("encoded display name",
                 self.signed(sender="=?utf-8?q?ceo=40example=2Ecom?= <%s>" % CAROL),
                 "signer-mismatch; method=openpgp; key=%s; reason=display-name" % fpr)):
            with self.subTest(name):
                self.pf.sink.clear()
                got = self.deliver(msg)
                dec, sig, _last = status_fields(got)
                self.assertEqual(sig, [want], got[:3000])
                self.assertEqual(dec, [verifytest.NOT_ENCRYPTED])
                if name == "no Date":
                    self.assertEqual(sgtest.field_values(got, "Date"), [])

    @with_diagnostics
    def test_h_large_messages_decrypted(self):
        entity = large_entity(self.marker, 6 * 1024 * 1024)
        for name, msg, status in (
                ("openpgp", pgp_mime_message(gpg_encrypt(
                    self.ids, entity, [ALICE], extra=["--compress-algo", "none"])),
                 "yes; method=openpgp; integrity=mdc"),
                ("smime", smime_message(cms_encrypt(
                    entity, [self.ids.smime[ALICE].cert], "aes-256-gcm")),
                 "yes; method=smime; integrity=aead")):
            with self.subTest(name):
                self.pf.sink.clear()
                self.assertGreater(len(msg), 8 * 1024 * 1024)
                got = self.deliver(msg)
                self.check_decrypted(got, msg, entity, status)
        self.assert_log_clean()

    @with_diagnostics
    def test_a_openpgp_decrypted(self):
        msg = pgp_mime_message(gpg_encrypt(self.ids, self.entity, [ALICE]))
        got = self.deliver(msg)
        self.check_decrypted(got, msg, self.entity, "yes; method=openpgp; integrity=mdc")
        self.assertIn(self.marker.encode(), got)
        self.assertNotIn(b"BEGIN PGP MESSAGE", got)
        self.assert_log_clean()

    @with_diagnostics
    def test_a_openpgp_decrypted_for_two_recipients(self):
        msg = pgp_mime_message(gpg_encrypt(self.ids, self.entity, [ALICE, BOB]))
        got = self.deliver(msg, rcpts=(ALICE, BOB))
        self.check_decrypted(got, msg, self.entity, "yes; method=openpgp; integrity=mdc")
        self.assert_log_clean()

    @with_diagnostics
    def test_b_smime_decrypted(self):
        der = cms_encrypt(self.entity, [self.ids.smime[ALICE].cert], "aes-256-gcm")
        msg = smime_message(der)
        got = self.deliver(msg)
        self.check_decrypted(got, msg, self.entity, "yes; method=smime; integrity=aead")
        self.assertEqual(sgtest.field_values(got, "Content-Disposition"), [])
        self.assert_log_clean()

    @with_diagnostics
    def test_c_forged_fields_in_plain_mail(self):
        msg = sgtest.make_message(outer_headers(extra=FORGED)
                                  + [("Content-Type", "text/plain; charset=us-ascii")],
                                  "Hello Alice.\r\n")
        got = self.deliver(msg)
        self.check_passthrough(got, msg, "no; reason=not-encrypted", canonical=True)
        self.assertEqual(sgtest.field_values(got, "X-Sealgate-Decrypted-By"),
                         ["an unrelated field that stays"])

    @with_diagnostics
    def test_c_forged_fields_in_decrypted_mail(self):
        msg = pgp_mime_message(gpg_encrypt(self.ids, self.entity, [ALICE]),
                               headers=outer_headers(extra=FORGED))
        got = self.deliver(msg)
        self.check_decrypted(got, msg, self.entity, "yes; method=openpgp; integrity=mdc")

    @with_diagnostics
    def test_d_no_mdc_with_forged_yes(self):
        armored = gpg_encrypt(self.ids, self.entity, [ALICE], extra=["--rfc2440"])
        msg = pgp_mime_message(armored, headers=outer_headers(extra=FORGED))
        got = self.deliver(msg)
        self.check_passthrough(got, msg, "failed; method=openpgp; reason=integrity",
                               canonical=True)
        self.assertEqual(status_fields(got)[0], ["failed; method=openpgp; reason=integrity"])
        self.assertNotIn(self.marker.encode(), got)
        self.assert_log_clean()
        self.assertEqual(self.gw.spool_entries(), [])

    def assert_arrived_unopened(self, msg, rcpts):
        got = self.deliver(msg, rcpts=rcpts)
        status = status_fields(got)[0]
        self.assertEqual(len(status), 1, status)
        self.assertFalse(status[0].startswith("yes"), status)
        self.check_passthrough(got, msg, status[0], signature=None, canonical=True)
        self.assertNotIn(self.marker.encode(), got)
        self.assert_log_clean()
        return status[0]

    @with_diagnostics
    def test_e_session_key_packet_for_alice_spliced(self):
        for_bob = gpg_encrypt(self.ids, self.entity, [BOB])
        other = gpg_encrypt(self.ids, b"another message\r\n", [ALICE])
        msg = pgp_mime_message(spliced(pkesks(other), for_bob))
        self.assert_arrived_unopened(msg, (ALICE, BOB))

    @with_diagnostics
    def test_e_garbage_recipient_info_for_alice(self):
        cms = der.Cms(cms_encrypt(self.entity, [self.ids.smime[BOB].cert,
                                                self.ids.smime[ALICE].cert]))
        key = cms.recipient_infos[recipient_info_of(cms, self.ids.smime[ALICE])][-1]
        key.value = bytes(b ^ 0x5A for b in key.value)
        self.assert_arrived_unopened(smime_message(cms.encode()), (BOB, ALICE))

    @with_diagnostics
    def test_f_cr_in_a_field_name_inside(self):
        entity = (b"Content-Type: text/plain\r\nContent-Evil\rX-Injected: 1\r\n\r\n"
                  + ("Hello " + self.marker + "\r\n").encode())
        msg = pgp_mime_message(gpg_encrypt(self.ids, entity, [ALICE]))
        self.assertEqual(self.assert_arrived_unopened(msg, (ALICE,)),
                         "failed; method=openpgp; reason=malformed")


if __name__ == "__main__":
    unittest.main()
