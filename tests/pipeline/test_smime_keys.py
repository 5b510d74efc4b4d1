"""S/MIME certificates: `sealgate keys import` / `keys list`, and which
certificates the gateway refuses to encrypt to.

A test CA (with an intermediate CA) is made per run with openssl; its root is
imported as a trust anchor. Certificates that must not be used for
encryption (expired, not yet valid, wrong key usage, wrong extended key usage,
another address, not chaining to a trust anchor, RSA-1024) count as no key:
under encrypt-if-key the mail passes unchanged, under a mandatory rule the
message is refused with 550, and `policy explain` names the reason. Every
message that is encrypted is decrypted with `openssl cms`.

Imports: every format (PEM, DER, PEM chain, PKCS#7 PEM and DER, PKCS#12 with
OpenSSL 3's default and legacy encryption, PEM private keys, encrypted or
not), idempotent re-imports, and refusals that exit 1, name the file and the
reason, and leave the keystore directory exactly as it was.
"""

import datetime
import os
import re
import unittest

import sgtest
import smimetest
from sgtest import MARKER, SENDER, make_message, std_headers
from smimetest import days, smime_list_lines, utcnow

PASSPHRASE = "correct horse 42"
TAG_RULE = ("    - name: tagged\n"
            "      when: { subject_tag: \"[secure]\" }\n"
            "      action: encrypt\n"
            "      on_missing_key: reject\n")


def message(rcpt, subject="Quarterly figures"):
    return make_message(
        std_headers(to=rcpt, subject=subject)
        + [("Content-Type", "text/plain; charset=us-ascii")],
        "Numbers inside. %s\r\n" % MARKER)


def chain_reason(text):
    return re.fullmatch(r"certificate does not chain to a trust anchor \(.+\)", text)


# --------------------------------------------------------------------------
# Which certificates are used for encryption


