"""Outbound S/MIME encryption through `sealgate process`, checked with openssl and gpgsm.

A test CA is made per run with openssl (RSA-3072); its certificate is imported
as a trust anchor. Recipients: carol@partner.example (RSA-2048, address as SAN
rfc822Name), dave@partner.example (EC P-256) and erin@other.example (RSA-2048,
address only in the subject's emailAddress), all with the emailProtection
extended key usage.

Every message sealgate writes is decrypted with `openssl cms -decrypt` with
the recipient's own key, and the decrypted entity must be the original's
Content-* fields and body (CRLF-canonical); the algorithms are read from
`openssl cms -cmsout -print`. gpgsm decrypts what it can read.

None of these recipients' capabilities are known (no signed mail from them
was seen, none stated), so by default they get AES-256-CBC EnvelopedData;
`smime_cipher` on the default or a rule forces AES-GCM here
(test_smime_capabilities.py covers the choice by capabilities).

gpgsm 2.2.40 (the one on the test machines) can decrypt only part of what
sealgate can write, and the limits are gpgsm's, not sealgate's: the same
happens with messages that `openssl cms -encrypt` makes.
  - AuthEnvelopedData (AES-GCM): "error getting IV: Buffer too short".
  - RSA-OAEP key transport: "error getting encrypted session key".
  - EC keys: importing an EC P-256 PKCS#12 file crashes gpgsm 2.2.40.
So gpgsm checks the RSA + AES-CBC (EnvelopedData, PKCS#1 v1.5) messages, the
default output among them. Set-up asks gpgsm whether it can read openssl's own
GCM and OAEP messages; if a newer gpgsm can, it must read sealgate's too, else
those checks are skipped with the reason.
"""

import base64
import os
import re
import shutil
import unittest

import sgtest
import smimetest
from sgtest import MARKER, SENDER, make_message, std_headers
from smimetest import assert_openssl_decrypts, cms_content_cipher, cms_recipient_infos

CAROL = "carol@partner.example"
DAVE = "dave@partner.example"       # EC P-256
ERIN = "erin@other.example"         # address only in the subject
FRANK = "frank@other.example"       # RSA-3072
AUTH = "authEnveloped-data"
ENV = "enveloped-data"
AUTH_OID = "id-smime-ct-authEnvelopedData"
ENV_OID = "pkcs7-envelopedData"


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


def text_message(to="Carol Partner <%s>" % CAROL, extra=()):
    return make_message(
        std_headers(to=to, extra=extra) + [("Content-Type", "text/plain; charset=us-ascii"),
                                           ("Content-Transfer-Encoding", "7bit")],
        "Hello,\r\n\r\nthe figures are attached. %s\r\n\r\n-- \r\nAlice\r\n" % MARKER)


def attachment_message(blob, to="Carol Partner <%s>" % CAROL):
    body = (b"This is a multi-part message in MIME format.\r\n"
            b"--mix-b0undary\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            b"See attachment. " + MARKER.encode() + b" \xc3\xa9\r\n"
            b"--mix-b0undary\r\n"
            b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + b64_lines(blob) +
            b"--mix-b0undary--\r\n")
    return make_message(std_headers(to=to)
                        + [("Content-Type", 'multipart/mixed;\r\n boundary="mix-b0undary"')],
                        body)


