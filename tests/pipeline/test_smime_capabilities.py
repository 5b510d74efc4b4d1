"""S/MIME content encryption by what the recipient reads (RFC 8551 2.7).

A partner's signed mail announces in its SMIMECapabilities attribute which
content encryptions the partner's program reads. sealgate records that for
the certificate that made a valid signature (smime-capabilities/FPR.seen in
the keystore), an administrator can state it (`keys import
--smime-capabilities`, FPR.stated, which wins), and each message gets the
strongest cipher every S/MIME recipient is known to read, AES-256-CBC
EnvelopedData when one is unknown; `smime_cipher` still forces a cipher.

Signed mail comes from `openssl cms -sign` (which announces AES-CBC, 3DES,
RC2 and DES, or nothing with -nosmimecap) and, for other announcements
(AES-GCM, unknown algorithms, huge lists), from openssl's signature with
that attribute replaced and the signed attributes signed again with
`openssl dgst` (tests/lib/capstest.py); `openssl cms -verify` accepts each
of them before sealgate sees it. What sealgate writes is decrypted by
`openssl cms -decrypt` with each recipient's own key, and the default
output for a recipient of unknown capabilities by gpgsm 2.2 too (which
cannot read AuthEnvelopedData).
"""

import base64
import datetime
import json
import os
import re
import shutil
import time
import unittest

import capstest
import der
import inboundtest
import sgtest
import smimetest
import verifytest as vt
from inboundtest import ALICE, CAROL
from sgtest import MARKER

ERIN = "erin@other.example"
AUTH = "authEnveloped-data"
ENV = "enveloped-data"
CAPS_DIR = "smime-capabilities"
ALL = "aes-256-gcm,aes-128-gcm,aes-256-cbc,aes-128-cbc"

POLICY = """\
version: 1
gateway:
  keystore: "store"
  spool_dir: "spool"
  trusted_networks: [127.0.0.0/8]
internal_domains: [%(domains)s]
outbound:
  default: { action: encrypt-if-key, methods: [smime]%(extra)s }
%(rules)sinbound: { decrypt: true, verify: true, require_integrity: false }
"""


def policy(default_extra="", rules="", domains="example.com"):
    return POLICY % {"domains": domains,
                     "extra": (", " + default_extra) if default_extra else "",
                     "rules": ("  rules:\n" + rules) if rules else ""}


def text_message(to, marker=MARKER):
    return sgtest.make_message(
        sgtest.std_headers(to=to) + [("Content-Type", "text/plain; charset=us-ascii"),
                                     ("Content-Transfer-Encoding", "7bit")],
        "The figures. %s\r\n" % marker)


def dated(headers, when):
    """headers with the Date field set to when (seconds since the epoch)."""
    return [(n, sgtest.rfc5322_date(when) if n == "Date" else v) for n, v in headers]


