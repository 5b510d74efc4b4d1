"""S/MIME interoperability with the certificates of Thunderbird's test data.

Uses $SEALGATE_CORPORA/thunderbird/mailnews/test/data/smime/: the NSS test CA
(TestCA.pem), Bob's RSA identity (Bob.p12) and Alice's EC identity
(Alice-ec.p12, issued by the NSS EC test CA inside that file), all protected
with the passphrase "nss". The certificates carry the address in the
subject's emailAddress only and have no extensions.

The gateway (internal domain example.org) encrypts mail from
alice@example.org to Bob@example.com and to Alice-ec@example.com; openssl
decrypts it with the key from the recipient's PKCS#12 file. Alice's signed
messages (Alice.p12, RSA) show what NSS announces (ThunderbirdCapabilities).
Skipped when SEALGATE_CORPORA is unset or the files are missing.
"""

import email
import os
import re
import types
import unittest

import capstest
import inboundtest
import sgtest
import smimetest
import verifytest as vt
from sgtest import MARKER, make_message, std_headers

SENDER = "alice@example.org"
BOB = "Bob@example.com"
ALICE = "Alice@example.com"
ALICE_EC = "Alice-ec@example.com"
P12_PASS = "nss"


def corpus_dir():
    root = os.environ.get("SEALGATE_CORPORA")
    if not root:
        sgtest.skip_file("SEALGATE_CORPORA is not set")
    path = os.path.join(root, "thunderbird", "mailnews", "test", "data", "smime")
    for name in ("TestCA.pem", "Bob.p12", "Alice-ec.p12"):
        if not os.path.isfile(os.path.join(path, name)):
            sgtest.skip_file("%s is missing" % os.path.join(path, name))
    return path


def from_p12(p12, tmp, name, addr):
    """Certificate, key and CA certificates of a PKCS#12 file as PEM files;
    returns an object with cert, key, cas, addr, fpr."""
    base = os.path.join(tmp, name)
    pw = "pass:" + P12_PASS
    smimetest.openssl("pkcs12", "-in", p12, "-passin", pw, "-nokeys", "-clcerts",
                      "-out", base + ".pem")
    smimetest.openssl("pkcs12", "-in", p12, "-passin", pw, "-nocerts", "-nodes",
                      "-out", base + ".key")
    smimetest.openssl("pkcs12", "-in", p12, "-passin", pw, "-nokeys", "-cacerts",
                      "-out", base + "-cas.pem")
    os.chmod(base + ".key", 0o600)
    return types.SimpleNamespace(cert=base + ".pem", key=base + ".key",
                                 cas=base + "-cas.pem", addr=addr,
                                 fpr=smimetest.cert_fingerprint(base + ".pem"))


def message(to):
    return make_message(
        std_headers(sender="Alice <%s>" % SENDER, to=to)
        + [("Content-Type", "text/plain; charset=utf-8"),
           ("Content-Transfer-Encoding", "8bit")],
        "Hallo, hier die Zahlen. %s Grüße\r\n" % MARKER)


class ThunderbirdSmime(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.dir = corpus_dir()
        cls.tmp = sgtest.tmpdir("sgtbs")
        cls.bob = from_p12(os.path.join(cls.dir, "Bob.p12"), cls.tmp, "bob", BOB)
        cls.alice = from_p12(os.path.join(cls.dir, "Alice-ec.p12"), cls.tmp, "alice-ec",
                             ALICE_EC)
        cls.passfile = smimetest.write_file(os.path.join(cls.tmp, "pass"), P12_PASS + "\n")
        policy = smimetest.smime_policy(internal_domains="example.org")
        # One gateway gets Bob's certificate as PEM, the other his PKCS#12 file.
        cls.gw = smimetest.smime_gateway(os.path.join(cls.tmp, "gw"), policy,
                                         anchors=[os.path.join(cls.dir, "TestCA.pem"),
                                                  cls.alice.cas],
                                         certs=[cls.bob.cert, cls.alice.cert])
        cls.gw12 = smimetest.smime_gateway(os.path.join(cls.tmp, "gw12"), policy,
                                           anchors=[os.path.join(cls.dir, "TestCA.pem")])
        cls.p12_import = cls.gw12.run("keys", "-c", cls.gw12.policy, "import",
                                      os.path.join(cls.dir, "Bob.p12"),
                                      "--passphrase-file", cls.passfile)

    def encrypt(self, gw, ident, smime_type="enveloped-data"):
        msg = message("%s <%s>" % (ident.addr.split("@")[0], ident.addr))
        rc, out, err = gw.process(msg, SENDER, [ident.addr])
        self.assertEqual(rc, 0, err)
        self.assertIn("action: encrypt method=smime", err.splitlines())
        self.assertEqual(sgtest.stderr_field(err, "key"), [ident.fpr])
        self.assertNotIn(MARKER, err)
        self.assertNotIn(MARKER.encode(), out)
        der = smimetest.smime_der(self, msg, out, smime_type)
        smimetest.assert_openssl_decrypts(self, der, ident, msg)
        return der

    def test_bob_listed(self):
        not_after = smimetest.openssl("x509", "-in", self.bob.cert, "-noout", "-enddate",
                                      "-dateopt", "iso_8601").stdout.decode()
        expires = re.search(r"(\d{4}-\d\d-\d\d)", not_after).group(1)
        rows = [r for r in smimetest.smime_list_lines(self.gw.list_keys().stdout)
                if r["fpr"] == self.bob.fpr]
        self.assertEqual([(r["addr"], r["state"], r["usable"], r["expires"]) for r in rows],
                         [(BOB, "active", "encrypt", expires)])

    def test_encrypt_to_bob(self):
        der = self.encrypt(self.gw, self.bob)
        text = smimetest.cms_print(der)
        self.assertEqual(smimetest.cms_content_cipher(text), "aes-256-cbc")
        self.assertEqual(smimetest.cms_recipient_infos(text), [("ktri", "rsaEncryption")])

    def test_bob_p12_import(self):
        cp = self.p12_import
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        rows = [r for r in smimetest.smime_list_lines(cp.stdout) if r["fpr"] == self.bob.fpr]
        self.assertEqual([(r["prefix"], r["addr"], r["state"], r["usable"]) for r in rows],
                         [("imported", BOB, "active", "encrypt,decrypt,sign")], cp.stdout)
        self.encrypt(self.gw12, self.bob)

    def test_encrypt_to_alice_ec(self):
        der = self.encrypt(self.gw, self.alice)
        infos = smimetest.cms_recipient_infos(smimetest.cms_print(der))
        self.assertEqual([k for k, _a in infos], ["kari"])

    def test_both_in_one_message(self):
        msg = message("%s, %s" % (BOB, ALICE_EC))
        rc, out, err = self.gw.process(msg, SENDER, [BOB, ALICE_EC])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(sgtest.stderr_field(err, "key")),
                         sorted([self.bob.fpr, self.alice.fpr]))
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        for ident in (self.bob, self.alice):
            smimetest.assert_openssl_decrypts(self, der, ident, msg)


