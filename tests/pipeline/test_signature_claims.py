"""Signature claims: a valid signature is reported `valid` only when the
message's own claims about it hold (README, "Verification headers").

- Time: the signature's creation time (OpenPGP signature time, CMS
  signingTime) lies within inbound.signature_date_tolerance (default 1h)
  of the Date field; otherwise `invalid; reason=date-mismatch`, so that an
  old signed message cannot be replayed as new. No Date: reason=no-date;
  an unreadable or repeated Date: reason=bad-date; an S/MIME signature
  without signingTime: reason=no-signing-time.
- Display name: a From display name that shows an address other than the
  signer's ("ceo@example.com" <attacker@partner.example>) is
  `signer-mismatch; reason=display-name`, also RFC 2047 encoded, with
  look-alike or invisible characters, in a comment, among several.

Every signature is made by gpg (old ones with --faked-system-time) or
`openssl cms -sign`, which always writes the current signingTime: for
S/MIME the Date is moved instead (the comparison is symmetric).
"""

import base64
import os
import time
import unittest

import inboundtest
import sgtest
import smimetest
import verifytest as vt
from inboundtest import ALICE, CAROL
from verifytest import NOT_ENCRYPTED

HOUR = 3600
CAROL_NAME = "Carol Partner <%s>" % CAROL
PAT = "pat@partner.example"
PAT_NAME = "Pat Partner <%s>" % PAT


def faked(t):
    """gpg --faked-system-time argument for time t."""
    return ("--faked-system-time", time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)))


def with_date(headers, *dates):
    """headers with the Date field replaced by one field per date (none
    when no date is given); a date is a time or a literal value."""
    out = []
    for n, v in headers:
        if n != "Date":
            out.append((n, v))
            continue
        for d in dates:
            out.append(("Date", d if isinstance(d, str) else sgtest.rfc5322_date(d)))
    return out


def encoded(text):
    """text as one RFC 2047 base64 encoded word (UTF-8)."""
    return "=?utf-8?b?%s?=" % base64.b64encode(text.encode("utf-8")).decode()


