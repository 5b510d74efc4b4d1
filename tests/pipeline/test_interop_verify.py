"""Inbound signature verification of messages made by other mail programs.

Uses Mozilla Thunderbird's test data under $SEALGATE_CORPORA/thunderbird
(skipped when SEALGATE_CORPORA is unset or the files are missing):

  - mailnews/test/data/smime/: S/MIME messages signed by NSS for Alice
    (detached multipart/signed and opaque signed-data, SHA-1 to SHA-512,
    deliberately broken variants, signed then enveloped to Bob), with
    TestCA.pem as the gateway's trust anchor and Bob.p12 (password "nss")
    as Bob's key;
  - mail/test/browser/openpgp/data/: PGP/MIME and inline messages of the
    sample identities alice@openpgp.example and bob@openpgp.example, with
    their keys from keys/.

Independent checks use `openssl cms` and `gpg`, never sealgate's own code.
"""

import email
import email.utils
import os
import re
import unittest

import inboundtest
import sgtest
import smimetest
import verifytest as vt
from verifytest import NOT_ENCRYPTED

P12_PASS = "nss"
SMIME_FROM = "Alice@example.com"
BOB_SMIME = "bob@example.com"
HASHES = ("SHA1", "SHA256", "SHA384", "SHA512")
INVALID_SMIME = "invalid; method=smime; reason=signature does not match the content"

PGP_ALICE = "alice@openpgp.example"
PGP_BOB = "bob@openpgp.example"
PGP_ALICE_FPR = "EB85BB5FA33A75E15E944E63F231550C4F47E38E"
PGP_BOB_FPR = "D1A66E1A23B182C9980F788CFBFCC82A015E7330"


def corpus_dir():
    root = os.environ.get("SEALGATE_CORPORA")
    if not root:
        sgtest.skip_file("SEALGATE_CORPORA is not set")
    tb = os.path.join(root, "thunderbird")
    if not os.path.isdir(tb):
        sgtest.skip_file("%s is missing" % tb)
    return tb


def read(path):
    with open(path, "rb") as f:
        return f.read()


def without_mbox_line(msg):
    """A message as it travels by SMTP: without the mbox "From " line that
    a mail store put in front of it (that line is no header field)."""
    if msg.startswith(b"From "):
        return msg.split(b"\n", 1)[1]
    return msg


def envelope_sender(msg):
    m = email.message_from_bytes(msg)
    return email.utils.parseaddr(m.get("From") or "")[1] or "someone@partner.example"


