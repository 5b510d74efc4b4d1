"""Inbound decryption of messages made by Mozilla Thunderbird (and NSS).

Uses $SEALGATE_CORPORA/thunderbird:

  - S/MIME: mailnews/test/data/smime/alice.env.eml, enveloped data from
    Alice@example.com to Bob@example.com. The gateway (internal domain
    example.com) holds Bob.p12 (passphrase "nss") and trusts TestCA.pem.
    openssl, with the key from Bob.p12, is the independent decrypter.
  - OpenPGP: mail/test/browser/openpgp/data/eml/, with the secret keys of
    bob@openpgp.example and alice@openpgp.example from .../data/keys/ (internal
    domain openpgp.example). gpg in a separate GnuPG home with the same
    secret keys is the independent decrypter. The plainly encrypted
    messages that include Bob's key decrypt for Bob; the partially
    encrypted ones (inline armor with text around it, armor in an HTML part,
    an encrypted message forwarded as an attachment, encryption inside a
    signature) are never decrypted, even for the recipient they are
    encrypted to.

The file is skipped (exit 77) when SEALGATE_CORPORA is unset or the files
are missing.
"""

import base64
import os
import quopri
import re
import types
import unittest

import sgtest
import signtest
import smimetest
from sgtest import canon, split_header_body
from inboundtest import InboundCase, expected_passthrough, inbound_policy, process, status_fields

SMIME_BOB = "Bob@example.com"
SMIME_ALICE = "Alice@example.com"
SMIME_DAVE = "dave@example.com"
PGP_BOB = "bob@openpgp.example"
PGP_ALICE = "alice@openpgp.example"
PGP_SENDER = "sender@partner.example"
P12_PASS = "nss"
SMIME_TEXT = b"This is a test message from Alice to Bob."

PLAIN_FOR_BOB = (
    "encrypted-and-signed-alice-to-bob-nonascii.eml",
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330.eml",
    "unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330-with-key.eml",
    "signed-by-0xfbfcc82a015e7330-encrypted-to-0xf231550c4f47e38e.eml",
    "signed-encrypted-autocrypt-gossip.eml",
)
# (file, envelope recipient whose key the encrypted part is for)
PARTIAL = (
    ("alice-partially-encrypted.eml", PGP_ALICE),
    ("partial-encrypt-for-alice-plaintext.eml", PGP_ALICE),
    ("partial-encrypt-for-alice-html.eml", PGP_ALICE),
    ("fwd-unsigned-encrypted.eml", PGP_BOB),
    ("outer-pgp-sig-inner-pgp-enc.eml", PGP_ALICE),
)

ARMOR_RE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.S)


def corpus():
    root = os.environ.get("SEALGATE_CORPORA")
    if not root:
        sgtest.skip_file("SEALGATE_CORPORA is not set")
    tb = os.path.join(root, "thunderbird")
    paths = types.SimpleNamespace(
        smime=os.path.join(tb, "mailnews/test/data/smime"),
        eml=os.path.join(tb, "mail/test/browser/openpgp/data/eml"),
        keys=os.path.join(tb, "mail/test/browser/openpgp/data/keys"))
    paths.bob_sec = os.path.join(paths.keys, "bob@openpgp.example-0xfbfcc82a015e7330-secret.asc")
    paths.alice_sec = os.path.join(paths.keys,
                                   "alice@openpgp.example-0xf231550c4f47e38e-secret.asc")
    needed = [os.path.join(paths.smime, n) for n in ("alice.env.eml", "Bob.p12", "TestCA.pem")]
    needed += [paths.bob_sec, paths.alice_sec]
    needed += [os.path.join(paths.eml, n) for n in PLAIN_FOR_BOB]
    needed += [os.path.join(paths.eml, n) for n, _r in PARTIAL]
    for p in needed:
        if not os.path.exists(p):
            sgtest.skip_file("%s is missing" % p)
    return paths


def read_message(path):
    with open(path, "rb") as f:
        msg = f.read()
    if msg.startswith(b"From "):
        msg = msg.split(b"\n", 1)[1]      # an mbox separator, not a header field
    return msg


def distinctive_line(plain, original):
    """The longest line of a plaintext (at least 12 characters) that does not
    occur in the original message: a marker for leaks."""
    lines = sorted((l.strip() for l in re.split(rb"\r?\n", plain)), key=len, reverse=True)
    for line in lines:
        if len(line) >= 12 and line not in original:
            return line.decode("utf-8", "replace")
    raise AssertionError("no distinctive plaintext line")