class SmimeEncrypt(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.tmp = sgtest.tmpdir("sgsme")
        cls.ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"), key="rsa:3072")
        cls.carol = cls.ca.issue("Carol Partner", [CAROL], key="rsa:2048")
        cls.dave = cls.ca.issue("Dave Partner", [DAVE], key="ec:P-256")
        cls.erin = cls.ca.issue("Erin Other", [ERIN], key="rsa:2048", san=False,
                                subject_email=True)
        cls.frank = cls.ca.issue("Frank Other", [FRANK], key="rsa:3072")
        cls.certs = [cls.carol.cert, cls.dave.cert, cls.erin.der, cls.frank.cert]
        cls._gateways = {}

        # gpgsm with Carol's key, and what it can read of openssl's own output.
        cls.gpgsm = None
        cls.gpgsm_gcm = cls.gpgsm_oaep = False
        if shutil.which("gpgsm"):
            home = smimetest.GpgsmHome(os.path.join(cls.tmp, "gsm"))
            home.trust(cls.ca)
            home.add_identity(cls.carol)
            probe = b"Content-Type: text/plain\r\n\r\nprobe\r\n"
            if not home.can_decrypt(smimetest.openssl_encrypt(probe, [cls.carol])):
                raise RuntimeError("gpgsm cannot decrypt openssl's AES-CBC message: "
                                   "the gpgsm home is not set up right")
            cls.gpgsm = home
            cls.gpgsm_gcm = home.can_decrypt(
                smimetest.openssl_encrypt(probe, [cls.carol], cipher="aes-256-gcm"))
            cls.gpgsm_oaep = home.can_decrypt(
                smimetest.openssl_encrypt(probe, [cls.carol], oaep=True))

    @classmethod
    def gateway(cls, name, **policy):
        """A gateway (cached by name) with smimetest.smime_policy(**policy),
        the test CA as trust anchor and the three recipients' certificates."""
        if name not in cls._gateways:
            cls._gateways[name] = smimetest.smime_gateway(
                os.path.join(cls.tmp, "gw-" + name), smimetest.smime_policy(**policy),
                anchors=[cls.ca.cert], certs=cls.certs)
        return cls._gateways[name]

    # -- helpers ---------------------------------------------------------

    @classmethod
    def gcm_gateway(cls):
        """The default policy with AES-256-GCM forced."""
        return cls.gateway("gcm", default_extra="smime_cipher: aes-256-gcm")

    def encrypt(self, msg, rcpts, gw=None, smime_type=ENV, ciphers=None):
        """Process msg; assert accepted and S/MIME encrypted to rcpts with
        their certificates (stderr key: lines), message format, content not
        on stderr nor in clear, spool empty. ciphers: the expected content
        encryption algorithm. Returns (DER, cmsout print text)."""
        gw = gw or self.gateway("default")
        rc, out, err = gw.process(msg, SENDER, list(rcpts))
        self.assertEqual(rc, 0, "sealgate process exit %d: %s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIn("action: encrypt method=smime", err.splitlines())
        self.assertIsNotNone(out, "no message written")
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        self.assertNotIn(MARKER.encode(), out, "marker visible in clear in the result")
        idents = {CAROL: self.carol, DAVE: self.dave, ERIN: self.erin, FRANK: self.frank}
        want = sorted(idents[r.lower()].fpr for r in rcpts)
        got = sorted(k.strip().upper() for k in sgtest.stderr_field(err, "key"))
        self.assertEqual(got, want, "key: lines on stderr")
        der = smimetest.smime_der(self, msg, out, smime_type)
        text = smimetest.cms_print(der)
        self.assertEqual(smimetest.cms_content_type(text),
                         AUTH_OID if smime_type == AUTH else ENV_OID)
        if ciphers:
            self.assertEqual(cms_content_cipher(text), ciphers)
        self.assertEqual(gw.spool_entries(), [], "spool dir not empty after run")
        return der, text

    def assert_gpgsm(self, der, msg, gcm=False, oaep=False):
        """gpgsm (holding Carol's key) decrypts der to msg's entity; skipped
        when gpgsm is missing or cannot read this kind of message at all."""
        if self.gpgsm is None:
            self.skipTest("gpgsm is not installed")
        if gcm and not self.gpgsm_gcm:
            self.skipTest("this gpgsm cannot decrypt AuthEnvelopedData, "
                          "not even openssl's (gpgsm 2.2)")
        if oaep and not self.gpgsm_oaep:
            self.skipTest("this gpgsm cannot decrypt RSA-OAEP, not even openssl's (gpgsm 2.2)")
        smimetest.assert_gpgsm_decrypts(self, self.gpgsm, der, msg, CAROL)

    def assert_ktri(self, text, n, algorithm="rsaEncryption"):
        infos = cms_recipient_infos(text)
        self.assertEqual(infos, [("ktri", algorithm)] * n, text)

    # -- ciphers and key transport --------------------------------------

    def test_cbc_default_rsa(self):
        # Capabilities unknown: AES-256-CBC EnvelopedData, which every
        # S/MIME client reads.
        msg = text_message()
        rc, _out, err = self.gateway("default").process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIn("cipher: aes-256-cbc (capabilities of %s unknown)" % CAROL,
                      err.splitlines())
        der, text = self.encrypt(msg, [CAROL], ciphers="aes-256-cbc")
        self.assert_ktri(text, 1)
        assert_openssl_decrypts(self, der, self.carol, msg)
        rc, plain, _err = smimetest.cms_decrypt(der, self.erin)
        self.assertNotEqual(rc, 0)
        self.assertNotIn(MARKER.encode(), plain)

    def test_cbc_default_rsa_gpgsm(self):
        msg = text_message()
        der, _text = self.encrypt(msg, [CAROL], ciphers="aes-256-cbc")
        self.assert_gpgsm(der, msg)

    def test_gcm_forced_rsa(self):
        msg = text_message()
        der, text = self.encrypt(msg, [CAROL], gw=self.gcm_gateway(), smime_type=AUTH,
                                 ciphers="aes-256-gcm")
        self.assert_ktri(text, 1)
        assert_openssl_decrypts(self, der, self.carol, msg)
        # Someone else's key does not open it.
        rc, plain, _err = smimetest.cms_decrypt(der, self.erin)
        self.assertNotEqual(rc, 0)
        self.assertNotIn(MARKER.encode(), plain)

    def test_gcm_forced_rsa_gpgsm(self):
        msg = text_message()
        der, _text = self.encrypt(msg, [CAROL], gw=self.gcm_gateway(), smime_type=AUTH,
                                  ciphers="aes-256-gcm")
        self.assert_gpgsm(der, msg, gcm=True)

    def test_gcm_tampered_fails(self):
        # AES-GCM's tag covers the content: one flipped bit in the
        # ciphertext and openssl refuses it (what it wrote before refusing
        # differs between its versions and is not looked at).
        msg = text_message()
        der, text = self.encrypt(msg, [CAROL], gw=self.gcm_gateway(), smime_type=AUTH)
        assert_openssl_decrypts(self, der, self.carol, msg)
        first = re.search(r"encryptedContent:\s*\n\s*0000 - ((?:[0-9a-f]{2}[ -]){8})", text)
        self.assertTrue(first, text)
        start = bytes.fromhex(first.group(1).replace("-", " "))
        self.assertEqual(der.count(start), 1)
        bad = bytearray(der)
        bad[der.index(start) + 3] ^= 0x01
        rc, _plain, _err = smimetest.cms_decrypt(bytes(bad), self.carol)
        self.assertNotEqual(rc, 0)

    def test_gcm_to_ec_recipient(self):
        # keyUsage keyAgreement is what an ECDH certificate carries (RFC 5753).
        klass = smimetest.explain_class(self.gateway("default"), DAVE)
        self.assertEqual(klass, "smime (S/MIME certificate %s)" % self.dave.fpr,
                         "policy explain: class: %s" % klass)
        msg = text_message(to="Dave <%s>" % DAVE)
        der, text = self.encrypt(msg, [DAVE], gw=self.gcm_gateway(), smime_type=AUTH,
                                 ciphers="aes-256-gcm")
        infos = cms_recipient_infos(text)
        self.assertEqual(len(infos), 1, text)
        self.assertEqual(infos[0][0], "kari", "EC recipient without key agreement")
        self.assertRegex(infos[0][1], r"^dhSinglePass-(stdDH|cofactorDH)-sha\d+kdf-scheme$")
        assert_openssl_decrypts(self, der, self.dave, msg)

    def test_cbc_by_rule(self):
        gw = self.gateway("cbc", default_extra="smime_cipher: aes-256-gcm", rules=(
            "    - { name: old-clients, when: { recipient_domain: [partner.example] }, "
            "action: encrypt, smime_cipher: aes-256-cbc }\n"))
        msg = text_message()
        der, text = self.encrypt(msg, [CAROL], gw=gw, smime_type=ENV, ciphers="aes-256-cbc")
        self.assert_ktri(text, 1)
        assert_openssl_decrypts(self, der, self.carol, msg)
        # The rule is per recipient domain: erin still gets the default.
        msg2 = text_message(to=ERIN)
        der2, _t = self.encrypt(msg2, [ERIN], gw=gw, smime_type=AUTH, ciphers="aes-256-gcm")
        assert_openssl_decrypts(self, der2, self.erin, msg2)
        self.assert_gpgsm(der, msg)

    def test_aes128_gcm(self):
        gw = self.gateway("gcm128", default_extra="smime_cipher: aes-128-gcm")
        msg = text_message()
        der, _text = self.encrypt(msg, [CAROL], gw=gw, smime_type=AUTH, ciphers="aes-128-gcm")
        assert_openssl_decrypts(self, der, self.carol, msg)

    def test_aes128_cbc(self):
        gw = self.gateway("cbc128", default_extra="smime_cipher: aes-128-cbc")
        msg = text_message()
        der, _text = self.encrypt(msg, [CAROL], gw=gw, smime_type=ENV, ciphers="aes-128-cbc")
        assert_openssl_decrypts(self, der, self.carol, msg)
        self.assert_gpgsm(der, msg)

    def test_oaep(self):
        gw = self.gateway("oaep", default_extra="smime_key_transport: rsa-oaep, "
                                                "smime_cipher: aes-256-gcm")
        msg = text_message()
        der, text = self.encrypt(msg, [CAROL], gw=gw, smime_type=AUTH, ciphers="aes-256-gcm")
        self.assert_ktri(text, 1, "rsaesOaep")
        assert_openssl_decrypts(self, der, self.carol, msg)

    def test_oaep_with_cbc_gpgsm(self):
        gw = self.gateway("oaep-cbc", default_extra="smime_key_transport: rsa-oaep, "
                                                    "smime_cipher: aes-256-cbc")
        msg = text_message()
        der, text = self.encrypt(msg, [CAROL], gw=gw, smime_type=ENV, ciphers="aes-256-cbc")
        self.assert_ktri(text, 1, "rsaesOaep")
        assert_openssl_decrypts(self, der, self.carol, msg)
        self.assert_gpgsm(der, msg, oaep=True)

    def test_oaep_by_rule_is_per_recipient(self):
        gw = self.gateway("oaep-rule", rules=(
            "    - { name: oaep, when: { recipient: [%s] }, action: encrypt, "
            "smime_key_transport: rsa-oaep }\n" % ERIN))
        msg = text_message(to="%s, %s" % (CAROL, ERIN))
        der, text = self.encrypt(msg, [CAROL, ERIN], gw=gw, ciphers="aes-256-cbc")
        infos = cms_recipient_infos(text)
        self.assertEqual(sorted(infos), [("ktri", "rsaEncryption"), ("ktri", "rsaesOaep")],
                         text)
        for ident in (self.carol, self.erin):
            assert_openssl_decrypts(self, der, ident, msg)

    # -- several recipients ---------------------------------------------

    def test_three_rsa_recipients_each_decrypts(self):
        msg = text_message(to="Carol <%s>, Frank <%s>" % (CAROL, FRANK),
                           extra=[("Cc", "Erin <%s>" % ERIN)])
        der, text = self.encrypt(msg, [CAROL, ERIN, FRANK], ciphers="aes-256-cbc")
        self.assert_ktri(text, 3)
        for ident in (self.carol, self.erin, self.frank):
            assert_openssl_decrypts(self, der, ident, msg)

    def test_three_recipients_rsa_and_ec_each_decrypts(self):
        msg = text_message(to="Carol <%s>, Dave <%s>" % (CAROL, DAVE),
                           extra=[("Cc", "Erin <%s>" % ERIN)])
        der, text = self.encrypt(msg, [CAROL, DAVE, ERIN], ciphers="aes-256-cbc")
        infos = cms_recipient_infos(text)
        self.assertEqual(len(infos), 3, "expected one RecipientInfo per recipient:\n" + text)
        self.assertEqual(sorted(k for k, _a in infos), ["kari", "ktri", "ktri"])
        for ident in (self.carol, self.dave, self.erin):
            assert_openssl_decrypts(self, der, ident, msg)

    def test_mixed_ciphers_cbc_wins(self):
        gw = self.gateway("mixed-cbc", default_extra="smime_cipher: aes-256-gcm", rules=(
            "    - { name: old-clients, when: { recipient_domain: [other.example] }, "
            "action: encrypt, smime_cipher: aes-256-cbc }\n"))
        msg = text_message(to="%s, %s" % (CAROL, ERIN))
        # Whichever recipient comes first, the more compatible CBC is used.
        for rcpts in ([CAROL, ERIN], [ERIN, CAROL]):
            der, text = self.encrypt(msg, rcpts, gw=gw, smime_type=ENV, ciphers="aes-256-cbc")
            self.assert_ktri(text, 2)
            for ident in (self.carol, self.erin):
                assert_openssl_decrypts(self, der, ident, msg)
        self.assert_gpgsm(der, msg)

    def test_mixed_ciphers_128_gcm_wins(self):
        gw = self.gateway("mixed-gcm128", default_extra="smime_cipher: aes-256-gcm", rules=(
            "    - { name: short-key, when: { recipient_domain: [other.example] }, "
            "action: encrypt, smime_cipher: aes-128-gcm }\n"))
        msg = text_message(to="%s, %s" % (CAROL, ERIN))
        for rcpts in ([CAROL, ERIN], [ERIN, CAROL]):
            der, _text = self.encrypt(msg, rcpts, gw=gw, smime_type=AUTH,
                                      ciphers="aes-128-gcm")
            for ident in (self.carol, self.erin):
                assert_openssl_decrypts(self, der, ident, msg)

    def test_mixed_ciphers_128_cbc_wins(self):
        gw = self.gateway("mixed-cbc128", rules=(
            "    - { name: cbc, when: { recipient_domain: [partner.example] }, "
            "action: encrypt, smime_cipher: aes-256-cbc }\n"
            "    - { name: cbc-short, when: { recipient_domain: [other.example] }, "
            "action: encrypt, smime_cipher: aes-128-cbc }\n"))
        msg = text_message(to="%s, %s, %s" % (CAROL, ERIN, FRANK))
        der, text = self.encrypt(msg, [CAROL, ERIN, FRANK], gw=gw, smime_type=ENV,
                                 ciphers="aes-128-cbc")
        self.assert_ktri(text, 3)
        for ident in (self.carol, self.erin, self.frank):
            assert_openssl_decrypts(self, der, ident, msg)

    # -- message kinds ----------------------------------------------------

    def test_utf8_8bit_text(self):
        body = ("Grüße aus Köln — ½ € ✓ 日本語 %s\r\n"
                "Ligne accentuée : àéèùç\r\n" % MARKER)
        msg = make_message(
            std_headers(subject="=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=")
            + [("Content-Type", "text/plain; charset=UTF-8; format=flowed"),
               ("Content-Transfer-Encoding", "8bit")],
            body)
        der, _text = self.encrypt(msg, [CAROL])
        plain = assert_openssl_decrypts(self, der, self.carol, msg)
        self.assertIn(body.encode("utf-8"), plain)

    def test_utf8_8bit_text_cbc_gpgsm(self):
        body = "Grüße — ½ € ✓ 日本語 %s\r\n" % MARKER
        msg = make_message(std_headers() + [("Content-Type", "text/plain; charset=UTF-8"),
                                            ("Content-Transfer-Encoding", "8bit")], body)
        gw = self.gateway("cbc128", default_extra="smime_cipher: aes-128-cbc")
        der, _text = self.encrypt(msg, [CAROL], gw=gw, smime_type=ENV)
        self.assert_gpgsm(der, msg)

    def test_multipart_binary_attachment(self):
        blob = os.urandom(40000)
        msg = attachment_message(blob)
        der, _text = self.encrypt(msg, [CAROL])
        plain = assert_openssl_decrypts(self, der, self.carol, msg)
        self.assertIn(b64_lines(blob), plain)

    def test_multipart_binary_attachment_ec(self):
        blob = os.urandom(20000)
        msg = attachment_message(blob, to=DAVE)
        der, _text = self.encrypt(msg, [DAVE])
        assert_openssl_decrypts(self, der, self.dave, msg)

    def test_large_attachment(self):
        blob = os.urandom(1536 * 1024)
        msg = attachment_message(blob)
        self.assertGreater(len(msg), 2 * 1024 * 1024)
        der, _text = self.encrypt(msg, [CAROL])
        self.assertGreater(len(der), len(blob))
        plain = assert_openssl_decrypts(self, der, self.carol, msg)
        self.assertIn(b64_lines(blob), plain)

    def test_large_attachment_cbc_gpgsm(self):
        blob = os.urandom(1100 * 1024)
        msg = attachment_message(blob)
        gw = self.gateway("cbc128", default_extra="smime_cipher: aes-128-cbc")
        der, _text = self.encrypt(msg, [CAROL], gw=gw, smime_type=ENV)
        assert_openssl_decrypts(self, der, self.carol, msg)
        self.assert_gpgsm(der, msg)

    def test_lf_line_endings_canonicalised(self):
        body = ("--b1\n"
                "Content-Type: text/plain; charset=utf-8\n\n"
                "line one %s\n"
                "line two\n"
                "--b1\n"
                "Content-Type: text/html; charset=utf-8\n\n"
                "<p>line one</p>\n"
                "--b1--\n" % MARKER)
        msg = make_message(std_headers() + [("Content-Type",
                                             "multipart/alternative; boundary=b1")],
                           body, eol=b"\n")
        self.assertNotIn(b"\r", msg)
        der, _text = self.encrypt(msg, [CAROL])
        plain = assert_openssl_decrypts(self, der, self.carol, msg)
        self.assertIn(b"line one " + MARKER.encode() + b"\r\nline two\r\n", plain)

    def test_without_mime_version(self):
        hdrs = [h for h in std_headers() if h[0] != "MIME-Version"]
        msg = make_message(hdrs + [("Content-Type", "text/plain; charset=us-ascii")],
                           "Just text. %s\r\n" % MARKER)
        der, _text = self.encrypt(msg, [CAROL])        # checks MIME-Version: 1.0 added
        assert_openssl_decrypts(self, der, self.carol, msg)

    # -- addresses ---------------------------------------------------------

    def test_address_in_subject_only(self):
        # erin's certificate has no SAN; the subject's emailAddress counts.
        self.assertEqual(smimetest.explain_class(self.gateway("default"), ERIN),
                         "smime (S/MIME certificate %s)" % self.erin.fpr)
        msg = text_message(to=ERIN)
        der, _text = self.encrypt(msg, [ERIN])
        assert_openssl_decrypts(self, der, self.erin, msg)

    def test_domain_case_insensitive(self):
        rcpt = "carol@Partner.EXAMPLE"
        # explain names the canonical address (domain in lower case)
        self.assertEqual(smimetest.explain_class(self.gateway("default"), rcpt,
                                                 named="carol@partner.example"),
                         "smime (S/MIME certificate %s)" % self.carol.fpr)
        msg = text_message(to=rcpt)
        der, _text = self.encrypt(msg, [rcpt])
        assert_openssl_decrypts(self, der, self.carol, msg)

    # -- method preference ---------------------------------------------------

    @classmethod
    def carol_openpgp(cls):
        """Carol's OpenPGP key in a GnuPG home (made once)."""
        if not hasattr(cls, "_carol_pgp"):
            home = sgtest.GpgHome(os.path.join(cls.tmp, "carol-pgp"))
            home.gen_key("Carol Partner", CAROL)
            cls._carol_pgp = (home, sgtest.export_public_key(cls.tmp, home, CAROL))
        return cls._carol_pgp

    def pref_gateway(self, methods):
        name = "pref-" + methods.replace(", ", "-")
        new = name not in self._gateways
        gw = self.gateway(name, methods=methods)
        if new:
            gw.import_keys_checked(self.carol_openpgp()[1])
        return gw

    def test_preference_openpgp_first(self):
        home, _pub = self.carol_openpgp()
        gw = self.pref_gateway("openpgp, smime")
        msg = text_message()
        rc, out, err = gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIn("action: encrypt method=openpgp", err.splitlines())
        self.assertNotIn(MARKER.encode(), out)
        sgtest.assert_outer_headers_kept(self, msg, out)
        sgtest.assert_decrypts_to_original(self, home, msg, out)
        # A recipient with only a certificate still gets S/MIME.
        msg2 = text_message(to=ERIN)
        der, _text = self.encrypt(msg2, [ERIN], gw=gw)
        assert_openssl_decrypts(self, der, self.erin, msg2)

    def test_preference_smime_first(self):
        self.carol_openpgp()
        gw = self.pref_gateway("smime, openpgp")
        msg = text_message()
        der, _text = self.encrypt(msg, [CAROL], gw=gw)
        assert_openssl_decrypts(self, der, self.carol, msg)


if __name__ == "__main__":
    unittest.main()