class ThunderbirdCapabilities(vt.VerifyCase, unittest.TestCase):
    """What Thunderbird's (NSS's) signed mail announces, and what sealgate
    then sends back. None of the signatures in the test data carries an
    SMIMECapabilities attribute, so a valid one records nothing and mail
    to Alice (RSA, Alice.p12) stays AES-256-CBC EnvelopedData, which her
    key opens (NSS's own messages there are AES-128-CBC EnvelopedData)."""

    SIGNED = ("alice.dsig.SHA256.multipart.eml", "alice.sig.SHA256.opaque.eml")

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.dir = corpus_dir()
        for name in ("Alice.p12",) + cls.SIGNED:
            if not os.path.isfile(os.path.join(cls.dir, name)):
                sgtest.skip_file("%s is missing" % os.path.join(cls.dir, name))
        cls.tmp = sgtest.tmpdir("sgtbc")
        cls.alice = from_p12(os.path.join(cls.dir, "Alice.p12"), cls.tmp, "alice", ALICE)
        cls.passfile = smimetest.write_file(os.path.join(cls.tmp, "pass"), P12_PASS + "\n")
        # Bob's side: example.com is internal; Alice's certificate is known.
        cls.gw = smimetest.smime_gateway(
            os.path.join(cls.tmp, "gw"), inboundtest.inbound_policy(),
            anchors=[os.path.join(cls.dir, "TestCA.pem")], certs=[cls.alice.cert])
        cp = cls.gw.run("keys", "-c", cls.gw.policy, "import",
                        os.path.join(cls.dir, "Bob.p12"), "--passphrase-file", cls.passfile)
        if cp.returncode != 0:
            raise RuntimeError("Bob.p12 import failed: %s%s" % (cp.stdout, cp.stderr))

    def test_nss_signatures_announce_nothing(self):
        """The signatures of the test data that a reader sees without
        decrypting carry no SMIMECapabilities (openssl's reading)."""
        n = 0
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".eml"):
                continue
            msg = email.message_from_bytes(smimetest.read_file(os.path.join(self.dir, name)))
            for part in msg.walk():
                ct = part.get_content_type()
                if ct == "application/pkcs7-signature" or (
                        ct == "application/pkcs7-mime"
                        and part.get_param("smime-type") == "signed-data"):
                    sig = part.get_payload(decode=True)
                    self.assertIsNone(capstest.announced(sig), name)
                    n += 1
        self.assertGreaterEqual(n, 20)

    def test_valid_signatures_record_nothing_and_alice_gets_cbc(self):
        gw = smimetest.clone_gateway(self.gw, os.path.join(self.tmp, "bob-side"))
        for name in self.SIGNED:
            with self.subTest(message=name):
                msg = smimetest.read_file(os.path.join(self.dir, name))
                _out, err, _dec, sig = self.run_inbound(gw, msg, rcpts=[BOB],
                                                        sender=ALICE)
                self.assertEqual(sig, "valid; method=smime; signer=%s; key=%s"
                                 % (ALICE, self.alice.fpr))
                self.assertNotIn("capabilities", err)
        self.assertFalse(os.path.exists(os.path.join(gw.keystore, "smime-capabilities")))
        # The same keystore on a gateway for which example.com is outside.
        out_gw = smimetest.clone_gateway(gw, os.path.join(self.tmp, "to-alice"))
        with open(out_gw.policy, "w") as f:
            f.write(smimetest.smime_policy(internal_domains="example.org"))
        msg = message(ALICE)
        rc, out, err = out_gw.process(msg, SENDER, [ALICE])
        self.assertEqual(rc, 0, err)
        self.assertIn("cipher: aes-256-cbc (capabilities of %s unknown)" % ALICE,
                      err.splitlines())
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        self.assertEqual(smimetest.cms_content_cipher(smimetest.cms_print(der)),
                         "aes-256-cbc")
        smimetest.assert_openssl_decrypts(self, der, self.alice, msg)


if __name__ == "__main__":
    unittest.main()