def setUpModule():
    global P, TMP, SMIME_GW, PGP_GW, BOB_KEY, CHECKER
    smimetest.require_tools()
    sgtest.require_program("gpg")
    P = corpus()
    TMP = sgtest.tmpdir("sgtbi")
    # S/MIME: Bob's identity from his PKCS#12 file, for the gateway and
    # (as PEM) for openssl.
    passfile = smimetest.write_file(os.path.join(TMP, "pass"), P12_PASS + "\n")
    SMIME_GW = sgtest.policy_gateway(os.path.join(TMP, "gws"), inbound_policy())
    SMIME_GW.check_policy()
    for args in (["--trust-anchor", os.path.join(P.smime, "TestCA.pem")],
                 [os.path.join(P.smime, "Bob.p12"), "--passphrase-file", passfile]):
        cp = SMIME_GW.run("keys", "-c", SMIME_GW.policy, "import", *args)
        if cp.returncode != 0:
            raise RuntimeError("import failed: %s%s" % (cp.stdout, cp.stderr))
    p12 = os.path.join(P.smime, "Bob.p12")
    BOB_KEY = types.SimpleNamespace(cert=os.path.join(TMP, "bob.pem"),
                                    key=os.path.join(TMP, "bob.key"), addr=SMIME_BOB)
    smimetest.openssl("pkcs12", "-in", p12, "-passin", "pass:" + P12_PASS, "-nokeys",
                      "-clcerts", "-out", BOB_KEY.cert)
    smimetest.openssl("pkcs12", "-in", p12, "-passin", "pass:" + P12_PASS, "-nocerts",
                      "-nodes", "-out", BOB_KEY.key)
    # OpenPGP: the gateway and an independent GnuPG home hold the same keys.
    PGP_GW = sgtest.policy_gateway(os.path.join(TMP, "gwp"),
                                   inbound_policy(internal_domains="openpgp.example"))
    PGP_GW.check_policy()
    PGP_GW.import_keys_checked(P.bob_sec, P.alice_sec)
    CHECKER = sgtest.GpgHome(os.path.join(TMP, "chk"))
    for path in (P.bob_sec, P.alice_sec):
        with open(path, "rb") as f:
            CHECKER.import_keys(f.read())


def tearDownModule():
    CHECKER.kill()


class ThunderbirdSmime(unittest.TestCase, InboundCase):

    def setUp(self):
        self.msg = read_message(os.path.join(P.smime, "alice.env.eml"))
        _fields, body = sgtest.split_header_body(self.msg)
        self.der = base64.b64decode(b"".join(body.split()))

    def test_enveloped_to_bob_decrypts(self):
        # openssl with Bob's key: the reference entity; AES-CBC, so no
        # integrity protection.
        cipher = smimetest.cms_content_cipher(smimetest.cms_print(self.der))
        self.assertRegex(cipher or "", r"^aes-\d+-cbc$")
        rc, entity, err = smimetest.cms_decrypt(self.der, BOB_KEY)
        self.assertEqual(rc, 0, err)
        out, err = self.assert_decrypted(SMIME_GW, self.msg, [SMIME_BOB], entity,
                                         "yes; method=smime; integrity=none",
                                         sender=SMIME_ALICE)
        fields, body = sgtest.split_header_body(sgtest.canon(out))
        self.assertIn(SMIME_TEXT, signtest.decode_body(fields, body))
        self.assertNotIn(SMIME_TEXT.decode(), err)

    def test_not_decrypted_for_another_recipient(self):
        for rcpts in ([SMIME_DAVE], [SMIME_BOB, SMIME_DAVE]):
            with self.subTest(rcpts=rcpts):
                self.assert_passthrough(SMIME_GW, self.msg, rcpts,
                                        "no; reason=not-for-recipient",
                                        marker=SMIME_TEXT.decode(), sender=SMIME_ALICE)