class SmimeInterop(vt.VerifyCase, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        tb = corpus_dir()
        cls.dir = os.path.join(tb, "mailnews/test/data/smime")
        for name in ("TestCA.pem", "Alice.p12", "Bob.p12", "Dave.p12",
                     "alice.dsig.SHA256.multipart.eml"):
            if not os.path.exists(os.path.join(cls.dir, name)):
                sgtest.skip_file("%s is missing" % os.path.join(cls.dir, name))
        cls.tmp = sgtest.tmpdir("sgvi")
        cls.scratch = vt.Scratch(os.path.join(cls.tmp, "scratch"))
        cls.ca = cls.path("TestCA.pem")
        cls.alice_fpr = cls.p12_cert_fpr("Alice")
        cls.dave_fpr = cls.p12_cert_fpr("Dave")
        p12 = ["pkcs12", "-in", cls.path("Bob.p12"), "-passin", "pass:" + P12_PASS]
        cls.bob_cert = cls.scratch.file("bob.pem", smimetest.openssl(
            *(p12 + ["-nokeys", "-clcerts"])).stdout)
        cls.bob_key = cls.scratch.file("bob.key", smimetest.openssl(
            *(p12 + ["-nocerts", "-nodes"])).stdout)
        cls.passfile = cls.scratch.file("pass", P12_PASS + "\n")
        policy = inboundtest.inbound_policy()
        cls.gw = smimetest.smime_gateway(os.path.join(cls.tmp, "gw"), policy,
                                         anchors=[cls.ca])
        cls.import_p12(cls.gw, "Bob.p12")
        cls.integrity = inboundtest.variant(
            cls.gw, os.path.join(cls.tmp, "gwint"),
            inboundtest.inbound_policy(require_integrity="true"))
        # Bob's PKCS#12 file carries the NSS test CA's certificate too; that
        # alone does not make it a trust anchor.
        cls.no_anchor = sgtest.policy_gateway(os.path.join(cls.tmp, "gwna"), policy)
        cls.import_p12(cls.no_anchor, "Bob.p12")

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir, name)

    @classmethod
    def p12_cert_fpr(cls, who):
        pem = smimetest.openssl("pkcs12", "-in", cls.path(who + ".p12"), "-passin",
                                "pass:" + P12_PASS, "-nokeys", "-clcerts").stdout
        return smimetest.cert_fingerprint(cls.scratch.file(who + ".pem", pem))

    @classmethod
    def import_p12(cls, gw, name):
        cp = gw.run("keys", "-c", gw.policy, "import", cls.path(name),
                    "--passphrase-file", cls.passfile)
        if cp.returncode != 0:
            raise RuntimeError("import of %s failed (%d): %s%s"
                               % (name, cp.returncode, cp.stdout, cp.stderr))

    def run_file(self, gw, name):
        msg = read(self.path(name))
        out, err, dec, sig = self.run_inbound(gw, msg, rcpts=[BOB_SMIME], sender=SMIME_FROM)
        return msg, out, err, dec, sig

    def valid(self, fpr=None, signer=SMIME_FROM):
        return "valid; method=smime; signer=%s; key=%s" % (signer, fpr or self.alice_fpr)

    def openssl_content(self, msg, decrypt=False):
        """What openssl finds inside: the signed content of an opaque
        signed-data message (its signature checked against the CA), or the
        plaintext of an enveloped one (Bob's key)."""
        path = self.scratch.file("eml", msg)
        if decrypt:
            args = ["cms", "-decrypt", "-in", path, "-recip", self.bob_cert,
                    "-inkey", self.bob_key, "-binary"]
        else:
            args = ["cms", "-verify", "-in", path, "-CAfile", self.ca, "-binary"]
        return smimetest.openssl(*args).stdout

    def test_detached_valid(self):
        for h in HASHES:
            with self.subTest(h):
                name = "alice.dsig.%s.multipart.eml" % h
                msg = read(self.path(name))
                ok, text = vt.openssl_verifies(self.scratch, msg, self.ca)
                self.assertTrue(ok, "openssl does not verify %s: %s" % (name, text))
                msg, out, err, dec, sig = self.run_file(self.gw, name)
                self.assertEqual(dec, NOT_ENCRYPTED)
                self.assertEqual(sig, self.valid(), err)
                self.assert_unchanged(msg, out, dec, sig)

    def test_detached_broken_invalid(self):
        for h in HASHES:
            for kind in ("bad", "mismatch-econtent"):
                name = "alice.dsig.%s.multipart.%s.eml" % (h, kind)
                with self.subTest(name):
                    msg, out, err, dec, sig = self.run_file(self.gw, name)
                    ok, _t = vt.openssl_verifies(self.scratch, msg, self.ca)
                    self.assertFalse(ok, "openssl verifies %s" % name)
                    self.assertEqual(sig, INVALID_SMIME, err)
                    self.assert_unchanged(msg, out, dec, sig)

    def test_opaque_valid_unwrapped(self):
        names = ["alice.sig.%s.opaque.eml" % h for h in HASHES] + \
            ["alice.html.sig.SHA256.opaque.eml"]
        for name in names:
            with self.subTest(name):
                msg, out, err, dec, sig = self.run_file(self.gw, name)
                self.assertEqual(dec, NOT_ENCRYPTED)
                self.assertEqual(sig, self.valid(), err)
                entity = sgtest.canon(self.openssl_content(msg))
                self.assert_entity_delivered(msg, out, entity)
                self.assertNotIn(b"signed-data", out)

    def test_signed_then_enveloped(self):
        for h in HASHES:
            name = "alice.dsig.%s.multipart.env.eml" % h
            with self.subTest(name):
                msg, out, err, dec, sig = self.run_file(self.gw, name)
                self.assertEqual(dec, "yes; method=smime; integrity=none", err)
                self.assertEqual(sig, self.valid(), err)
                plain = sgtest.canon(self.openssl_content(msg, decrypt=True))
                self.assertIn(b"multipart/signed", plain)
                self.assert_entity_delivered(msg, out, plain)

    def test_opaque_signed_then_enveloped(self):
        name = "alice.sig.SHA256.opaque.env.eml"
        msg, out, err, dec, sig = self.run_file(self.gw, name)
        self.assertEqual(dec, "yes; method=smime; integrity=none", err)
        self.assertEqual(sig, self.valid(), err)
        plain = sgtest.canon(self.openssl_content(msg, decrypt=True))
        if b"signed-data" in out:
            self.assert_entity_delivered(msg, out, plain)
        else:
            inner = sgtest.canon(self.openssl_content(plain))
            self.assert_entity_delivered(msg, out, inner)

    def test_outer_signature_counts(self):
        # Dave signed a message that Alice had signed; the message is from
        # Dave.
        name = "alice.plain.dsig.SHA256.multipart.dave.dsig.SHA256.multipart.eml"
        msg = read(self.path(name))
        out, err, dec, sig = self.run_inbound(self.gw, msg, rcpts=[BOB_SMIME],
                                              sender="Dave@example.com")
        self.assertEqual(sig, self.valid(self.dave_fpr, "Dave@example.com"), err)
        self.assert_unchanged(msg, out, dec, sig)

    def test_require_integrity(self):
        # CBC enveloped data: decrypted only with a valid signature over
        # the whole decrypted entity (Thunderbird signs, then encrypts).
        msg, out, err, dec, sig = self.run_file(self.integrity,
                                                "alice.dsig.SHA256.multipart.env.eml")
        self.assertEqual(dec, "yes; method=smime; integrity=signature", err)
        self.assertEqual(sig, self.valid(), err)
        msg, out, err, dec, sig = self.run_file(self.integrity, "alice.env.eml")
        self.assertEqual(dec, "failed; method=smime; reason=no-integrity", err)
        self.assertEqual(sig, "none")
        self.assert_unchanged(msg, out, dec, sig)
        self.assertNotIn(b"This is a test message from Alice to Bob", out)

    def test_trust_anchor_required(self):
        msg, out, err, dec, sig = self.run_file(self.no_anchor,
                                                "alice.dsig.SHA256.multipart.eml")
        word, params, _n = vt.parse_status(sig)
        self.assertEqual(word, "unknown-key", sig)
        self.assertEqual(params.get("key"), self.alice_fpr)
        self.assert_unchanged(msg, out, dec, sig)