class CertificateChecks(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.tmp = sgtest.tmpdir("sgsmc")
        t = lambda name: os.path.join(cls.tmp, name)          # noqa: E731
        cls.ca = smimetest.TestCA(t("ca"), key="rsa:2048")
        shared = smimetest.new_key(t("shared.key"))
        stranger = smimetest.TestCA(t("stranger"), name="Stranger CA", key="rsa:2048")
        cls.plain_ca = smimetest.TestCA(t("plainca"), name="Plain CA", key="rsa:2048")
        ca = cls.ca
        now = utcnow()
        cls.good = ca.issue("Gina", ["gina@partner.example"], keyfile=shared)
        cls.expired = ca.issue("Old", ["old@partner.example"], keyfile=shared,
                               start=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
                               end=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc))
        cls.future = ca.issue("Future", ["future@partner.example"], keyfile=shared,
                              start=now + days(30), end=now + days(400))
        cls.ku_sign = ca.issue("Signer", ["signer@partner.example"], keyfile=shared,
                               ku="critical, digitalSignature")
        cls.ku_ec = ca.issue("EC Signer", ["ecsigner@partner.example"], key="ec:P-256",
                             ku="critical, digitalSignature, keyEncipherment")
        cls.eku_server = ca.issue("Server", ["server@partner.example"], eku="serverAuth",
                                  keyfile=shared)
        cls.elsewhere = ca.issue("Hank", ["hank@elsewhere.example"], keyfile=shared)
        cls.untrusted = stranger.issue("Una", ["una@partner.example"], keyfile=shared)
        cls.plain_chain = cls.plain_ca.issue("Pat", ["pat@partner.example"], keyfile=shared)
        cls.rsa1024 = ca.issue("Tiny", ["tiny@partner.example"], key="rsa:1024")
        cls.renew_old = ca.issue("Rene", ["rene@partner.example"], basename="rene-old",
                                 start=now - days(800), end=now - days(400), keyfile=shared)
        cls.renew_new = ca.issue("Rene", ["rene@partner.example"], basename="rene-new",
                                 keyfile=shared)
        cls.gw = smimetest.smime_gateway(
            t("gw"), smimetest.smime_policy(rules=TAG_RULE), anchors=[ca.cert],
            certs=[cls.plain_ca.cert] + [i.cert for i in (
                cls.good, cls.ku_sign, cls.ku_ec, cls.eku_server,
                cls.elsewhere, cls.untrusted, cls.plain_chain, cls.rsa1024,
                cls.renew_new)])
        # `keys import` refuses certificates outside their validity period;
        # a store holds them once time has passed.
        smimetest.place_certs(cls.gw.keystore, *[i.cert for i in (cls.expired, cls.future,
                                                          cls.renew_old)])
        cp = cls.gw.list_keys()
        if cp.returncode != 0:
            raise RuntimeError("keys list failed: %s" % cp.stderr)
        cls.listing = smime_list_lines(cp.stdout)

    def list_entry(self, ident):
        rows = [r for r in self.listing if r["fpr"] == ident.fpr]
        self.assertEqual(len(rows), 1, "keys list lines for %s: %r" % (ident.fpr, rows))
        return rows[0]

    def assert_not_used(self, rcpt, reason, ident=None, state="unusable"):
        """rcpt has no usable certificate because of reason (a string, or a
        callable that accepts the reason text)."""
        # policy explain names the reason.
        klass = smimetest.explain_class(self.gw, rcpt)
        m = re.fullmatch(r"plain \(smime: (.*)\)", klass)
        self.assertTrue(m, "explain class for %s: %r" % (rcpt, klass))
        if callable(reason):
            self.assertTrue(reason(m.group(1)), "explain reason for %s: %r" % (rcpt, klass))
        else:
            self.assertEqual(m.group(1), reason)

        # encrypt-if-key: the message passes unchanged.
        msg = message(rcpt)
        rc, out, err = self.gw.process(msg, SENDER, [rcpt])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertNotIn("method=smime", err)
        self.assertEqual(sgtest.stderr_field(err, "key"), [], err)
        self.assertEqual(out, msg, "message changed although no certificate is usable")

        # A mandatory rule: refused with 550, no message written.
        rc, out, err = self.gw.process(message(rcpt, "[secure] Quarterly figures"),
                                       SENDER, [rcpt])
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out, "a message was written although it was refused")
        self.assertEqual(sgtest.verdict(err), "reject", err)
        replies = [line for line in err.splitlines() if sgtest.SMTP_REJECT_RE.match(line)]
        self.assertEqual(len(replies), 1, err)
        self.assertTrue(replies[0].startswith("550 5.7."), replies[0])
        self.assertIn('"tagged"', replies[0])
        self.assertIn(rcpt, replies[0])
        self.assertNotIn(MARKER, err)

        # keys list shows why.
        if ident is not None:
            row = self.list_entry(ident)
            self.assertEqual(row["state"], state, row)
            self.assertEqual(row["usable"], "-", row)
            if state == "unusable":
                self.assertEqual(row["reason"], m.group(1), row)

    # -- the control: a good certificate is used -------------------------

    def test_good_certificate_is_used(self):
        rcpt = self.good.addr
        self.assertEqual(smimetest.explain_class(self.gw, rcpt),
                         "smime (S/MIME certificate %s)" % self.good.fpr)
        row = self.list_entry(self.good)
        self.assertEqual((row["state"], row["usable"], row["reason"]),
                         ("active", "encrypt", None))
        for subject in ("Quarterly figures", "[secure] Quarterly figures"):
            msg = message(rcpt, subject)
            rc, out, err = self.gw.process(msg, SENDER, [rcpt])
            self.assertEqual(rc, 0, err)
            self.assertIn("action: encrypt method=smime", err.splitlines())
            self.assertEqual(sgtest.stderr_field(err, "key"), [self.good.fpr])
            nf, _b = sgtest.split_header_body(out)
            self.assertEqual([sgtest.norm_value(v) for v in sgtest.header_values(nf, "Subject")],
                             ["Quarterly figures"])
            if subject == "Quarterly figures":
                der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
                smimetest.assert_openssl_decrypts(self, der, self.good, msg)

    # -- refusals ------------------------------------------------------------

    def test_expired(self):
        self.assert_not_used(self.expired.addr, "certificate expired", self.expired, "expired")
        self.assertEqual(self.list_entry(self.expired)["expires"], "2021-01-01")

    def test_not_yet_valid(self):
        self.assert_not_used(self.future.addr, "certificate not yet valid", self.future,
                             "not-yet-valid")

    def test_key_usage_digital_signature_only(self):
        self.assert_not_used(self.ku_sign.addr, "key usage does not allow key encipherment",
                             self.ku_sign)

    def test_ec_key_usage_without_key_agreement(self):
        self.assert_not_used(self.ku_ec.addr, "key usage does not allow key agreement",
                             self.ku_ec)

    def test_extended_key_usage_server_auth_only(self):
        self.assert_not_used(self.eku_server.addr,
                             "extended key usage does not include emailProtection",
                             self.eku_server)

    def test_wrong_address(self):
        # Hank's certificate names hank@elsewhere.example only.
        self.assert_not_used("hank@partner.example", "no S/MIME certificate")
        self.assertEqual(smimetest.explain_class(self.gw, "hank@elsewhere.example"),
                         "smime (S/MIME certificate %s)" % self.elsewhere.fpr)
        # A different local part in the right domain is no match either.
        self.assert_not_used("gina.x@partner.example", "no S/MIME certificate")

    def test_issuer_not_imported(self):
        self.assert_not_used(self.untrusted.addr, chain_reason, self.untrusted)

    def test_issuer_imported_but_not_a_trust_anchor(self):
        self.assert_not_used(self.plain_chain.addr, chain_reason, self.plain_chain)

    def test_rsa_1024(self):
        self.assert_not_used(self.rsa1024.addr, "RSA key smaller than 2048 bits", self.rsa1024)

    def test_renewed_certificate_replaces_expired_one(self):
        rcpt = self.renew_new.addr
        self.assertEqual(smimetest.explain_class(self.gw, rcpt),
                         "smime (S/MIME certificate %s)" % self.renew_new.fpr)
        msg = message(rcpt)
        rc, out, err = self.gw.process(msg, SENDER, [rcpt])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.stderr_field(err, "key"), [self.renew_new.fpr])
        der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
        smimetest.assert_openssl_decrypts(self, der, self.renew_new, msg)
        self.assertEqual(self.list_entry(self.renew_old)["state"], "expired")