class ThunderbirdOpenpgp(unittest.TestCase, InboundCase):

    def reference(self, msg):
        """What gpg (holding the same keys) decrypts the message's armored
        block to."""
        blocks = ARMOR_RE.findall(msg)
        self.assertEqual(len(blocks), 1)
        rc, plain, err = CHECKER.decrypt(blocks[0])
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        return plain

    def test_encrypted_for_bob_decrypts(self):
        for name in PLAIN_FOR_BOB:
            with self.subTest(name=name):
                msg = read_message(os.path.join(P.eml, name))
                entity = self.reference(msg)
                # Signatures inside are reported, but not checked here.
                out, err = self.assert_decrypted(PGP_GW, msg, [PGP_BOB], entity,
                                                 "yes; method=openpgp; integrity=mdc",
                                                 sender=PGP_SENDER, signature=None)
                self.assertNotIn(b"-----BEGIN PGP MESSAGE-----", out)
                self.assertNotIn(distinctive_line(entity, msg), err)

    def test_not_decrypted_for_a_recipient_without_the_key(self):
        # Encrypted to alice and bob, delivered to another internal address
        # that has no key.
        msg = read_message(os.path.join(P.eml, PLAIN_FOR_BOB[1]))
        marker = distinctive_line(self.reference(msg), msg)
        self.assert_passthrough(PGP_GW, msg, ["carol@openpgp.example"],
                                "no; reason=not-for-recipient", marker=marker,
                                sender=PGP_SENDER)

    def test_partially_encrypted_never_decrypted(self):
        for name, rcpt in PARTIAL:
            with self.subTest(name=name):
                msg = read_message(os.path.join(P.eml, name))
                marker = distinctive_line(self.reference(msg), msg)
                self.assert_passthrough(PGP_GW, msg, [rcpt], "no; reason=partial-encryption",
                                        marker=marker, sender=PGP_SENDER, signature=None)

    def test_hidden_recipient(self):
        # All key ids hidden (throw-keyids), encrypted to alice: decrypted
        # with alice's own key only; bob's key does not open it.
        msg = read_message(os.path.join(P.eml, "encrypted-to-alice-as-hidden-recipient.eml"))
        entity = self.reference(msg)
        self.assert_decrypted(PGP_GW, msg, [PGP_ALICE], entity,
                              "yes; method=openpgp; integrity=mdc", sender=PGP_SENDER,
                              signature=None)
        marker = distinctive_line(entity, msg)
        for rcpts in ([PGP_BOB], [PGP_ALICE, PGP_BOB]):
            with self.subTest(rcpts=rcpts):
                self.assert_passthrough(PGP_GW, msg, rcpts, "no; reason=not-for-recipient",
                                        marker=marker, sender=PGP_SENDER)

    def test_inline_with_nbsp_armor_line_decrypts(self):
        # Thunderbird decrypts quoted-printable inline PGP whose armor
        # separator line is a no-break space (U+00A0, from an HTML
        # editor); so does sealgate, to what an independent gpg reads
        # from the same armor with a truly empty line.
        msg = read_message(os.path.join(P.eml, "bob-enc-inline-nbsp-qp.eml"))
        body = quopri.decodestring(split_header_body(msg)[1])
        self.assertEqual(body.count(b"\xc2\xa0"), 1)
        rc, plain, err = CHECKER.decrypt(re.sub(rb"\n\xc2\xa0(\r?\n)", rb"\n\1", body))
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        rc, out, err = process(PGP_GW, msg, [PGP_ALICE], sender=PGP_SENDER)
        self.assertEqual(rc, 0, err)
        dec, _sig, _last = status_fields(out)
        self.assertEqual(dec, ["yes; method=openpgp; integrity=mdc"], err)
        self.assertEqual(canon(split_header_body(out)[1]), canon(plain))
        self.assertNotIn(b"-----BEGIN PGP MESSAGE-----", out)

    def test_inline_whitespace_lines_never_loosen_the_armor(self):
        # Only the empty line may hold white space: a no-break space
        # inside a base64 line, a second "empty" line, or text after the
        # END line leave the message undecrypted (malformed), never half
        # read.
        msg = read_message(os.path.join(P.eml, "bob-enc-inline-nbsp-qp.eml"))
        head, body = msg.split(b"\n\n", 1)
        for name, bad in (("nbsp in base64", body.replace(b"Q0qb", b"Q0=C2=A0qb", 1)),
                          ("second blank line", body.replace(b"=C2=A0\n", b"=C2=A0\n=C2=A0\n", 1)),
                          ("text after END", body + b"PS: see above\n")):
            with self.subTest(name=name):
                rc, out, err = process(PGP_GW, head + b"\n\n" + bad, [PGP_ALICE],
                                       sender=PGP_SENDER)
                self.assertEqual(rc, 0, err)
                dec, _sig, _last = status_fields(out)
                self.assertEqual(len(dec), 1, err)
                self.assertFalse(dec[0].startswith("yes"), dec)
                self.assertNotIn(b"My real name is not Bob", out)

    def test_inline_with_nbsp_armor_line(self):
        # Quoted-printable inline PGP whose armor separator line is a
        # no-break space, encrypted to alice only, delivered to bob: no
        # crash, no GLib assertion, the original delivered.
        msg = read_message(os.path.join(P.eml, "bob-enc-inline-nbsp-qp.eml"))
        rc, out, err = process(PGP_GW, msg, [PGP_BOB], sender=PGP_SENDER)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("CRITICAL", err, "GLib reported a programming error")
        self.assertNotIn("WARNING", err)
        dec, sig, _last = status_fields(out)
        self.assertEqual(len(dec), 1)
        self.assertFalse(dec[0].startswith("yes"), dec)
        self.assertTrue(out == expected_passthrough(msg, dec[0], sig[0]))
        self.assertNotIn(b"My real name is not Bob", out)


if __name__ == "__main__":
    unittest.main()