class SignatureClaims(vt.VerifyCase, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgcl")
        cls.scratch = vt.Scratch(os.path.join(cls.tmp, "scratch"))
        cls.ids = inboundtest.Identities(cls.tmp)
        cls.carol = cls.ids.sender
        cls.carol_fpr = cls.carol.fingerprint(CAROL)
        cls.carol_smime = cls.ids.ca.issue("Carol Partner", [CAROL], basename="carol")
        cls.carol_smime_fpr = cls.carol_smime.fpr
        # Carol's key is made now: gpg signs nothing dated before a key's
        # creation. Pat's key is two years old, to sign in the past with
        # --faked-system-time.
        cls.pat = sgtest.GpgHome(os.path.join(cls.tmp, "pat"))
        cls.pat.gpg(*(list(faked(time.time() - 2 * 365 * 86400)) + [
            "--quick-gen-key", "Pat Partner <%s>" % PAT, "future-default", "default",
            "never"]))
        cls.pat_fpr = cls.pat.fingerprint(PAT)
        cls.pat.import_keys(cls.ids.alice.export_public(ALICE))
        cls.gw = cls.ids.gateway(os.path.join(cls.tmp, "gw"), inboundtest.inbound_policy())
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL), (cls.pat, PAT)])
        cls.wide = inboundtest.variant(
            cls.gw, os.path.join(cls.tmp, "gw3h"),
            inboundtest.inbound_policy(signature_date_tolerance="3h"))
        cls.narrow = inboundtest.variant(
            cls.gw, os.path.join(cls.tmp, "gw10m"),
            inboundtest.inbound_policy(signature_date_tolerance="10m"))

    @classmethod
    def tearDownClass(cls):
        cls.ids.kill_agents()
        cls.pat.kill()

    # ------------------------------------------------------------------

    def entity(self):
        return vt.text_entity("Hello Alice, you are fired.\r\nCarol\r\n")

    def pgp_msg(self, signed_at=None, dates=None, sender=CAROL_NAME):
        """A PGP/MIME signed message by carol, or by pat when signed_at (the
        signature's time) is given; dates: the Date fields (default: one,
        now)."""
        home = self.carol
        if signed_at is not None:
            home, sender = self.pat, PAT_NAME
        h = vt.outer(sender=sender)
        if dates is not None:
            h = with_date(h, *dates)
        extra = faked(signed_at) if signed_at is not None else ()
        return vt.pgp_signed_message(home, self.entity(), h, extra=extra)

    def smime_msg(self, dates=None, sender=CAROL_NAME, noattr=False, opaque=False):
        h = vt.outer(sender=sender, mime_version=False)
        if dates is not None:
            h = with_date(h, *dates)
        if not noattr:
            return vt.smime_signed_message(self.scratch, self.carol_smime, self.entity(),
                                           h, opaque=opaque)
        data = self.scratch.file("entity", sgtest.canon(self.entity()))
        out = smimetest.openssl("cms", "-sign", "-binary", "-noattr", "-md", "sha256",
                                "-signer", self.carol_smime.cert, "-inkey",
                                self.carol_smime.key, "-in", data, "-crlfeol").stdout
        return vt.message(h, sgtest.canon(out))

    def sig_of(self, gw, msg):
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, NOT_ENCRYPTED, err)
        return sig

    def pgp(self, word, reason=None, pat=False):
        addr, fpr = (PAT, self.pat_fpr) if pat else (CAROL, self.carol_fpr)
        if word == "valid":
            return "valid; method=openpgp; signer=%s; key=%s" % (addr, fpr)
        return "%s; method=openpgp; key=%s; reason=%s" % (word, fpr, reason)

    def smime(self, word, reason=None):
        if word == "valid":
            return "valid; method=smime; signer=%s; key=%s" % (CAROL, self.carol_smime_fpr)
        return "%s; method=smime; key=%s; reason=%s" % (word, self.carol_smime_fpr, reason)

    # ------------------------------------------------------------------
    # Creation time against Date

    def test_pgp_date_tolerance(self):
        now = time.time()
        for name, signed_at, date, want in (
                ("signed now", None, None, self.pgp("valid")),
                ("signed 30 min before Date", now - HOUR / 2, None,
                 self.pgp("valid", pat=True)),
                ("signed 30 min after Date", now + HOUR / 2, None,
                 self.pgp("valid", pat=True)),
                ("replayed: signed 2 h before Date", now - 2 * HOUR, None,
                 self.pgp("invalid", "date-mismatch", pat=True)),
                ("signed a year before Date", now - 365 * 86400, None,
                 self.pgp("invalid", "date-mismatch", pat=True)),
                ("Date 2 h before the signature", None, now - 2 * HOUR,
                 self.pgp("invalid", "date-mismatch")),
                ("Date 2 h after the signature", None, now + 2 * HOUR,
                 self.pgp("invalid", "date-mismatch")),
                ("Date 61 min old", None, now - HOUR - 60,
                 self.pgp("invalid", "date-mismatch"))):
            with self.subTest(name):
                msg = self.pgp_msg(signed_at, None if date is None else [date])
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(sig, want, err)
                self.assert_unchanged(msg, out, NOT_ENCRYPTED, want)

    def test_pgp_tolerance_from_policy(self):
        now = time.time()
        two_hours = self.pgp_msg(now - 2 * HOUR)
        half_hour = self.pgp_msg(now - HOUR / 2)
        self.assertEqual(self.sig_of(self.wide, two_hours), self.pgp("valid", pat=True))
        self.assertEqual(self.sig_of(self.wide, self.pgp_msg(now - 4 * HOUR)),
                         self.pgp("invalid", "date-mismatch", pat=True))
        self.assertEqual(self.sig_of(self.narrow, half_hour),
                         self.pgp("invalid", "date-mismatch", pat=True))
        self.assertEqual(self.sig_of(self.narrow, self.pgp_msg(now - 5 * 60)),
                         self.pgp("valid", pat=True))

    def test_pgp_missing_or_unreadable_date(self):
        now = time.time()
        for name, dates, want in (
                ("no Date", [], "no-date"),
                ("garbage", ["yesterday, around noon"], "bad-date"),
                ("impossible time", ["Tue, 1 Dec 2026 25:61:00 +0000"], "bad-date"),
                ("empty", [""], "bad-date"),
                ("two equal Date fields", [now, now], "bad-date")):
            with self.subTest(name):
                self.assertEqual(self.sig_of(self.gw, self.pgp_msg(dates=dates)),
                                 self.pgp("invalid", want))
        # Two different Date fields make the message malformed already.
        _o, err, _d, sig = self.run_inbound(self.gw, self.pgp_msg(dates=[now, now - 86400]))
        self.assertFalse(sig.startswith("valid"), err)

    def test_unparsable_from_with_address_in_name(self):
        # GMime reads this From as two mailboxes: no single one to match.
        sig = self.sig_of(self.gw, self.pgp_msg(sender="CEO ceo@example.com <%s>" % CAROL))
        self.assertTrue(sig.startswith("signer-mismatch;"), sig)

    def test_pgp_signed_and_encrypted_replayed(self):
        # gpg --sign --encrypt; gpg cannot encrypt to a key "made in the
        # future" of a faked clock, so the Date moves instead.
        entity = self.entity()
        armored = vt.gpg_sign_encrypt(self.pat, entity, [ALICE])
        for name, date, want in (
                ("Date now", time.time(), self.pgp("valid", pat=True)),
                ("Date 3 h old", time.time() - 3 * HOUR,
                 self.pgp("invalid", "date-mismatch", pat=True))):
            with self.subTest(name):
                h = with_date(vt.outer(sender=PAT_NAME), date)
                msg = inboundtest.pgp_mime_message(armored, headers=h)
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
                self.assertEqual(sig, want, err)

    def test_smime_date_tolerance(self):
        now = time.time()
        for name, dates, opaque, want in (
                ("Date now", None, False, self.smime("valid")),
                ("Date 40 min old", [now - 40 * 60], False, self.smime("valid")),
                ("Date 2 h old", [now - 2 * HOUR], False,
                 self.smime("invalid", "date-mismatch")),
                ("Date 2 h ahead", [now + 2 * HOUR], False,
                 self.smime("invalid", "date-mismatch")),
                ("Date 2 h old, opaque", [now - 2 * HOUR], True,
                 self.smime("invalid", "date-mismatch")),
                ("no Date", [], False, self.smime("invalid", "no-date"))):
            with self.subTest(name):
                self.assertEqual(self.sig_of(self.gw, self.smime_msg(dates, opaque=opaque)),
                                 want)
        self.assertEqual(self.sig_of(self.wide, self.smime_msg([now - 2 * HOUR])),
                         self.smime("valid"))
        self.assertEqual(self.sig_of(self.narrow, self.smime_msg([now - 40 * 60])),
                         self.smime("invalid", "date-mismatch"))

    def test_smime_without_signing_time(self):
        # openssl cms -sign -noattr: no signed attributes, so no time to
        # compare; the signature itself holds (openssl verifies it).
        msg = self.smime_msg(noattr=True)
        ok, text = vt.openssl_verifies(self.scratch, msg, self.ids.ca.cert)
        self.assertTrue(ok, text)
        self.assertEqual(self.sig_of(self.gw, msg), self.smime("invalid", "no-signing-time"))

    # ------------------------------------------------------------------
    # Display name

    def test_display_name_shows_another_address(self):
        for name, sender in (
                ("quoted", '"ceo@example.com" <%s>' % CAROL),
                ("angle brackets inside", '"CEO <ceo@example.com>" <%s>' % CAROL),
                ("other case of another address", '"CEO@Example.COM" <%s>' % CAROL),
                ("encoded word", "%s <%s>" % (encoded("ceo@example.com"), CAROL)),
                ("encoded, quoted-printable",
                 "=?utf-8?q?ceo=40example=2Ecom?= <%s>" % CAROL),
                ("full-width at sign", "%s <%s>" % (encoded("ceo\uff20example.com"), CAROL)),
                ("small commercial at", "%s <%s>" % (encoded("ceo\ufe6bexample.com"), CAROL)),
                ("zero-width space", "%s <%s>" % (encoded("ceo\u200b@\u200bexample.com"),
                                                  CAROL)),
                ("blanks around the at", '"ceo @ example.com" <%s>' % CAROL),
                ("ideographic full stop", "%s <%s>" % (encoded("ceo@example\u3002com"), CAROL)),
                ("full-width full stop", "%s <%s>" % (encoded("ceo@example\uff0ecom"), CAROL)),
                ("combining mark", "%s <%s>" % (encoded("ceo@exa\u20dbmple.com"), CAROL)),
                ("IDN domain", "%s <%s>" % (encoded("ceo@b\u00fccher.example"), CAROL)),
                ("comment", "%s (ceo@example.com)" % CAROL),
                ("several, own first", '"%s, ceo@example.com" <%s>' % (CAROL, CAROL)),
                ("several, own last", '"ceo@example.com / %s" <%s>' % (CAROL, CAROL)),
                ("similar address", '"carol@partner.example.com" <%s>' % CAROL),
                ("own local part, other domain", '"carol@example.com" <%s>' % CAROL),
                ("right-to-left override", "%s <%s>" % (encoded("\u202emoc.elpmaxe@oec"),
                                                        CAROL)),
                ("isolate around the address",
                 "%s <%s>" % (encoded("\u2067ceo@example.com\u2069"), CAROL)),
                ("Lisu full stop", "%s <%s>" % (encoded("ceo@example\ua4f8com"), CAROL)),
                ("Syriac full stop", "%s <%s>" % (encoded("ceo@example\u0701com"), CAROL)),
                ("Syriac supralinear full stop",
                 "%s <%s>" % (encoded("ceo@example\u0702com"), CAROL)),
                ("middle dot", "%s <%s>" % (encoded("ceo@example\u00b7com"), CAROL)),
                ("blanks around the dot", '"ceo @ example . com" <%s>' % CAROL)):
            with self.subTest(name):
                msg = self.pgp_msg(sender=sender)
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(sig, self.pgp("signer-mismatch", "display-name"), err)
                self.assert_unchanged(msg, out, NOT_ENCRYPTED, sig)

    def test_display_name_invalid_utf8(self):
        msg = self.pgp_msg(sender='"ceo@example.com PLACEHOLDER" <%s>' % CAROL)
        msg = msg.replace(b"PLACEHOLDER", b"\xff\xfe\xc3", 1)
        self.assertEqual(self.sig_of(self.gw, msg), self.pgp("signer-mismatch", "display-name"))

    def test_display_name_without_other_address(self):
        for name, sender in (
                ("plain name", CAROL_NAME),
                ("own address", '"%s" <%s>' % (CAROL, CAROL)),
                ("own address, other case", '"CAROL@Partner.EXAMPLE" <%s>' % CAROL),
                ("own address, encoded", "%s <%s>" % (encoded(CAROL.upper()), CAROL)),
                ("own address twice", '"%s (%s)" <%s>' % (CAROL, CAROL, CAROL)),
                ("at sign, no address", '"Carol @ Partner" <%s>' % CAROL),
                ("lone at sign", '"@" <%s>' % CAROL),
                ("right-to-left mark in a name", "%s <%s>" % (encoded("\u200f\u05e9\u05dc\u05d5\u05dd"),
                                                              CAROL)),
                ("sentence with a dot", '"Carol. Partner" <%s>' % CAROL),
                ("no display name", CAROL)):
            with self.subTest(name):
                self.assertEqual(self.sig_of(self.gw, self.pgp_msg(sender=sender)),
                                 self.pgp("valid"))

    def test_smime_display_name(self):
        self.assertEqual(
            self.sig_of(self.gw, self.smime_msg(sender='"ceo@example.com" <%s>' % CAROL)),
            self.smime("signer-mismatch", "display-name"))
        self.assertEqual(
            self.sig_of(self.gw, self.smime_msg(sender='"%s" <%s>' % (CAROL.upper(), CAROL))),
            self.smime("valid"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