class Capabilities(vt.VerifyCase, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgcap")
        cls.scratch = vt.Scratch(os.path.join(cls.tmp, "scratch"))
        cls.ids = inboundtest.Identities(cls.tmp)
        ca = cls.ca = cls.ids.ca
        cls.carol = ca.issue("Carol Partner", [CAROL])
        cls.erin = ca.issue("Erin Other", [ERIN])
        # Another valid certificate for carol's key that the keystore does
        # not hold, one that has expired, and one from a CA nobody trusts.
        cls.carol_2 = ca.issue("Carol Partner", [CAROL], basename="carol-2",
                               keyfile=cls.carol.key)
        cls.carol_expired = ca.issue("Carol Partner", [CAROL], basename="carol-expired",
                                     start=smimetest.utcnow() - smimetest.days(400),
                                     end=smimetest.utcnow() - smimetest.days(2),
                                     keyfile=cls.carol.key)
        other = smimetest.TestCA(os.path.join(cls.tmp, "otherca"), name="Other CA")
        cls.carol_untrusted = other.issue("Carol Partner", [CAROL], basename="carol-u",
                                          keyfile=cls.carol.key)
        cls.base = cls.ids.gateway(os.path.join(cls.tmp, "base"), policy(),
                                   openpgp=(), smime=(ALICE,))
        cls.base.import_keys_checked(cls.carol.cert, cls.erin.cert)
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.ids.kill_agents()

    # -- helpers -----------------------------------------------------------

    def gateway(self, **kw):
        """A gateway of its own: the base keystore copied, policy(**kw)."""
        Capabilities.n += 1
        gw = smimetest.clone_gateway(self.base, os.path.join(self.tmp, "gw%d" % self.n))
        with open(gw.policy, "w") as f:
            f.write(policy(**kw))
        gw.check_policy()
        return gw

    def signed_in(self, gw, ident=None, caps="openssl", sender=CAROL, when=None,
                  want_sig="valid"):
        """A message signed by ident (default carol) announcing caps, from
        sender to alice, through the gateway's inbound path. Asserts the
        signature status word; returns sealgate's stderr."""
        ident = ident or self.carol
        entity = vt.text_entity("Signed by %s. %s" % (ident.name, inboundtest.new_marker()))
        headers = vt.outer(sender="%s <%s>" % (ident.name, sender))
        if when is not None:
            headers = dated(headers, when)
        signing_time = None if when is None else \
            datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
        msg, sig = capstest.signed_message(self.scratch, ident, entity, headers,
                                           caps=caps, signing_time=signing_time)
        ok, why = capstest.signature_verifies(self.scratch, entity, sig, ident.ca.cert)
        if ident is not self.carol_expired:
            self.assertTrue(ok, "openssl does not verify the test's signature: " + why)
        _out, err, _dec, sig_status = self.run_inbound(gw, msg, sender=sender)
        self.assertEqual(vt.parse_status(sig_status)[0], want_sig, sig_status)
        return err

    def outbound(self, gw, rcpts, smime_type, cipher):
        """Alice's message to rcpts through the gateway; asserts S/MIME
        encryption of smime_type with cipher, each recipient decrypting it
        with openssl. Returns (DER, the `cipher:` line's reason)."""
        idents = {CAROL: self.carol, ERIN: self.erin}
        msg = text_message(", ".join(rcpts))
        rc, out, err = gw.process(msg, ALICE, list(rcpts))
        self.assertEqual(rc, 0, err)
        self.assertIn("action: encrypt method=smime", err.splitlines())
        lines = sgtest.stderr_field(err, "cipher")
        self.assertEqual(len(lines), 1, err)
        m = re.fullmatch(r"(\S+) \((.*)\)", lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1), cipher, err)
        der_bytes = smimetest.smime_der(self, msg, out, smime_type)
        self.assertEqual(smimetest.cms_content_cipher(smimetest.cms_print(der_bytes)),
                         cipher)
        for r in rcpts:
            smimetest.assert_openssl_decrypts(self, der_bytes, idents[r], msg)
        return der_bytes, m.group(2)

    def caps_files(self, gw):
        d = os.path.join(gw.keystore, CAPS_DIR)
        return sorted(f for f in os.listdir(d) if not f.startswith(".")) \
            if os.path.isdir(d) else []

    def listed_caps(self, gw, fpr):
        """The caps= value `keys list` shows for certificate fpr, or None."""
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = [r for r in smimetest.smime_list_lines(cp.stdout) if r["fpr"] == fpr]
        self.assertEqual(len(rows), 1, cp.stdout)
        return rows[0]["caps"]

    def assert_recorded(self, err, ident, ciphers):
        self.assertIn("capabilities recorded: %s: %s" % (ident.fpr, ciphers),
                      err.splitlines())
        today = time.strftime("%Y-%m-%d", time.gmtime())
        return "%s (seen %s)" % (ciphers, today)

    # -- unknown capabilities -------------------------------------------------

    def test_unknown_capabilities_get_cbc_that_gpgsm_reads(self):
        gw = self.gateway()
        self.assertIsNone(self.listed_caps(gw, self.carol.fpr))
        der_bytes, why = self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        self.assertEqual(why, "capabilities of %s unknown" % CAROL)
        self.assertEqual(smimetest.cms_recipient_infos(smimetest.cms_print(der_bytes)),
                         [("ktri", "rsaEncryption")])
        if not shutil.which("gpgsm"):
            self.skipTest("gpgsm is not installed")
        home = smimetest.GpgsmHome(os.path.join(self.tmp, "gsm"))
        home.trust(self.ca)
        home.add_identity(self.carol)
        msg = text_message(CAROL, marker="gpgsm " + MARKER)
        rc, out, err = gw.process(msg, ALICE, [CAROL])
        self.assertEqual(rc, 0, err)
        der_bytes = smimetest.smime_der(self, msg, out, ENV)
        smimetest.assert_gpgsm_decrypts(self, home, der_bytes, msg, CAROL)

    # -- recorded from a valid signature -----------------------------------------

    def test_gcm_announced_then_gcm(self):
        gw = self.gateway()
        err = self.signed_in(gw, caps=["aes-256-gcm", "aes-128-gcm", "aes-256-cbc"])
        seen = self.assert_recorded(err, self.carol, "aes-256-gcm,aes-128-gcm,aes-256-cbc")
        self.assertEqual(self.caps_files(gw), [self.carol.fpr + ".seen"])
        path = os.path.join(gw.keystore, CAPS_DIR, self.carol.fpr + ".seen")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o700)
        self.assertEqual(self.listed_caps(gw, self.carol.fpr), seen)
        _der, why = self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")
        self.assertEqual(why, "all recipients announced it")
        # The same announcement again changes nothing.
        err = self.signed_in(gw, caps=["aes-256-gcm", "aes-128-gcm", "aes-256-cbc"])
        self.assertNotIn("capabilities recorded", err)

    def test_openssl_default_announcement_is_cbc(self):
        # openssl announces AES-256/192/128-CBC, 3DES, RC2 and DES: only
        # what sealgate makes counts.
        gw = self.gateway()
        err = self.signed_in(gw, caps="openssl")
        self.assert_recorded(err, self.carol, "aes-256-cbc,aes-128-cbc")
        _der, why = self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        self.assertEqual(why, "all recipients announced it")

    def test_nothing_below_aes128_cbc(self):
        gw = self.gateway()
        # Only weak ciphers announced: recorded as none sealgate makes,
        # which counts as unknown.
        err = self.signed_in(gw, caps=["des-ede3-cbc", "rc2-cbc", "des-cbc", "aes-192-cbc"])
        self.assert_recorded(err, self.carol, "-")
        _der, why = self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        self.assertEqual(why, "capabilities of %s unknown" % CAROL)
        # AES-128-CBC (and weaker) announced: AES-128-CBC, never below.
        err = self.signed_in(gw, caps=["aes-128-cbc", "des-ede3-cbc", "rc2-cbc"])
        self.assert_recorded(err, self.carol, "aes-128-cbc")
        self.outbound(gw, [CAROL], ENV, "aes-128-cbc")

    def test_no_announcement_records_nothing(self):
        gw = self.gateway()
        err = self.signed_in(gw, caps=None)
        self.assertNotIn("capabilities", err)
        self.assertEqual(self.caps_files(gw), [])
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")

    def test_newer_announcement_replaces_older_one(self):
        gw = self.gateway()
        now = int(time.time())
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"], when=now - 3600)
        self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")
        err = self.signed_in(gw, caps=["aes-256-cbc"], when=now - 60)
        self.assert_recorded(err, self.carol, "aes-256-cbc")
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")

    def test_replayed_older_signature_changes_nothing(self):
        # An old signed message sent again (its Date as old as its
        # signature, so the signature is valid) does not turn the record back.
        gw = self.gateway()
        now = int(time.time())
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"])
        err = self.signed_in(gw, caps=["aes-128-cbc"], when=now - 3 * 86400)
        self.assertNotIn("capabilities recorded", err)
        self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")

    # -- what records nothing ----------------------------------------------------

    def test_signatures_that_are_not_valid_record_nothing(self):
        gcm = ["aes-256-gcm", "aes-256-cbc"]
        cases = [
            # a certificate from a CA the gateway does not trust
            ("untrusted", dict(ident=self.carol_untrusted), "unknown-key"),
            # carol's expired certificate
            ("expired", dict(ident=self.carol_expired), "expired"),
            # carol's signature on a message From erin
            ("signer-mismatch", dict(sender=ERIN), "signer-mismatch"),
            # a signature made three hours before the Date
            ("date-mismatch", None, "invalid"),
        ]
        for name, kw, word in cases:
            with self.subTest(case=name):
                gw = self.gateway()
                # The keystore holds the signing certificate (as it may:
                # imported before it expired, or not chaining), so that
                # only the signature's status keeps it from recording.
                if name == "untrusted":
                    gw.import_keys_checked(self.carol_untrusted.cert)
                elif name == "expired":
                    smimetest.place_certs(gw.keystore, self.carol_expired.cert)
                if name == "date-mismatch":
                    err = self.date_mismatch(gw, gcm)
                else:
                    err = self.signed_in(gw, caps=gcm, want_sig=word, **kw)
                self.assertNotIn("capabilities recorded", err)
                self.assertEqual(self.caps_files(gw), [])
                self.outbound(gw, [CAROL], ENV, "aes-256-cbc")

    def date_mismatch(self, gw, caps):
        entity = vt.text_entity("Old signature. " + inboundtest.new_marker())
        signed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
        msg, _sig = capstest.signed_message(self.scratch, self.carol, entity,
                                            caps=caps, signing_time=signed)
        _out, err, _dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(sig, "invalid; method=smime; key=%s; reason=date-mismatch"
                         % self.carol.fpr)
        return err

    def test_forged_signature_records_nothing(self):
        gw = self.gateway()
        entity = vt.text_entity("Genuine text. " + inboundtest.new_marker())
        msg, _sig = capstest.signed_message(self.scratch, self.carol, entity,
                                            caps=["aes-256-gcm"])
        forged = vt.flip_in_signed_text(msg, b"Genuine")
        _out, err, _dec, sig = self.run_inbound(gw, forged)
        self.assertEqual(vt.parse_status(sig)[0], "invalid", sig)
        self.assertEqual(self.caps_files(gw), [])
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")

    def test_only_the_signing_certificate_of_the_keystore(self):
        # carol's second certificate (valid, same key, not in the keystore)
        # signs: nothing is recorded, not even for the certificate the
        # keystore holds for her.
        gw = self.gateway()
        err = self.signed_in(gw, ident=self.carol_2, caps=["aes-256-gcm"])
        self.assertNotIn("capabilities", err)
        self.assertEqual(self.caps_files(gw), [])
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        # carol's own announcement is hers only.
        self.signed_in(gw, caps=["aes-256-gcm"])
        self.assertEqual(self.caps_files(gw), [self.carol.fpr + ".seen"])
        self.assertIsNone(self.listed_caps(gw, self.erin.fpr))

    def test_announcements_beyond_the_bounds_are_not_read(self):
        gcm = capstest.capability("aes-256-gcm")
        unknown = capstest.capability("unknown")
        long_param = b"\x04\x81\xc8" + b"P" * 200
        cases = [
            # 65 entries: too many
            ("65 entries", [der.Node(der.SEQUENCE, children=[unknown] * 64 + [gcm])], None),
            # 64 entries: read; the unknown algorithm counts for nothing
            ("64 entries", [der.Node(der.SEQUENCE, children=[unknown] * 63 + [gcm])],
             "aes-256-gcm"),
            # over 4096 bytes in 21 entries
            ("4 KiB", [der.Node(der.SEQUENCE, children=[
                capstest.capability("unknown", long_param)] * 20 + [gcm])], None),
            # two values in one attribute
            ("two values", [capstest.capabilities("aes-256-gcm"),
                            capstest.capabilities("aes-128-cbc")], None),
        ]
        for name, values, recorded in cases:
            with self.subTest(case=name):
                gw = self.gateway()
                err = self.signed_in(gw, caps=values)
                if recorded is None:
                    self.assertNotIn("capabilities", err)
                    self.assertEqual(self.caps_files(gw), [])
                    self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
                else:
                    self.assert_recorded(err, self.carol, recorded)
                    self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")

    def test_a_failure_to_record_delivers_the_message(self):
        # The capability directory is a file: nothing can be written, the
        # message is delivered all the same.
        gw = self.gateway()
        with open(os.path.join(gw.keystore, CAPS_DIR), "w") as f:
            f.write("not a directory\n")
        err = self.signed_in(gw, caps=["aes-256-gcm"])
        lines = sgtest.stderr_field(err, "capabilities not recorded")
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith(self.carol.fpr + ": cannot open "), lines[0])
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")

    def test_only_the_keystore_owner_records(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the keystore to another user")
        # Another user than the keystore's owner: `process` refuses to
        # run at all (so that root leaves no gpg-agent of its own in the
        # keystore), and writes no record.
        gw = self.gateway()
        os.chown(gw.keystore, 65534, 65534)
        entity = vt.text_entity("Signed by carol. %s" % inboundtest.new_marker())
        msg, _sig = capstest.signed_message(self.scratch, self.carol, entity,
                                            vt.outer(sender="carol <%s>" % CAROL),
                                            caps=["aes-256-gcm"])
        rc, _out, err = inboundtest.process(gw, msg, [ALICE], sender=CAROL)
        self.assertEqual(rc, 1, err)
        self.assertIn("belongs to user nobody", err)
        self.assertFalse(os.path.exists(os.path.join(gw.keystore, CAPS_DIR)))

    # -- several recipients --------------------------------------------------------

    def test_mixed_recipients_get_cbc(self):
        gw = self.gateway()
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"])
        _der, why = self.outbound(gw, [CAROL, ERIN], ENV, "aes-256-cbc")
        self.assertEqual(why, "capabilities of %s unknown" % ERIN)
        self.signed_in(gw, ident=self.erin, sender=ERIN, caps=["aes-256-gcm", "aes-128-gcm"])
        _der, why = self.outbound(gw, [CAROL, ERIN], AUTH, "aes-256-gcm")
        self.assertEqual(why, "all recipients announced it")

    # -- stated by the administrator ---------------------------------------------

    def state(self, gw, value, path=None):
        return gw.run("keys", "-c", gw.policy, "import", path or self.carol.cert,
                      "--smime-capabilities", value)

    def test_stated_capabilities_win(self):
        gw = self.gateway()
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"])
        cp = self.state(gw, "aes-128-cbc,aes-256-cbc")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("capabilities of %s: aes-256-cbc,aes-128-cbc (stated)" % self.carol.fpr,
                      cp.stdout.splitlines())
        self.assertEqual(self.listed_caps(gw, self.carol.fpr),
                         "aes-256-cbc,aes-128-cbc (stated)")
        self.assertEqual(self.caps_files(gw), [self.carol.fpr + ".seen",
                                               self.carol.fpr + ".stated"])
        mode = os.stat(os.path.join(gw.keystore, CAPS_DIR, self.carol.fpr + ".stated")).st_mode
        self.assertEqual(mode & 0o777, 0o600)
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        # A newer announcement does not overrule the statement...
        self.signed_in(gw, caps=["aes-128-gcm"])
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        # ... until it is cleared.
        cp = self.state(gw, "clear")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("capabilities of %s: statement removed" % self.carol.fpr,
                      cp.stdout.splitlines())
        self.assertRegex(self.listed_caps(gw, self.carol.fpr), r"^aes-128-gcm \(seen ")
        self.outbound(gw, [CAROL], AUTH, "aes-128-gcm")

    def test_stated_without_any_signature(self):
        gw = self.gateway()
        cp = self.state(gw, "aes-256-gcm")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        _der, why = self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")
        self.assertEqual(why, "all recipients announced it")
        cp = self.state(gw, "aes-256-gcm")
        self.assertIn("capabilities of %s: aes-256-gcm (stated), unchanged" % self.carol.fpr,
                      cp.stdout.splitlines())

    def test_broken_statement_counts_as_unknown(self):
        # A statement that cannot be read is never passed over for what
        # was seen: the administrator may have meant to overrule it.
        gw = self.gateway()
        self.signed_in(gw, caps=["aes-256-gcm"])
        path = os.path.join(gw.keystore, CAPS_DIR, self.carol.fpr + ".stated")
        smimetest.write_file(path, b"ciphers: aes-256-gcm\n\x00 garbage without a date\n")
        self.assertEqual(self.listed_caps(gw, self.carol.fpr), "unreadable")
        out = self.explain(gw, CAROL)
        self.assertIn("  capabilities: unknown (%s/%s.stated is malformed)\n"
                      % (CAPS_DIR, self.carol.fpr), out)
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        smimetest.write_file(path, b"x" * 2000)
        self.outbound(gw, [CAROL], ENV, "aes-256-cbc")
        os.unlink(path)
        self.outbound(gw, [CAROL], AUTH, "aes-256-gcm")

    def test_stating_refusals(self):
        gw = self.gateway()
        before = smimetest.tree_snapshot(gw.keystore)
        cp = self.state(gw, "aes-256-gcm,des-ede3-cbc")
        self.assertEqual(cp.returncode, 1)
        self.assertEqual(cp.stderr.strip(), 'sealgate: --smime-capabilities: unknown cipher '
                         '"des-ede3-cbc" (sealgate encrypts with aes-256-gcm, aes-128-gcm, '
                         'aes-256-cbc, aes-128-cbc)')
        cp = self.state(gw, "")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no cipher named", cp.stderr)
        # An OpenPGP key: refused, nothing imported.
        pub = sgtest.export_public_key(self.tmp, self.ids.sender, CAROL)
        cp = self.state(gw, "aes-256-gcm", path=pub)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("--smime-capabilities is for S/MIME certificates", cp.stderr)
        # Another verb.
        cp = gw.run("keys", "-c", gw.policy, "list", "--smime-capabilities", "aes-256-gcm")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("--smime-capabilities goes with import", cp.stderr)
        self.assertEqual(smimetest.tree_snapshot(gw.keystore), before)
        # A CA certificate alone has nobody to state it for (the file
        # itself is imported as without the option).
        cp = self.state(gw, "aes-256-gcm", path=self.ca.cert)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("no certificate with an address to state --smime-capabilities for",
                      cp.stderr)
        self.assertEqual(self.caps_files(gw), [])

    def test_keys_list_json(self):
        gw = self.gateway()
        self.state(gw, "aes-256-gcm,aes-256-cbc")
        cp = gw.run("keys", "-c", gw.policy, "list", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = {(r["fingerprint"], r["address"]): r for r in json.loads(cp.stdout)}
        self.assertEqual(rows[(self.carol.fpr, CAROL)]["capabilities"],
                         "aes-256-gcm,aes-256-cbc (stated)")
        self.assertIsNone(rows[(self.erin.fpr, ERIN)]["capabilities"])
        anchor = [r for r in rows.values() if r["usable"] == "trust-anchor"]
        self.assertTrue(anchor)
        self.assertIsNone(anchor[0]["capabilities"])

    # -- forced --------------------------------------------------------------------

    def test_smime_cipher_forces_either_way(self):
        gw = self.gateway(rules="    - { name: legacy, when: { recipient_domain: "
                                "[partner.example] }, action: encrypt, "
                                "smime_cipher: aes-128-cbc }\n")
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"])
        _der, why = self.outbound(gw, [CAROL], ENV, "aes-128-cbc")
        self.assertEqual(why, 'forced by rule "legacy"')
        # erin (unknown capabilities) under a default that forces GCM.
        gw = self.gateway(default_extra="smime_cipher: aes-256-gcm")
        _der, why = self.outbound(gw, [ERIN], AUTH, "aes-256-gcm")
        self.assertEqual(why, "forced by outbound.default")

    # -- policy explain ----------------------------------------------------------------

    def explain(self, gw, *rcpts, json_out=False):
        args = ["policy", "explain", "-c", gw.policy, "--from", ALICE]
        for r in rcpts:
            args += ["--to", r]
        if json_out:
            args.append("--json")
        cp = gw.run(*args)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout) if json_out else cp.stdout

    def test_explain_names_the_cipher_and_why(self):
        gw = self.gateway()
        out = self.explain(gw, CAROL)
        self.assertIn("  capabilities: unknown\n", out)
        self.assertTrue(out.endswith("cipher: aes-256-cbc (capabilities of %s unknown)\n"
                                     % CAROL), out)
        self.signed_in(gw, caps=["aes-256-gcm", "aes-256-cbc"])
        out = self.explain(gw, CAROL)
        self.assertRegex(out, r"\n  capabilities: aes-256-gcm,aes-256-cbc "
                              r"\(seen \d{4}-\d\d-\d\d\)\n")
        self.assertIn("\ncipher: aes-256-gcm (all recipients announced it)\n", out)
        j = self.explain(gw, CAROL, ERIN, json_out=True)
        self.assertEqual((j["cipher"], j["cipher_reason"]),
                         ("aes-256-cbc", "capabilities of %s unknown" % ERIN))
        caps = {r["address"]: r["capabilities"] for r in j["recipients"]}
        self.assertEqual(caps[ERIN], "unknown")
        self.assertRegex(caps[CAROL], r"^aes-256-gcm,aes-256-cbc \(seen ")
        # No S/MIME recipient: no cipher.
        j = self.explain(gw, "nobody@nokey.example", json_out=True)
        self.assertIsNone(j["cipher"])
        self.assertIsNone(j["recipients"][0]["capabilities"])

    # -- a peer sealgate ------------------------------------------------------------------

    def test_sealgate_signatures_announce_what_it_reads(self):
        """sealgate signs as alice; its signature announces AES-GCM and
        AES-CBC (and nothing it refuses); the partner's own sealgate,
        receiving it, records that and answers alice with AES-256-GCM."""
        ours = sgtest.policy_gateway(os.path.join(self.tmp, "ours"), policy(
            rules="    - { name: signed, when: { recipient_domain: [partner.example] }, "
                  "action: sign }\n"))
        ours.check_policy()
        ours.run("keys", "-c", ours.policy, "import", "--trust-anchor", self.ca.cert)
        ours.import_keys_checked(self.ids.p12[ALICE], "--passphrase-file", self.ids.passfile)
        msg = sgtest.make_message(
            sgtest.std_headers(sender="Alice Example <%s>" % ALICE, to=CAROL)
            + [("Content-Type", "text/plain; charset=us-ascii")], "Signed by sealgate.\r\n")
        rc, out, err = ours.process(msg, ALICE, [CAROL], client_ip=None,
                                    extra_args=["--auth", ALICE])
        self.assertEqual(rc, 0, err)
        self.assertIn("action: sign method=smime", err.splitlines())
        ok, why = vt.openssl_verifies(self.scratch, out, self.ca.cert)
        self.assertTrue(ok, why)
        sig = re.search(rb'filename="smime.p7s"\r\n.*?\r\n\r\n(.*?)\r\n--', out, re.S)
        self.assertTrue(sig, out[-2000:])
        announced = capstest.announced(base64.b64decode(b"".join(sig.group(1).split())))
        self.assertEqual(announced, ["aes-256-gcm", "aes-128-gcm", "aes-256-cbc",
                                     "aes-128-cbc"])

        peer = sgtest.policy_gateway(os.path.join(self.tmp, "peer"),
                                     policy(domains="partner.example"))
        peer.check_policy()
        peer.run("keys", "-c", peer.policy, "import", "--trust-anchor", self.ca.cert)
        peer.import_keys_checked(self.ids.smime[ALICE].cert)
        _out, err, _dec, status = self.run_inbound(peer, out, rcpts=(CAROL,), sender=ALICE)
        self.assertEqual(status, "valid; method=smime; signer=%s; key=%s"
                         % (ALICE, self.ids.smime[ALICE].fpr))
        self.assertIn("capabilities recorded: %s: %s" % (self.ids.smime[ALICE].fpr, ALL),
                      err.splitlines())
        reply = sgtest.make_message(
            sgtest.std_headers(sender="Carol Partner <%s>" % CAROL, to=ALICE)
            + [("Content-Type", "text/plain; charset=us-ascii")], "Reply. %s\r\n" % MARKER)
        rc, out, err = peer.process(reply, CAROL, [ALICE])
        self.assertEqual(rc, 0, err)
        self.assertIn("cipher: aes-256-gcm (all recipients announced it)", err.splitlines())
        der_bytes = smimetest.smime_der(self, reply, out, AUTH)
        smimetest.assert_openssl_decrypts(self, der_bytes, self.ids.smime[ALICE], reply)


if __name__ == "__main__":
    unittest.main()