class OpenpgpInterop(vt.VerifyCase, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        sgtest.require_program("gpg")
        tb = corpus_dir()
        data = os.path.join(tb, "mail/test/browser/openpgp/data")
        cls.eml = os.path.join(data, "eml")
        keys = os.path.join(data, "keys")
        cls.alice_pub = os.path.join(keys, "alice@openpgp.example-0xf231550c4f47e38e-pub.asc")
        cls.alice_sec = os.path.join(keys, "alice@openpgp.example-0xf231550c4f47e38e-secret.asc")
        cls.bob_pub = os.path.join(keys, "bob@openpgp.example-0xfbfcc82a015e7330-pub.asc")
        cls.bob_sec = os.path.join(keys, "bob@openpgp.example-0xfbfcc82a015e7330-secret.asc")
        for p in (cls.alice_pub, cls.alice_sec, cls.bob_pub, cls.bob_sec, cls.eml):
            if not os.path.exists(p):
                sgtest.skip_file("%s is missing" % p)
        cls.tmp = sgtest.tmpdir("sgvp")
        policy = inboundtest.inbound_policy(internal_domains="openpgp.example")
        # Verifying only: the senders' public keys.
        cls.gw = sgtest.policy_gateway(os.path.join(cls.tmp, "gw"), policy)
        cls.gw.check_policy()
        cls.gw.import_keys_checked(cls.alice_pub, cls.bob_pub)
        # Decrypting too: the recipients' secret keys.
        cls.gw_sec = sgtest.policy_gateway(os.path.join(cls.tmp, "gws"), policy)
        cls.gw_sec.import_keys_checked(cls.alice_sec, cls.bob_sec)
        # Only Alice's key: Bob's signatures are by an unknown key.
        cls.gw_alice = sgtest.policy_gateway(os.path.join(cls.tmp, "gwa"), policy)
        cls.gw_alice.import_keys_checked(cls.alice_pub)
        # gpg as the independent decrypter.
        cls.home = sgtest.GpgHome(os.path.join(cls.tmp, "g"))
        cls.home.import_keys(read(cls.alice_sec) + read(cls.bob_sec))

    @classmethod
    def tearDownClass(cls):
        cls.home.kill()

    def load(self, name):
        return without_mbox_line(read(os.path.join(self.eml, name)))

    def run_msg(self, gw, msg, rcpt=PGP_ALICE):
        return self.run_inbound(gw, msg, rcpts=[rcpt], sender=envelope_sender(msg))

    def valid(self, signer, fpr):
        return "valid; method=openpgp; signer=%s; key=%s" % (signer, fpr)

    def gpg_plaintext(self, msg):
        armored = re.search(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----",
                            msg, re.S).group(0)
        rc, plain, text = self.home.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, text), text)
        return sgtest.canon(plain)

    def test_alice_signed_and_encrypted(self):
        # The one message Alice signed as a whole: PGP/MIME multipart/signed
        # inside multipart/encrypted, to Bob.
        msg = self.load("encrypted-and-signed-alice-to-bob-nonascii.eml")
        out, err, dec, sig = self.run_msg(self.gw_sec, msg, rcpt=PGP_BOB)
        self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
        self.assertEqual(sig, self.valid(PGP_ALICE, PGP_ALICE_FPR), err)
        self.assert_entity_delivered(msg, out, self.gpg_plaintext(msg))

    def test_alice_inline_or_partly_signed_is_none(self):
        # Inline cleartext signatures and signed messages forwarded as an
        # attachment: not a signed message as a whole.
        for name in ("alice-signed.eml", "alice-utf.eml", "signed-inline-indented.eml",
                     "fwd-signed.eml", "forwarded-eml-signed-by-alice.eml"):
            with self.subTest(name):
                msg = self.load(name)
                out, err, dec, sig = self.run_msg(self.gw, msg)
                self.assertEqual(sig, "none", err)
                self.assert_unchanged(msg, out, dec, sig)

    def test_bob_signed_valid(self):
        for name in ("signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted.eml",
                     "signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-with-key.eml"):
            with self.subTest(name):
                msg = self.load(name)
                out, err, dec, sig = self.run_msg(self.gw, msg)
                self.assertEqual(dec, NOT_ENCRYPTED)
                self.assertEqual(sig, self.valid(PGP_BOB, PGP_BOB_FPR), err)
                self.assert_unchanged(msg, out, dec, sig)

    def test_bob_signed_with_another_date(self):
        # Thunderbird's own case: a good signature made at another time
        # than the Date says; Thunderbird warns, sealgate does not say valid.
        msg = self.load("signed-mismatch-email-date.eml")
        out, err, dec, sig = self.run_msg(self.gw, msg)
        self.assertEqual(dec, NOT_ENCRYPTED)
        word, params, _n = vt.parse_status(sig)
        self.assertEqual((word, params.get("reason")), ("invalid", "date-mismatch"), sig)
        self.assertEqual(params.get("key"), PGP_BOB_FPR, sig)
        self.assert_unchanged(msg, out, dec, sig)

    def test_bob_signed_unknown_key(self):
        msg = self.load("signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted.eml")
        out, err, dec, sig = self.run_msg(self.gw_alice, msg)
        word, params, _n = vt.parse_status(sig)
        self.assertEqual(word, "unknown-key", sig)
        self.assertEqual(params.get("method"), "openpgp", sig)
        self.assert_unchanged(msg, out, dec, sig)

    def test_bob_signed_and_encrypted(self):
        for name in ("signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e.eml",
                     "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e-with-key.eml"):
            with self.subTest(name):
                msg = self.load(name)
                out, err, dec, sig = self.run_msg(self.gw_sec, msg)
                self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
                self.assertEqual(sig, self.valid(PGP_BOB, PGP_BOB_FPR), err)
                self.assert_entity_delivered(msg, out, self.gpg_plaintext(msg))

    def test_damaged_or_missing_signature(self):
        for name, want in (("bob-to-alice-signed-damaged-signature.eml",
                            "invalid; method=openpgp; reason=no signature"),
                           ("openpgp__stripped_sig.eml",
                            "invalid; method=openpgp; reason=malformed")):
            with self.subTest(name):
                msg = self.load(name)
                out, err, dec, sig = self.run_msg(self.gw, msg)
                self.assertEqual(sig, want, err)
                self.assert_unchanged(msg, out, dec, sig)

    def test_signed_part_in_mixed_is_none(self):
        msg = self.load("signed-by-0xfbfcc82a015e7330-to-0xf231550c4f47e38e-unencrypted-in-mixed.eml")
        out, err, dec, sig = self.run_msg(self.gw, msg)
        self.assertEqual(sig, "none", err)
        self.assert_unchanged(msg, out, dec, sig)

    def test_every_sample_gets_one_status(self):
        # Whatever the sample, sealgate accepts it and writes exactly one
        # X-Sealgate-Signature (run_inbound checks both); valid only where
        # the whole message is signed by a key it holds.
        failures = []
        for name in sorted(os.listdir(self.eml)):
            if not name.endswith(".eml"):
                continue
            msg = self.load(name)
            rc, out, err = self.gw_sec.process(msg, envelope_sender(msg), [PGP_ALICE],
                                               client_ip=sgtest.OUTSIDE_IP)
            if rc != 0 or out is None:
                failures.append("%s: exit %d %s" % (name, rc, err.strip()[-200:]))
                continue
            _dec, sigs, last = vt.status(out)
            if len(sigs) != 1 or [n.lower() for n in last] != [
                    vt.DECRYPTED.lower(), vt.SIGNATURE.lower()]:
                failures.append("%s: status fields %r, last %r" % (name, sigs, last))
        self.assertEqual(failures, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
