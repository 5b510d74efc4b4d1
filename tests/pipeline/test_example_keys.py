"""The example identities of keys-example/ with policy.yaml.example, as the
demo (`make run`) uses them, checked with openssl and gpg.

The example keys are imported the way scripts/demo.py (make run) does it (the
example CA as a trust anchor, then the partners' public keys and
certificates and the internal users' secret keys and PKCS#12 files) into a
keystore next to a temporary copy of policy.yaml.example (relative paths in
a policy are relative to the policy file). Then:

  - alice -> frank@smime.example (rule smime-partner) is S/MIME that
    `openssl cms -decrypt` opens with frank.key, on the DER and on the whole
    message file as keys-example/README.md shows it;
  - alice -> carol@partner.example (rule partner) is OpenPGP that gpg opens
    with carol.sec.asc, on the armored part and on the whole message file;
  - alice -> list@lists.example (rule signed-list) is refused without SMTP
    AUTH and signed with it: gpg verifies the signature with alice's public
    key, and the gateway's own inbound check calls it valid; with only
    alice.p12 in the keystore the signature is S/MIME and
    `openssl cms -verify` with ca.pem as the only anchor accepts it;
  - the certificate files: issued by the example CA (`openssl verify
    -CAfile ca.pem`), the right address, key usage and extended key usage,
    frank's is no CA, long validity starting in the past, PKCS#12 files
    with an empty password, and no file holds the CA's private key.
"""

import datetime
import os
import re
import types
import unittest

import signtest
import sgtest
import smimetest
from sgtest import MARKER, make_message, std_headers
from smimetest import openssl

KEYS = os.path.join(sgtest.src_dir(), "keys-example")
PGP = os.path.join(KEYS, "openpgp")
SMIME = os.path.join(KEYS, "smime")
CA = os.path.join(SMIME, "ca.pem")

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@partner.example"
FRANK = "frank@smime.example"
LIST = "list@lists.example"
# name: (address, real name, has a PKCS#12 file)
USERS = {"alice": (ALICE, "Alice Example", True),
         "bob": (BOB, "Bob Example", True),
         "frank": (FRANK, "Frank Partner", False)}


def smime_path(name, ext):
    return os.path.join(SMIME, "%s.%s" % (name, ext))


def ident(name):
    """What smimetest's openssl helpers need of an identity (no files are
    written next to the example keys)."""
    return types.SimpleNamespace(cert=smime_path(name, "pem"), key=smime_path(name, "key"),
                                 addr=USERS[name][0])


def example_gateway(tmp):
    """A Gateway in tmp whose policy is a copy of policy.yaml.example; its
    keystore (keys-example/store, relative to the copy) stays in tmp."""
    with open(os.path.join(sgtest.src_dir(), "policy.yaml.example")) as f:
        gw = sgtest.policy_gateway(tmp, f.read())
    gw.keystore = os.path.join(tmp, "keys-example", "store")
    gw.check_policy()
    return gw


def import_anchor(gw):
    cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", CA)
    if cp.returncode != 0:
        raise RuntimeError("trust anchor import failed (%d): %s%s"
                           % (cp.returncode, cp.stdout, cp.stderr))


def x509_text(path, *opts):
    return openssl("x509", "-in", path, "-noout", *opts).stdout.decode()


def x509_ext(path, name):
    """The value lines of one extension (`openssl x509 -ext`), joined."""
    text = x509_text(path, "-ext", name)
    return " ".join(line.strip() for line in text.splitlines()[1:])


def x509_dates(path):
    out = {}
    for line in x509_text(path, "-dates").splitlines():
        key, _sep, value = line.partition("=")
        out[key] = datetime.datetime.strptime(value, "%b %d %H:%M:%S %Y GMT").replace(
            tzinfo=datetime.timezone.utc)
    return out["notBefore"], out["notAfter"]


def public_key(pem_bytes, is_cert):
    """The PEM public key of a certificate or private key (bytes)."""
    if is_cert:
        return openssl("x509", "-noout", "-pubkey", input_bytes=pem_bytes).stdout
    return openssl("pkey", "-pubout", "-passin", "pass:", input_bytes=pem_bytes).stdout


PRIVATE_RE = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                        re.S)