# --------------------------------------------------------------------------
# Importing


class Import(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.tmp = sgtest.tmpdir("sgsmi")
        t = lambda name: os.path.join(cls.tmp, name)          # noqa: E731
        cls.ca = smimetest.TestCA(t("ca"), key="rsa:2048")
        cls.inter = smimetest.TestCA(t("inter"), name="sealgate Test Intermediate",
                                     key="rsa:2048", parent=cls.ca)
        ca, inter = cls.ca, cls.inter
        # Certificates whose private key no test imports share one key.
        shared = smimetest.new_key(t("shared.key"))
        cls.jack = ca.issue("Jack", ["jack@partner.example"], keyfile=shared)
        cls.kim = ca.issue("Kim", ["kim@partner.example"], key="ec:P-256", ku=None)
        cls.ivy = inter.issue("Ivy", ["ivy@partner.example"], keyfile=shared)
        cls.lee = inter.issue("Lee", ["lee@partner.example"], keyfile=shared)
        cls.max = inter.issue("Max", ["max@partner.example"], keyfile=shared)
        cls.nina = inter.issue("Nina", ["nina@partner.example"])
        cls.olga = ca.issue("Olga", ["olga@partner.example"])
        cls.paul = ca.issue("Paul", ["paul@partner.example"])
        cls.quinn = ca.issue("Quinn", ["quinn@partner.example"])
        cls.rita = ca.issue("Rita", ["rita@partner.example"])
        cls.sam = ca.issue("Sam", ["sam@partner.example"])
        cls.noaddr = ca.issue("server.partner.example", [], eku="serverAuth",
                              basename="noaddr", keyfile=shared)
        now = utcnow()
        cls.old = ca.issue("Old", ["old@partner.example"], keyfile=shared,
                           start=now - days(400), end=now - days(1))
        cls.soon = ca.issue("Soon", ["soon@partner.example"], keyfile=shared,
                            start=now + days(2), end=now + days(400))
        cls.old_inter = smimetest.TestCA(t("oldinter"), name="Old Intermediate",
                                         key="rsa:2048", parent=ca,
                                         start=now - days(400), end=now - days(1))
        # Certificates without an address that OpenSSL would guess to be CA
        # certificates: keyUsage keyCertSign without basicConstraints, and
        # a self-signed version 1 certificate (openssl x509 -req -signkey).
        cls.ku_ca = ca.issue("KU only", [], basename="kuonly", keyfile=shared,
                             extensions="keyUsage = critical, keyCertSign, digitalSignature\n"
                                        "subjectKeyIdentifier = hash\n")
        csr = t("v1.csr")
        smimetest.openssl("req", "-new", "-key", shared, "-subj", "/CN=v1 self-signed",
                          "-out", csr)
        cls.v1 = t("v1.pem")
        smimetest.openssl("x509", "-req", "-in", csr, "-signkey", shared, "-days", "30",
                          "-out", cls.v1)
        cls.passfile = smimetest.write_file(t("pass.txt"), PASSPHRASE + "\n")
        cls.wrongpass = smimetest.write_file(t("wrong.txt"), "not the passphrase\n")
        cls._n = 0
        # Each test gets a copy of this keystore, holding the root as anchor.
        cls.template = smimetest.smime_gateway(t("template"), smimetest.smime_policy(),
                                               anchors=[cls.ca.cert])
        cls.template.list_keys()

    def new_gateway(self, anchor=True):
        Import._n += 1
        path = os.path.join(self.tmp, "gw%d" % self._n)
        if anchor:
            return smimetest.clone_gateway(self.template, path)
        return sgtest.policy_gateway(path, smimetest.smime_policy())

    def file(self, name, data):
        return smimetest.write_file(os.path.join(self.tmp, name), data)

    def keys_import(self, gw, *args):
        return gw.run("keys", "-c", gw.policy, "import", *args)

    def assert_imported(self, cp, idents, prefix="imported", usable="encrypt"):
        """cp succeeded and printed one line per identity with prefix, the
        address, fingerprint, state active and usable=...; plus a summary."""
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        rows = {r["fpr"]: r for r in smime_list_lines(cp.stdout) if r["addr"] != "-"}
        for ident in idents:
            self.assertIn(ident.fpr, rows, "no line for %s in:\n%s" % (ident.addr, cp.stdout))
            row = rows[ident.fpr]
            self.assertEqual((row["prefix"], row["addr"], row["state"], row["usable"]),
                             (prefix, ident.addr, "active", usable), cp.stdout)
            self.assertEqual(row["expires"], ident.not_after.strftime("%Y-%m-%d"))
        self.assertRegex(cp.stdout, r"(?m)^.*\d+ certificate\(s\) imported, \d+ unchanged.*$")

    def assert_usable(self, gw, ident, usable="encrypt"):
        rows = [r for r in smime_list_lines(gw.list_keys().stdout) if r["fpr"] == ident.fpr]
        self.assertEqual([(r["addr"], r["state"], r["usable"]) for r in rows],
                         [(ident.addr, "active", usable)])
        self.assertEqual(smimetest.explain_class(gw, ident.addr),
                         "smime (S/MIME certificate %s)" % ident.fpr)

    def assert_encrypts(self, gw, ident):
        msg = message(ident.addr)
        rc, out, err = gw.process(msg, SENDER, [ident.addr])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.stderr_field(err, "key"), [ident.fpr], err)
        der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
        smimetest.assert_openssl_decrypts(self, der, ident, msg)

    def assert_reimport_unchanged(self, gw, *args, idents=()):
        before = smimetest.tree_snapshot(gw.keystore)
        cp = self.keys_import(gw, *args)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        rows = smime_list_lines(cp.stdout)
        self.assertEqual({r["prefix"] for r in rows} - {"unchanged"}, set(), cp.stdout)
        for ident in idents:
            self.assertIn(ident.fpr, {r["fpr"] for r in rows})
        self.assertRegex(cp.stdout, r"0 certificate\(s\) imported")
        self.assertRegex(cp.stdout, r"0 trust anchor\(s\) imported")
        self.assertRegex(cp.stdout, r"0 private key\(s\) imported")
        self.assertEqual(smimetest.tree_snapshot(gw.keystore), before,
                         "re-import changed the keystore")

    def assert_refused(self, gw, path, reason, *extra):
        before = smimetest.tree_snapshot(gw.keystore)
        cp = self.keys_import(gw, path, *extra)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(path, cp.stderr)
        if hasattr(reason, "search"):
            self.assertRegex(cp.stderr, reason)
        else:
            self.assertIn(reason, cp.stderr)
        self.assertNotRegex(cp.stdout, r"(?m)^imported ")
        self.assertEqual(smimetest.tree_snapshot(gw.keystore), before,
                         "refused import changed the keystore")
        return cp

    # -- formats ---------------------------------------------------------

    def test_trust_anchor(self):
        gw = self.new_gateway(anchor=False)
        cp = self.keys_import(gw, self.ca.cert, "--trust-anchor")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = smime_list_lines(cp.stdout)
        self.assertEqual([(r["prefix"], r["addr"], r["fpr"], r["state"], r["usable"])
                          for r in rows],
                         [("imported", "-", self.ca.fpr, "active", "trust-anchor")])
        self.assertIn("1 trust anchor(s) imported", cp.stdout)
        listed = smime_list_lines(gw.list_keys().stdout)
        self.assertEqual([(r["fpr"], r["usable"]) for r in listed],
                         [(self.ca.fpr, "trust-anchor")])
        self.assert_reimport_unchanged(gw, self.ca.cert, "--trust-anchor")
        # DER works as well, and is the same certificate.
        self.assert_reimport_unchanged(gw, self.ca.der, "--trust-anchor")

    def test_pem_certificate(self):
        gw = self.new_gateway()
        self.assertEqual(smimetest.explain_class(gw, self.jack.addr),
                         "plain (smime: no S/MIME certificate)")
        self.assert_imported(self.keys_import(gw, self.jack.cert), [self.jack])
        self.assert_usable(gw, self.jack)
        self.assert_encrypts(gw, self.jack)
        self.assert_reimport_unchanged(gw, self.jack.cert, idents=[self.jack])

    def test_der_certificate(self):
        gw = self.new_gateway()
        self.assert_imported(self.keys_import(gw, self.kim.der), [self.kim])
        self.assert_usable(gw, self.kim)
        self.assert_reimport_unchanged(gw, self.kim.der, idents=[self.kim])
        # The same certificate in PEM is the same identity.
        self.assert_reimport_unchanged(gw, self.kim.cert, idents=[self.kim])

    def test_pem_chain(self):
        gw = self.new_gateway()
        chain = smimetest.pem_bundle(os.path.join(self.tmp, "ivy-chain.pem"),
                                     self.ivy.cert, self.inter.cert, self.ca.cert)
        self.assert_imported(self.keys_import(gw, chain), [self.ivy])
        self.assert_usable(gw, self.ivy)
        self.assert_encrypts(gw, self.ivy)
        self.assert_reimport_unchanged(gw, chain, idents=[self.ivy])

    def test_intermediate_imported_later(self):
        gw = self.new_gateway()
        cp = self.keys_import(gw, self.ivy.cert)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = smime_list_lines(gw.list_keys().stdout)
        row = [r for r in rows if r["fpr"] == self.ivy.fpr][0]
        self.assertEqual((row["state"], row["usable"]), ("unusable", "-"), row)
        self.assertTrue(chain_reason(row["reason"]), row)
        self.assertTrue(chain_reason(
            re.fullmatch(r"plain \(smime: (.*)\)",
                         smimetest.explain_class(gw, self.ivy.addr)).group(1)))
        # The intermediate as a plain certificate completes the chain.
        self.assertEqual(self.keys_import(gw, self.inter.cert).returncode, 0)
        self.assert_usable(gw, self.ivy)
        self.assert_encrypts(gw, self.ivy)

    def test_pkcs7_pem(self):
        gw = self.new_gateway()
        p7 = smimetest.pkcs7_bundle(os.path.join(self.tmp, "lee.p7b"),
                                    [self.lee.cert, self.inter.cert])
        with open(p7, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN PKCS7-----"))
        self.assert_imported(self.keys_import(gw, p7), [self.lee])
        self.assert_usable(gw, self.lee)
        self.assert_encrypts(gw, self.lee)
        self.assert_reimport_unchanged(gw, p7, idents=[self.lee])

    def test_pkcs7_der(self):
        gw = self.new_gateway()
        p7 = smimetest.pkcs7_bundle(os.path.join(self.tmp, "max.p7c"),
                                    [self.max.cert, self.inter.cert], der=True)
        self.assert_imported(self.keys_import(gw, p7), [self.max])
        self.assert_usable(gw, self.max)
        self.assert_reimport_unchanged(gw, p7, idents=[self.max])

    def test_pkcs12(self):
        gw = self.new_gateway()
        p12 = self.nina.pkcs12(PASSPHRASE, chain=[self.inter.cert])
        self.assert_imported(self.keys_import(gw, p12, "--passphrase-file", self.passfile),
                             [self.nina], usable="encrypt,decrypt,sign")
        self.assert_usable(gw, self.nina, "encrypt,decrypt,sign")
        self.assert_encrypts(gw, self.nina)
        self.assert_reimport_unchanged(gw, p12, "--passphrase-file", self.passfile,
                                       idents=[self.nina])

    def test_pkcs12_3des(self):
        # 3DES for key and certificates with a SHA-1 MAC, as older Windows
        # and Java exports.
        gw = self.new_gateway()
        p12 = self.olga.pkcs12(PASSPHRASE, pbe="PBE-SHA1-3DES")
        self.assert_imported(self.keys_import(gw, p12, "--passphrase-file", self.passfile),
                             [self.olga], usable="encrypt,decrypt,sign")
        self.assert_usable(gw, self.olga, "encrypt,decrypt,sign")
        self.assert_reimport_unchanged(gw, p12, "--passphrase-file", self.passfile)

    def test_pkcs12_legacy_rc2(self):
        # `openssl pkcs12 -export -legacy` (RC2-40 for the certificates):
        # what OpenSSL 1.x wrote by default and what gpgsm 2.2 reads.
        gw = self.new_gateway()
        p12 = self.olga.pkcs12(PASSPHRASE, legacy=True)
        self.assert_imported(self.keys_import(gw, p12, "--passphrase-file", self.passfile),
                             [self.olga], usable="encrypt,decrypt,sign")
        self.assert_usable(gw, self.olga, "encrypt,decrypt,sign")

    def gpgsm_armored_pkcs12(self, ident, name):
        """ident's key and certificate as `gpgsm --armor
        --export-secret-key-p12` writes them (-----BEGIN PKCS12-----),
        protected with PASSPHRASE: imported into a new gpgsm home from a
        legacy PKCS#12 file (what gpgsm 2.2 reads), then exported."""
        sgtest.require_program("gpgsm")
        home = os.path.join(self.tmp, "gpgsm-" + name)
        os.makedirs(home, mode=0o700)
        with open(os.path.join(home, "gpg-agent.conf"), "w") as f:
            f.write("allow-loopback-pinentry\n")
        gpgsm = ["gpgsm", "--homedir", home, "--batch", "--pinentry-mode", "loopback",
                 "--passphrase-fd", "0"]
        try:
            cp = sgtest.run(gpgsm + ["--import", ident.pkcs12(PASSPHRASE, legacy=True)],
                            input_bytes=(PASSPHRASE + "\n").encode())
            self.assertEqual(cp.returncode, 0, cp.stderr)
            # The key's passphrase, then the export's (twice).
            cp = sgtest.run(gpgsm + ["--armor", "--export-secret-key-p12", ident.sha1],
                            input_bytes=("%s\n" % PASSPHRASE * 3).encode())
            self.assertEqual(cp.returncode, 0, cp.stderr)
        finally:
            sgtest.stop_agent(home)
        self.assertIn(b"-----BEGIN PKCS12-----", cp.stdout)
        return smimetest.write_file(os.path.join(self.tmp, name + ".p12.asc"), cp.stdout)

    def test_pkcs12_pem_armoured_from_gpgsm(self):
        gw = self.new_gateway()
        path = self.gpgsm_armored_pkcs12(self.quinn, "quinn")
        self.assert_imported(self.keys_import(gw, path, "--passphrase-file", self.passfile),
                             [self.quinn], usable="encrypt,decrypt,sign")
        self.assert_usable(gw, self.quinn, "encrypt,decrypt,sign")
        self.assert_reimport_unchanged(gw, path, "--passphrase-file", self.passfile,
                                       idents=[self.quinn])

    def test_refuse_pkcs12_pem_armoured_bad(self):
        gw = self.new_gateway()
        path = self.gpgsm_armored_pkcs12(self.rita, "rita")
        self.assert_refused(gw, path, "wrong passphrase", "--passphrase-file", self.wrongpass)
        with open(path, "rb") as f:
            text = f.read()
        # A block whose DER is cut short, or has bytes after it.
        lines = text.split(b"\n")
        begin = lines.index(b"-----BEGIN PKCS12-----")
        cut = os.path.join(self.tmp, "rita-cut.p12.asc")
        smimetest.write_file(cut, b"\n".join(lines[:begin + 3] + [b"-----END PKCS12-----", b""]))
        self.assert_refused(gw, cut, "bad PKCS#12 block", "--passphrase-file", self.passfile)

    def test_refuse_certificate_and_cut_pkcs12_block(self):
        # The key's block is cut before its END line: the certificate in
        # front of it is not imported alone, as if the file had no key.
        gw = self.new_gateway()
        path = self.gpgsm_armored_pkcs12(self.rita, "rita-after-cert")
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        with open(self.rita.cert, "rb") as f:
            cert = f.read()
        begin = lines.index(b"-----BEGIN PKCS12-----")
        cut = os.path.join(self.tmp, "rita-cert-cut.pem")
        smimetest.write_file(cut, cert + b"\n".join(lines[begin:begin + 3] + [b""]))
        self.assert_refused(gw, cut, "malformed PEM block", "--passphrase-file",
                            self.passfile)

    def test_private_key_after_certificate(self):
        gw = self.new_gateway()
        self.assert_imported(self.keys_import(gw, self.paul.cert), [self.paul])
        cp = self.keys_import(gw, self.paul.key)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("1 private key(s) imported", cp.stdout)
        self.assert_usable(gw, self.paul, "encrypt,decrypt,sign")
        self.assert_reimport_unchanged(gw, self.paul.key)

    def test_private_key_line_names_identity(self):
        # Importing only a key changes an identity (it can now decrypt):
        # the output names it like any other import.
        gw = self.new_gateway()
        self.keys_import(gw, self.paul.cert)
        self.assert_imported(self.keys_import(gw, self.paul.key), [self.paul],
                             usable="encrypt,decrypt,sign")

    def test_encrypted_pkcs8_key(self):
        gw = self.new_gateway()
        key = self.quinn.encrypted_key(PASSPHRASE)
        with open(key, "rb") as f:
            self.assertIn(b"-----BEGIN ENCRYPTED PRIVATE KEY-----", f.read())
        self.keys_import(gw, self.quinn.cert)
        cp = self.keys_import(gw, key, "--passphrase-file", self.passfile)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("1 private key(s) imported", cp.stdout)
        self.assert_usable(gw, self.quinn, "encrypt,decrypt,sign")
        self.assert_reimport_unchanged(gw, key, "--passphrase-file", self.passfile)

    def test_encrypted_traditional_pem_key(self):
        # The older encrypted PEM form (Proc-Type: 4,ENCRYPTED and DEK-Info
        # header lines), as many existing key files are.
        gw = self.new_gateway()
        key = self.rita.encrypted_key(PASSPHRASE, traditional=True)
        with open(key, "rb") as f:
            self.assertIn(b"Proc-Type: 4,ENCRYPTED", f.read())
        self.keys_import(gw, self.rita.cert)
        cp = self.keys_import(gw, key, "--passphrase-file", self.passfile)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("1 private key(s) imported", cp.stdout)
        self.assert_usable(gw, self.rita, "encrypt,decrypt,sign")

    def test_certificate_and_key_in_one_file(self):
        gw = self.new_gateway()
        both = smimetest.pem_bundle(os.path.join(self.tmp, "sam-both.pem"),
                                    self.sam.cert, self.sam.key)
        self.assert_imported(self.keys_import(gw, both), [self.sam],
                             usable="encrypt,decrypt,sign")
        self.assert_reimport_unchanged(gw, both, idents=[self.sam])

    def test_several_files_and_partly_known_file(self):
        gw = self.new_gateway()
        self.assert_imported(self.keys_import(gw, self.jack.cert, self.kim.der),
                             [self.jack, self.kim])
        self.assert_usable(gw, self.jack)
        self.assert_usable(gw, self.kim)
        # A bundle with one known and one new identity: each line says which.
        bundle = smimetest.pem_bundle(os.path.join(self.tmp, "jack-lee.pem"),
                                      self.jack.cert, self.lee.cert, self.inter.cert)
        cp = self.keys_import(gw, bundle)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = {r["fpr"]: r["prefix"] for r in smime_list_lines(cp.stdout) if r["addr"] != "-"}
        self.assertEqual(rows, {self.jack.fpr: "unchanged", self.lee.fpr: "imported"},
                         cp.stdout)

    def test_certificate_without_address_as_trust_anchor(self):
        # Refused as a partner certificate (see below), accepted as an anchor.
        gw = self.new_gateway()
        cp = self.keys_import(gw, self.noaddr.cert, "--trust-anchor")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("1 trust anchor(s) imported", cp.stdout)

    def test_list_output(self):
        gw = self.new_gateway()
        p12 = self.nina.pkcs12(PASSPHRASE, chain=[self.inter.cert],
                               path=os.path.join(self.tmp, "nina-list.p12"))
        self.assertEqual(self.keys_import(gw, self.jack.cert, self.kim.cert).returncode, 0)
        self.assertEqual(self.keys_import(gw, p12, "--passphrase-file",
                                          self.passfile).returncode, 0)
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        lines = [line for line in cp.stdout.splitlines() if line.strip()]
        rows = smime_list_lines(cp.stdout)
        self.assertEqual(len(rows), len(lines), "lines not in the documented form:\n"
                         + cp.stdout)
        by_fpr = {r["fpr"]: r for r in rows}
        want = {self.jack.fpr: (self.jack.addr, "active", "encrypt", self.jack),
                self.kim.fpr: (self.kim.addr, "active", "encrypt", self.kim),
                self.nina.fpr: (self.nina.addr, "active", "encrypt,decrypt,sign", self.nina)}
        for fpr, (addr, state, usable, ident) in want.items():
            self.assertIn(fpr, by_fpr, cp.stdout)
            r = by_fpr[fpr]
            self.assertEqual((r["addr"], r["state"], r["usable"], r["expires"]),
                             (addr, state, usable, ident.not_after.strftime("%Y-%m-%d")))
        self.assertEqual(by_fpr[self.ca.fpr]["usable"], "trust-anchor")
        # Every line is an identity with an address, or a trust anchor.
        for r in rows:
            self.assertTrue(r["addr"] != "-" or r["usable"] == "trust-anchor", r)

    # -- refusals ------------------------------------------------------------

    def test_refuse_pkcs12_wrong_passphrase(self):
        gw = self.new_gateway()
        p12 = self.olga.pkcs12(PASSPHRASE, path=os.path.join(self.tmp, "olga-r1.p12"))
        self.assert_refused(gw, p12, "wrong passphrase", "--passphrase-file", self.wrongpass)

    def test_refuse_pkcs12_without_passphrase(self):
        gw = self.new_gateway()
        p12 = self.olga.pkcs12(PASSPHRASE, path=os.path.join(self.tmp, "olga-r2.p12"))
        self.assert_refused(gw, p12, "give --passphrase-file")

    def test_refuse_key_without_certificate(self):
        gw = self.new_gateway()
        self.keys_import(gw, self.jack.cert)
        self.assert_refused(gw, self.sam.key, "private key matches no imported certificate")

    def test_refuse_certificate_and_foreign_key(self):
        # Nothing of a refused file is imported, not even its good certificate.
        gw = self.new_gateway()
        mixed = smimetest.pem_bundle(os.path.join(self.tmp, "jack-samkey.pem"),
                                     self.jack.cert, self.sam.key)
        self.assert_refused(gw, mixed, "private key matches no imported certificate")
        self.assertEqual(smimetest.explain_class(gw, self.jack.addr),
                         "plain (smime: no S/MIME certificate)")

    def test_refuse_encrypted_key_wrong_passphrase(self):
        gw = self.new_gateway()
        self.keys_import(gw, self.quinn.cert)
        key = self.quinn.encrypted_key(PASSPHRASE, path=os.path.join(self.tmp, "quinn-r.key"))
        self.assert_refused(gw, key, "wrong passphrase", "--passphrase-file", self.wrongpass)

    def test_refuse_encrypted_key_without_passphrase(self):
        gw = self.new_gateway()
        self.keys_import(gw, self.quinn.cert)
        key = self.quinn.encrypted_key(PASSPHRASE, path=os.path.join(self.tmp, "quinn-r2.key"))
        self.assert_refused(gw, key, "give --passphrase-file")

    def test_refuse_certificate_without_address(self):
        gw = self.new_gateway()
        self.assert_refused(gw, self.noaddr.cert, "certificate without an email address")
        self.assert_refused(gw, self.noaddr.der, "certificate without an email address")

    def test_refuse_certificate_without_address_guessed_ca(self):
        # Stored before, yet invisible in `keys list`: no address finds it.
        gw = self.new_gateway()
        self.assertIn("Version: 1 ", smimetest.openssl("x509", "-in", self.v1, "-noout",
                                                       "-text").stdout.decode())
        self.assert_refused(gw, self.v1, "certificate without an email address")
        self.assert_refused(gw, self.ku_ca.cert, "certificate without an email address")

    def test_refuse_expired_and_not_yet_valid(self):
        gw = self.new_gateway()
        for name, path, reason, extra in (
                ("expired", self.old.cert, 'certificate has expired (subject "CN=Old"), '
                 "and the file holds no private key for it", ()),
                ("expired, DER", self.old.der, "certificate has expired", ()),
                ("expired, as trust anchor", self.old.cert, "certificate has expired",
                 ("--trust-anchor",)),
                ("not yet valid", self.soon.cert,
                 'certificate is not valid yet (subject "CN=Soon")', ()),
                ("not yet valid, PKCS#7", smimetest.pkcs7_bundle(
                    os.path.join(self.tmp, "soon.p7b"), [self.soon.cert]),
                 "certificate is not valid yet", ()),
                ("expired intermediate in a chain",
                 smimetest.pem_bundle(os.path.join(self.tmp, "jack-oldinter.pem"),
                                      self.jack.cert, self.old_inter.cert),
                 'certificate has expired (subject "CN=Old Intermediate")', ()),
                ("expired CA as anchor", self.old_inter.cert, "certificate has expired",
                 ("--trust-anchor",))):
            with self.subTest(name):
                self.assert_refused(gw, path, reason, *extra)
        self.assertEqual([r for r in smime_list_lines(gw.list_keys().stdout)
                          if r["addr"] != "-"], [])

    def test_refuse_expired_pkcs12(self):
        # With its private key, but for a partner's address: an expired
        # certificate is kept only to decrypt for an internal address
        # (tests/pipeline/test_decrypt_only_keys.py).
        gw = self.new_gateway()
        p12 = self.old.pkcs12(PASSPHRASE, path=os.path.join(self.tmp, "old.p12"))
        self.assert_refused(gw, p12, 'certificate has expired (subject "CN=Old"), and none of '
                            'its addresses is internal', "--passphrase-file", self.passfile)

    def test_refuse_text_file(self):
        gw = self.new_gateway()
        path = self.file("notes.txt", "Dear admin,\nthis is not a certificate.\n")
        self.assert_refused(gw, path, re.compile(r"not an? (OpenPGP key, )?certificate"))

    def test_refuse_binary_garbage(self):
        gw = self.new_gateway()
        path = self.file("garbage.der", b"\x30\x82\x01\x00" + os.urandom(256))
        self.assert_refused(gw, path, re.compile(r"not an? (OpenPGP key, )?certificate"))

    def test_refuse_corrupt_pem_certificate(self):
        gw = self.new_gateway()
        path = self.file("corrupt.pem", "-----BEGIN CERTIFICATE-----\n"
                                        "TUlJQm9uZSB0d28gdGhyZWU=\n"
                                        "-----END CERTIFICATE-----\n")
        self.assert_refused(gw, path, "bad certificate")


if __name__ == "__main__":
    unittest.main()