def private_keys_in(path):
    """Every private key (PEM bytes) in a file of keys-example: PEM blocks,
    and the keys in a PKCS#12 file (empty password)."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".p12"):
        data = openssl("pkcs12", "-in", path, "-passin", "pass:", "-nocerts",
                       "-nodes").stdout
    return [m.group(0) for m in PRIVATE_RE.finditer(data)]


def text_message(to):
    return make_message(std_headers(to=to) + [("Content-Type", "text/plain; charset=us-ascii"),
                                              ("Content-Transfer-Encoding", "7bit")],
                        "Hello,\r\n\r\nthe example keys work. %s\r\n" % MARKER)


class ExampleKeys(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgex")
        cls.gw = example_gateway(os.path.join(cls.tmp, "demo"))
        import_anchor(cls.gw)
        cls.imported = cls.gw.import_keys_checked(
            *[os.path.join(PGP, f) for f in ("carol.pub.asc", "dave.pub.asc", "erin.pub.asc",
                                             "alice.sec.asc", "bob.sec.asc")],
            smime_path("frank", "pem"), smime_path("alice", "p12"), smime_path("bob", "p12"))
        cls.carol = sgtest.GpgHome(os.path.join(cls.tmp, "carol"))
        cls.carol.gpg("--import", os.path.join(PGP, "carol.sec.asc"))
        cls.alice = sgtest.GpgHome(os.path.join(cls.tmp, "alice"))
        cls.alice.gpg("--import", os.path.join(PGP, "alice.pub.asc"))
        cls.scratch = signtest.Scratch(os.path.join(cls.tmp, "scratch"))

    def process(self, gw, rcpt, *extra):
        msg = text_message(rcpt)
        rc, out, err = gw.process(msg, ALICE, rcpt, extra_args=extra)
        return msg, rc, out, err

    def assert_rule(self, err, rule):
        self.assertEqual(sgtest.stderr_field(err, "rule"), [rule], err)

    # ------------------------------------------------------------------
    # The demo keystore

    def test_keystore_holds_what_the_demo_imports(self):
        rows = {(r["addr"], r["usable"])
                for r in smimetest.smime_list_lines(self.gw.list_keys().stdout)}
        self.assertEqual(rows, {(ALICE, "encrypt,decrypt,sign"),
                                (BOB, "encrypt,decrypt,sign"),
                                (FRANK, "encrypt"),
                                ("-", "trust-anchor")})
        self.assertNotIn("passphrase", self.imported.stdout + self.imported.stderr)

    # ------------------------------------------------------------------
    # Encryption, opened by the recipients' example keys

    def test_frank_gets_smime_that_frank_key_decrypts(self):
        msg, rc, out, err = self.process(self.gw, FRANK)
        self.assertEqual(rc, 0, err)
        self.assert_rule(err, "smime-partner")
        self.assertNotIn(MARKER.encode(), out)
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        smimetest.assert_openssl_decrypts(self, der, ident("frank"), msg)
        # As keys-example/README.md shows it: the whole message file.
        path = self.scratch.file("eml", out)
        cp = openssl("cms", "-decrypt", "-in", path, "-inkey", smime_path("frank", "key"),
                     "-recip", smime_path("frank", "pem"))
        smimetest.assert_entity(self, msg, sgtest.canon(cp.stdout), "(README command)")

    def test_carol_gets_openpgp_that_carol_key_decrypts(self):
        msg, rc, out, err = self.process(self.gw, CAROL)
        self.assertEqual(rc, 0, err)
        self.assert_rule(err, "partner")
        self.assertNotIn(MARKER.encode(), out)
        plain = sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        # As keys-example/README.md shows it: the whole message file.
        rc, whole, err = self.carol.decrypt(out)
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        self.assertEqual(whole, plain)

    # ------------------------------------------------------------------
    # Signing for the list

    def test_list_without_login_is_refused(self):
        _msg, rc, out, err = self.process(self.gw, LIST)
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertRegex(err, r'(?m)^550 5\.7\.1 signing required by rule "signed-list"')

    def test_list_with_login_is_signed_with_openpgp(self):
        msg, rc, out, err = self.process(self.gw, LIST, "--auth", "alice")
        self.assertEqual(rc, 0, err)
        self.assert_rule(err, "signed-list")
        signed = signtest.assert_pgp_verifies(self, self.scratch, out, self.alice,
                                              self.alice.fingerprint(ALICE))
        smimetest.assert_entity(self, msg, signed.content)
        # The gateway's own inbound check, for an internal recipient.
        rc, checked, err = self.gw.process(out, ALICE, BOB, client_ip=None)
        self.assertEqual(rc, 0, err)
        self.assertEqual([v.split(";")[0] for v in sgtest.field_values(checked,
                                                                       "X-Sealgate-Signature")],
                         ["valid"])
        self.assertIn("signer=%s" % ALICE, sgtest.field_values(checked,
                                                               "X-Sealgate-Signature")[0])

    def test_list_signed_with_alice_p12_verifies_against_ca_pem(self):
        gw = example_gateway(sgtest.tmpdir("sgex"))
        import_anchor(gw)
        gw.import_keys_checked(smime_path("alice", "p12"))
        msg, rc, out, err = self.process(gw, LIST, "--auth", "alice")
        self.assertEqual(rc, 0, err)
        self.assertIn("action: sign method=smime", err)
        rc, err, content = signtest.openssl_verify_message(self.scratch, out, CA)
        self.assertEqual(rc, 0, err)
        smimetest.assert_entity(self, msg, sgtest.canon(content))

    # ------------------------------------------------------------------
    # The certificate files

    def test_ca_certificate(self):
        subject = x509_text(CA, "-subject")
        self.assertIn("NOT FOR PRODUCTION", subject)
        self.assertEqual(x509_text(CA, "-issuer").split("=", 1)[1], subject.split("=", 1)[1])
        self.assertEqual(x509_ext(CA, "basicConstraints"), "CA:TRUE")
        self.assertIn("Certificate Sign", x509_ext(CA, "keyUsage"))
        openssl("verify", "-CAfile", CA, CA)

    def test_user_certificates(self):
        ca_subject = x509_text(CA, "-subject").split("=", 1)[1]
        now = smimetest.utcnow()
        _ca_start, ca_end = x509_dates(CA)
        for name, (addr, real, _p12) in USERS.items():
            with self.subTest(name=name):
                pem = smime_path(name, "pem")
                self.assertEqual(x509_text(pem, "-issuer").split("=", 1)[1], ca_subject)
                self.assertIn("CN = %s" % real, x509_text(pem, "-subject"))
                cp = openssl("verify", "-CAfile", CA, "-purpose", "smimeencrypt", pem)
                self.assertEqual(cp.stdout.decode().strip(), "%s: OK" % pem)
                self.assertEqual(x509_ext(pem, "subjectAltName"), "email:%s" % addr)
                self.assertEqual(x509_ext(pem, "basicConstraints"), "CA:FALSE")
                self.assertEqual(x509_ext(pem, "keyUsage"),
                                 "Digital Signature, Key Encipherment")
                self.assertEqual(x509_ext(pem, "extendedKeyUsage"), "E-mail Protection")
                self.assertRegex(x509_text(pem, "-text"), r"Public-Key: \((2048|3072) bit\)")
                start, end = x509_dates(pem)
                self.assertLess(start, now - smimetest.days(1) + datetime.timedelta(hours=1),
                                "not dated a day back")
                self.assertGreater(end - start, smimetest.days(9 * 365))
                self.assertLessEqual(end, ca_end, "outlives the CA")
                # The private key belongs to the certificate and is not encrypted.
                with open(smime_path(name, "key"), "rb") as f:
                    key = f.read()
                self.assertTrue(key.startswith(b"-----BEGIN PRIVATE KEY-----"))
                with open(pem, "rb") as f:
                    self.assertEqual(public_key(key, False), public_key(f.read(), True))

    def test_pkcs12_files_have_an_empty_password(self):
        for name, (addr, _real, p12) in USERS.items():
            path = smime_path(name, "p12")
            if not p12:
                self.assertFalse(os.path.exists(path), path)
                continue
            with self.subTest(name=name):
                out = openssl("pkcs12", "-in", path, "-passin", "pass:", "-nodes").stdout
                with open(smime_path(name, "pem"), "rb") as f:
                    cert_pub = public_key(f.read(), True)
                keys = [m.group(0) for m in PRIVATE_RE.finditer(out)]
                self.assertEqual([public_key(k, False) for k in keys], [cert_pub])
                cert = openssl("pkcs12", "-in", path, "-passin", "pass:", "-nokeys",
                               "-clcerts").stdout
                self.assertEqual(public_key(cert, True), cert_pub, "%s: other certificate" % addr)

    def test_no_file_holds_the_ca_private_key(self):
        with open(CA, "rb") as f:
            ca_pub = public_key(f.read(), True)
        seen = 0
        for dirpath, dirnames, files in os.walk(KEYS):
            dirnames[:] = [d for d in dirnames if d != "store"]
            for fname in files:
                if fname != "ca.pem":
                    self.assertFalse(fname.startswith("ca."), "%s in keys-example" % fname)
                path = os.path.join(dirpath, fname)
                if not fname.endswith((".key", ".p12", ".pem")):
                    continue
                for key in private_keys_in(path):
                    seen += 1
                    self.assertTrue(public_key(key, False) != ca_pub,
                                    "the CA's private key is in %s" % path)
        self.assertEqual(seen, 5, "private keys: alice, bob, frank .key, alice, bob .p12")


if __name__ == "__main__":
    unittest.main()
