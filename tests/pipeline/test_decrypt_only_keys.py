"""An internal user's expired or revoked key, imported to decrypt only.

Mail encrypted to a key before it expired or was revoked must still open
at the gateway, so `sealgate keys import` takes an expired or revoked key
(OpenPGP) or an expired certificate (S/MIME) when -- and only when -- the
file holds its secret part and one of its addresses is internal under the
policy (OpenPGP: a user id that is not itself revoked). `keys list` shows
it as `expired|revoked ... usable=decrypt`. Such a key never encrypts,
never signs and is never a trust anchor; an active key for the same
address, imported before or after it, does all that, and both decrypt.

The keys are made with the real gpg and openssl: an OpenPGP key created
under --faked-system-time in 2020 with a one-day lifetime (mail to it
encrypted by the sender's gpg in 2020), a key revoked with its own
revocation certificate after mail was encrypted to it (and a user id of it
revoked before), an S/MIME certificate issued by `openssl ca` with an end
date in the past (mail to it encrypted with `openssl cms -encrypt`).
Inbound mail comes from an outside client through `sealgate process`.
Checked:

  - imported and listed decrypt-only; a second import says `unchanged` and
    changes nothing; --dry-run agrees;
  - refused (keystore unchanged): the public part alone, an external
    address's expired or revoked secret key, a revoked key whose only
    internal user id is itself revoked, an expired certificate as a trust
    anchor, a private key for an expired external certificate of the store;
  - inbound mail to the old key is decrypted for its owner, never for
    another user, never for a revoked user id (also when the message hides
    its recipients, so that every secret key of the recipient is tried),
    never for a deactivated address;
  - outbound mail to the key's external address is not encrypted to it
    (encrypt-if-key: sent as it was; a mandatory rule: refused), and a
    rule that signs as its owner does not sign with it;
  - with the owner's active key next to it (imported after or before),
    outbound mail is encrypted to and signed with the active key only, and
    mail to either key is decrypted.
"""

import os
import re
import unittest

import inboundtest
import sgtest
import signtest
import smimetest
from inboundtest import InboundCase, alternative_entity, cms_encrypt, new_marker, \
    pgp_mime_message, smime_message
from smimetest import days, smime_list_lines, utcnow

ERIN = "erin@example.com"            # internal: expired key, then a new one
ERIN_HOME = "erin@home.example"      # erin's external address, on both keys
ROB = "rob@example.com"              # internal: revoked key
ROB_HOME = "rob@home.example"
ROB_OLD = "rob.old@example.com"      # a user id of rob's key, revoked itself
BOB = "bob@example.com"              # internal, no key
CAROL = "carol@partner.example"      # the outside sender
ALICE = "alice@example.com"          # internal sender of outbound mail
SIGNED = "signed@other.example"      # the rule "signed" signs mail to it
PASS = "p12-pass"
PAST = "20200101T000000"             # erin's old key lives one day from here
IN_PAST = "20200101T120000"          # ... and gets mail then

LIST_RE = re.compile(r"^(?:(?P<prefix>imported|unchanged) +)?(?P<addr>\S+)\s+openpgp\s+"
                     r"(?P<fpr>[0-9A-F]{40})\s+(?P<state>\S+)\s+"
                     r"expires=(?P<expires>\S+)\s+usable=(?P<usable>\S+)$")


def policy(methods="openpgp, smime"):
    return ("version: 1\n"
            "gateway:\n"
            "  keystore: \"store\"\n"
            "  spool_dir: \"spool\"\n"
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { action: encrypt-if-key, methods: [%s] }\n"
            "  rules:\n"
            "    - name: secure\n"
            "      when: { subject_tag: \"[secure]\" }\n"
            "      action: encrypt\n"
            "      on_missing_key: reject\n"
            "    - name: signed\n"
            "      when: { recipient: [%s] }\n"
            "      action: sign\n"
            "      on_missing_key: reject\n"
            "inbound: { decrypt: true, verify: true, require_integrity: false }\n"
            % (methods, SIGNED))


def pgp_rows(text):
    """[dict] of the OpenPGP lines of `keys list` or `keys import` output."""
    return [m.groupdict() for m in map(LIST_RE.match, text.splitlines()) if m]


def subkey_ids(home, fpr):
    """Key ids (upper case) of the encryption-capable (sub)keys of the key
    fpr in home, whatever their validity."""
    cp = home.gpg("--with-colons", "--list-keys", fpr)
    return [r[4].upper() for r in (line.split(":") for line in
                                   cp.stdout.decode().splitlines())
            if r[0] in ("pub", "sub") and "e" in r[11]]


def write(name, data):
    return smimetest.write_file(os.path.join(TMP, name), data)


def make_openpgp_keys():
    """The OpenPGP keys, each in its own GnuPG home, and the mail the
    sender encrypted to them while they were valid."""
    global OLD, NEW, ROBH, OLD_FPR, NEW_FPR, ROB_FPR, SENDER, FILES, MAIL, ENTITY, PLAIN
    t = lambda name: os.path.join(TMP, name)          # noqa: E731
    OLD = sgtest.GpgHome(t("erin-old"))
    OLD.gpg("--faked-system-time", PAST, "--quick-gen-key", "Erin Example <%s>" % ERIN,
            "future-default", "default", "1d")
    OLD_FPR = OLD.fingerprint(ERIN)
    OLD.gpg("--faked-system-time", PAST, "--quick-add-uid", OLD_FPR,
            "Erin Example <%s>" % ERIN_HOME)
    NEW = sgtest.GpgHome(t("erin-new"))
    NEW_FPR = NEW.gen_key("Erin Example", ERIN)
    NEW.gpg("--quick-add-uid", NEW_FPR, "Erin Example <%s>" % ERIN_HOME)
    ROBH = sgtest.GpgHome(t("rob"))
    ROB_FPR = ROBH.gen_key("Rob Example", ROB)
    for addr in (ROB_HOME, ROB_OLD):
        ROBH.gpg("--quick-add-uid", ROB_FPR, "Rob Example <%s>" % addr)
    pat = sgtest.GpgHome(t("pat"))
    pat.gpg("--faked-system-time", PAST, "--quick-gen-key",
            "Pat Partner <pat@partner.example>", "future-default", "default", "1d")
    quinn = sgtest.GpgHome(t("quinn"))
    quinn_fpr = quinn.gen_key("Quinn Example", "quinn.old@example.com")
    quinn.gpg("--quick-add-uid", quinn_fpr, "Quinn Example <quinn@home.example>")

    SENDER = sgtest.GpgHome(t("carol"))
    SENDER.gen_key("Carol Partner", CAROL)
    for home, fpr in ((OLD, OLD_FPR), (NEW, NEW_FPR), (ROBH, ROB_FPR)):
        SENDER.import_keys(home.export_public(fpr))
    PLAIN = new_marker()
    ENTITY = alternative_entity(PLAIN)
    MAIL = {
        "old": SENDER.gpg("--faked-system-time", IN_PAST, "--trust-model", "always",
                          "--armor", "--encrypt", "--recipient", OLD_FPR,
                          input_bytes=ENTITY).stdout,
        "new": SENDER.encrypt(ENTITY, [NEW_FPR]),
        "rob": SENDER.encrypt(ENTITY, [ROB_FPR]),
        "rob-hidden": SENDER.encrypt(ENTITY, [ROB_FPR], extra=["--throw-keyids"]),
    }
    # Then rob's old address goes, and his key is revoked; so is quinn's
    # key, whose only internal user id was revoked first.
    for home, fpr, uid in ((ROBH, ROB_FPR, "Rob Example <%s>" % ROB_OLD),
                           (quinn, quinn_fpr, "Quinn Example <quinn.old@example.com>")):
        home.gpg("--quick-revoke-uid", fpr, uid)
        with open(os.path.join(home.path, "openpgp-revocs.d", fpr + ".rev"), "rb") as f:
            home.import_keys(f.read().replace(b":-----BEGIN PGP", b"-----BEGIN PGP"))
    FILES = {
        "old": write("erin-old.sec.asc", OLD.export_secret(OLD_FPR)),
        "old-pub": write("erin-old.pub.asc", OLD.export_public(OLD_FPR)),
        "new": write("erin-new.sec.asc", NEW.export_secret(NEW_FPR)),
        "rob": write("rob.sec.asc", ROBH.export_secret(ROB_FPR)),
        "pat": write("pat.sec.asc", pat.export_secret("pat@partner.example")),
        "quinn": write("quinn.sec.asc", quinn.export_secret(quinn_fpr)),
    }
    for home in (OLD, NEW, ROBH, pat, quinn, SENDER):
        home.kill()


def make_smime_identities():
    global CA, S_OLD, S_NEW, S_PAT, S_VIC, S_WES, P12
    t = lambda name: os.path.join(TMP, name)          # noqa: E731
    CA = smimetest.TestCA(t("ca"), key="rsa:2048")
    now = utcnow()
    old = dict(start=now - days(400), end=now - days(1))
    S_OLD = CA.issue("Erin Old", [ERIN, ERIN_HOME], basename="erin-old", **old)
    S_NEW = CA.issue("Erin New", [ERIN, ERIN_HOME], basename="erin-new")
    S_PAT = CA.issue("Pat Old", ["pat@partner.example"], basename="pat-old", **old)
    S_VIC = CA.issue("Vic Old", ["vic@example.com"], basename="vic-old", **old)
    S_WES = CA.issue("Wes Old", ["wes@partner.example"], basename="wes-old", **old)
    P12 = {name: ident.pkcs12(PASS) for name, ident in
           (("old", S_OLD), ("new", S_NEW), ("pat", S_PAT))}


def setUpModule():
    global TMP, PASSFILE, GW_OLD, GW_BOTH, GW_NEWFIRST
    smimetest.require_tools()
    sgtest.require_program("gpg")
    TMP = sgtest.tmpdir("sgdo")
    make_openpgp_keys()
    make_smime_identities()
    PASSFILE = write("pass", PASS + "\n")
    # The owner's old keys (and rob's revoked one) alone ...
    GW_OLD = new_gateway("gw-old")
    import_ok(GW_OLD, FILES["old"], FILES["rob"])
    import_ok(GW_OLD, P12["old"], "--passphrase-file", PASSFILE)
    # ... then the new ones too; and the new ones first, the old ones after.
    GW_BOTH = clone(GW_OLD, "gw-both")
    import_ok(GW_BOTH, FILES["new"])
    import_ok(GW_BOTH, P12["new"], "--passphrase-file", PASSFILE)
    GW_NEWFIRST = new_gateway("gw-newfirst")
    import_ok(GW_NEWFIRST, FILES["new"])
    import_ok(GW_NEWFIRST, P12["new"], "--passphrase-file", PASSFILE)
    import_ok(GW_NEWFIRST, FILES["old"])
    import_ok(GW_NEWFIRST, P12["old"], "--passphrase-file", PASSFILE)


def new_gateway(name, text=None):
    """A gateway in TMP/name with the policy, trusting the test CA."""
    gw = sgtest.policy_gateway(os.path.join(TMP, name), text or policy())
    gw.check_policy()
    import_ok(gw, "--trust-anchor", CA.cert)
    return gw


def clone(gw, name, text=None):
    return inboundtest.variant(gw, os.path.join(TMP, name), text or policy())


def keys_import(gw, *args):
    return gw.run("keys", "-c", gw.policy, "import", *args)


def import_ok(gw, *args):
    cp = keys_import(gw, *args)
    if cp.returncode != 0:
        raise RuntimeError("keys import %s failed: %s%s" % (args, cp.stdout, cp.stderr))
    return cp


def outbound(subject="Plans"):
    return sgtest.make_message(sgtest.std_headers(to=ERIN_HOME, subject=subject)
                               + [("Content-Type", "text/plain; charset=us-ascii")],
                               "Hello Erin, %s\r\n" % sgtest.MARKER)


class Base(unittest.TestCase, InboundCase):

    def assert_refused(self, gw, path, reason, *extra):
        listing = gw.list_keys().stdout
        before = smimetest.tree_snapshot(gw.keystore)
        cp = keys_import(gw, path, *extra)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(path, cp.stderr)
        self.assertIn(reason, cp.stderr)
        self.assertNotRegex(cp.stdout, r"(?m)^imported ")
        self.assertEqual(smimetest.tree_snapshot(gw.keystore), before,
                         "refused import changed the keystore")
        self.assertEqual(gw.list_keys().stdout, listing)
        return cp

    def pgp_list(self, gw, fpr):
        """{address: (state, usable)} of fpr's lines in `keys list`."""
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return {r["addr"]: (r["state"], r["usable"]) for r in pgp_rows(cp.stdout)
                if r["fpr"] == fpr}

    def smime_list(self, gw, ident):
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return {r["addr"]: (r["state"], r["usable"]) for r in smime_list_lines(cp.stdout)
                if r["fpr"] == ident.fpr}


# --------------------------------------------------------------------------
# OpenPGP


class OpenPGPImport(Base):

    def test_expired_secret_key_of_internal_user_imported_decrypt_only(self):
        gw = new_gateway("gw-imp1")
        cp = import_ok(gw, FILES["old"])
        rows = [(r["prefix"], r["addr"], r["state"], r["usable"]) for r in pgp_rows(cp.stdout)
                if r["fpr"] == OLD_FPR]
        self.assertEqual(sorted(rows), [("imported", ERIN, "expired", "decrypt"),
                                        ("imported", ERIN_HOME, "expired", "decrypt")],
                         cp.stdout)
        self.assertEqual(self.pgp_list(gw, OLD_FPR), {ERIN: ("expired", "decrypt"),
                                                      ERIN_HOME: ("expired", "decrypt")})
        self.assertIn("expires=2020-01-02 usable=decrypt", gw.list_keys().stdout)
        js = gw.run("keys", "-c", gw.policy, "list", "--json")
        self.assertIn('"address":"%s","method":"openpgp","fingerprint":"%s","state":"expired",'
                      '"expires":"2020-01-02","usable":"decrypt"' % (ERIN, OLD_FPR), js.stdout)
        # Importing it again changes nothing and says so.
        listing = gw.list_keys().stdout
        cp = import_ok(gw, FILES["old"])
        self.assertEqual({r["prefix"] for r in pgp_rows(cp.stdout)}, {"unchanged"}, cp.stdout)
        self.assertIn("1 key(s) read, 0 imported, 1 unchanged\n", cp.stdout)
        self.assertEqual(gw.list_keys().stdout, listing)

    def test_dry_run_agrees(self):
        gw = new_gateway("gw-imp2")
        cp = gw.run("keys", "-c", gw.policy, "import", "--dry-run", FILES["old"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("1 OpenPGP key(s) checked; nothing imported (dry run)", cp.stdout)
        self.assertEqual(self.pgp_list(gw, OLD_FPR), {})
        cp = gw.run("keys", "-c", gw.policy, "import", "--dry-run", FILES["pat"])
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("none of its user ids is an internal address", cp.stderr)

    def test_revoked_secret_key_imported_decrypt_only(self):
        gw = new_gateway("gw-imp3")
        import_ok(gw, FILES["rob"])
        # The revoked user id serves nothing.
        self.assertEqual(self.pgp_list(gw, ROB_FPR), {ROB: ("revoked", "decrypt"),
                                                      ROB_HOME: ("revoked", "decrypt"),
                                                      ROB_OLD: ("revoked", "-")})

    def test_public_part_alone_refused(self):
        gw = new_gateway("gw-ref1")
        self.assert_refused(gw, FILES["old-pub"], "key %s has expired, and the file holds no "
                            "secret key of it that decrypts" % OLD_FPR)
        # Nor is it taken next to the secret key already there.
        import_ok(gw, FILES["old"])
        self.assert_refused(gw, FILES["old-pub"], "holds no secret key of it that decrypts")

    def test_external_address_refused(self):
        gw = new_gateway("gw-ref2")
        self.assert_refused(gw, FILES["pat"], "has expired, and none of its user ids is an "
                            "internal address (an expired or revoked key is kept only to "
                            "decrypt for an internal address, with its secret key)")

    def test_revoked_internal_user_id_does_not_count(self):
        gw = new_gateway("gw-ref3")
        self.assert_refused(gw, FILES["quinn"],
                            "is revoked, and none of its user ids is an internal address")

    def test_internal_is_the_policys(self):
        # The same key for a gateway whose internal domain is another one.
        gw = new_gateway("gw-ref4", policy().replace("internal_domains: [example.com]",
                                                     "internal_domains: [example.org]"))
        self.assert_refused(gw, FILES["old"], "none of its user ids is an internal address")


class OpenPGPUse(Base):
    """GW_OLD: erin's expired key and rob's revoked key, nothing else."""

    def test_old_mail_decrypts_for_its_owner(self):
        self.assert_decrypted(GW_OLD, pgp_mime_message(MAIL["old"]), [ERIN], ENTITY,
                              "yes; method=openpgp; integrity=mdc")

    def test_revoked_key_decrypts_for_its_user_ids(self):
        for name in ("rob", "rob-hidden"):
            with self.subTest(name):
                self.assert_decrypted(GW_OLD, pgp_mime_message(MAIL[name]), [ROB], ENTITY,
                                      "yes; method=openpgp; integrity=mdc")

    def test_revoked_user_id_never_decrypts(self):
        # With hidden recipients every secret key the address has is tried:
        # the key found by the revoked user id must not be one of them.
        for name in ("rob", "rob-hidden"):
            with self.subTest(name):
                msg = pgp_mime_message(MAIL[name])
                self.assert_passthrough(GW_OLD, msg, [ROB_OLD], "no; reason=not-for-recipient",
                                        marker=PLAIN)

    def test_another_user_never_decrypts(self):
        msg = pgp_mime_message(MAIL["old"])
        for rcpts in ([BOB], [ERIN, BOB], [ROB]):
            with self.subTest(rcpts=rcpts):
                self.assert_passthrough(GW_OLD, msg, rcpts, "no; reason=not-for-recipient",
                                        marker=PLAIN)

    def test_deactivated_owner_never_decrypts(self):
        gw = clone(GW_OLD, "gw-deact")
        cp = gw.run("keys", "-c", gw.policy, "deactivate", ERIN)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        msg = pgp_mime_message(MAIL["old"])
        self.assert_passthrough(gw, msg, [ERIN], "no; reason=deactivated",
                                marker=PLAIN)

    def test_never_encrypted_to(self):
        msg = outbound()
        rc, out, err = GW_OLD.process(msg, ALICE, [ERIN_HOME])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, msg, "mail to the expired key's address was changed")
        self.assertEqual(sgtest.stderr_field(err, "key"), [])
        self.assertEqual(smimetest.explain_class(GW_OLD, ERIN_HOME),
                         "plain (openpgp: no usable OpenPGP key (expired, revoked or cannot "
                         "encrypt); smime: certificate expired)")
        rc, out, err = GW_OLD.process(outbound("[secure] Plans"), ALICE, [ERIN_HOME])
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertIn('550 5.7.1 encryption required by rule "secure"; no usable key for: %s'
                      % ERIN_HOME, err)

    def test_never_signs(self):
        msg = sgtest.make_message(sgtest.std_headers(sender=ERIN, to=SIGNED)
                                  + [("Content-Type", "text/plain")], "hello\r\n")
        rc, out, err = GW_OLD.process(msg, ERIN, [SIGNED], client_ip=None,
                                      extra_args=["--auth", "erin"])
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertIn('550 5.7.1 signing required by rule "signed"', err)


class OpenPGPWithActiveKey(Base):
    """The owner's active key next to the expired one, imported after it
    (GW_BOTH) or before it (GW_NEWFIRST)."""

    GWS = ("after", "before")

    def gateway(self, which):
        return GW_BOTH if which == "after" else GW_NEWFIRST

    def test_listed(self):
        for which in self.GWS:
            with self.subTest(which):
                gw = self.gateway(which)
                self.assertEqual(self.pgp_list(gw, OLD_FPR)[ERIN], ("expired", "decrypt"))
                self.assertEqual(self.pgp_list(gw, NEW_FPR)[ERIN],
                                 ("active", "encrypt,decrypt,sign"))

    def test_encrypted_to_the_active_key_only(self):
        new_ids = subkey_ids(NEW, NEW_FPR)
        self.assertEqual(len(subkey_ids(OLD, OLD_FPR)), 1)
        self.assertFalse(set(new_ids) & set(subkey_ids(OLD, OLD_FPR)))
        for which in self.GWS:
            with self.subTest(which):
                msg = outbound("[secure] Plans")
                rc, out, err = self.gateway(which).process(msg, ALICE, [ERIN_HOME])
                self.assertEqual(rc, 0, err)
                self.assertEqual(sgtest.stderr_field(err, "key"), [NEW_FPR], err)
                _control, armored = sgtest.pgp_mime_parts(out)
                self.assertEqual(sgtest.pkesk_keyids(SENDER.list_packets(armored)), new_ids)
                sgtest.assert_decrypts_to_original(self, NEW, msg, out)

    def test_signed_with_the_active_key(self):
        verifier = sgtest.GpgHome(os.path.join(TMP, "verifier"))
        verifier.import_keys(NEW.export_public(NEW_FPR))
        verifier.import_keys(OLD.export_public(OLD_FPR))
        scratch = signtest.Scratch(os.path.join(TMP, "scratch"))
        for which in self.GWS:
            with self.subTest(which):
                msg = sgtest.make_message(sgtest.std_headers(sender=ERIN, to=SIGNED)
                                          + [("Content-Type", "text/plain")], "hello\r\n")
                rc, out, err = self.gateway(which).process(msg, ERIN, [SIGNED], client_ip=None,
                                                           extra_args=["--auth", "erin"])
                self.assertEqual(rc, 0, err)
                signtest.assert_pgp_verifies(self, scratch, out, verifier, NEW_FPR)
        verifier.kill()

    def test_both_decrypt(self):
        for which in self.GWS:
            for name in ("old", "new"):
                with self.subTest(which=which, mail=name):
                    self.assert_decrypted(self.gateway(which), pgp_mime_message(MAIL[name]),
                                          [ERIN], ENTITY, "yes; method=openpgp; integrity=mdc")


# --------------------------------------------------------------------------
# S/MIME


class SmimeImport(Base):

    def test_expired_certificate_with_key_imported_decrypt_only(self):
        gw = new_gateway("gw-simp1")
        cp = import_ok(gw, P12["old"], "--passphrase-file", PASSFILE)
        rows = [(r["prefix"], r["addr"], r["state"], r["usable"], r["reason"])
                for r in smime_list_lines(cp.stdout) if r["fpr"] == S_OLD.fpr]
        self.assertEqual(sorted(rows),
                         [("imported", ERIN, "expired", "decrypt", "certificate expired"),
                          ("imported", ERIN_HOME, "expired", "decrypt", "certificate expired")])
        self.assertEqual(self.smime_list(gw, S_OLD), {ERIN: ("expired", "decrypt"),
                                                      ERIN_HOME: ("expired", "decrypt")})
        # Again: unchanged, byte for byte.
        before = smimetest.tree_snapshot(gw.keystore)
        cp = import_ok(gw, P12["old"], "--passphrase-file", PASSFILE)
        self.assertEqual({r["prefix"] for r in smime_list_lines(cp.stdout)}, {"unchanged"})
        self.assertIn("0 certificate(s) imported, 1 unchanged", cp.stdout)
        self.assertIn("0 private key(s) imported, 1 unchanged", cp.stdout)
        self.assertEqual(smimetest.tree_snapshot(gw.keystore), before)

    def test_certificate_and_key_as_pem(self):
        gw = new_gateway("gw-simp2")
        both = smimetest.pem_bundle(os.path.join(TMP, "erin-old-both.pem"), S_OLD.cert,
                                    S_OLD.key)
        import_ok(gw, both)
        self.assertEqual(self.smime_list(gw, S_OLD)[ERIN], ("expired", "decrypt"))

    def test_certificate_alone_refused(self):
        gw = new_gateway("gw-sref1")
        self.assert_refused(gw, S_OLD.cert, 'certificate has expired (subject "CN=Erin Old"), '
                            'and the file holds no private key for it (an expired certificate '
                            'is kept only to decrypt for an internal address, with its private '
                            'key); nothing imported')

    def test_external_address_refused(self):
        gw = new_gateway("gw-sref2")
        self.assert_refused(gw, P12["pat"], 'certificate has expired (subject "CN=Pat Old"), '
                            'and none of its addresses is internal', "--passphrase-file",
                            PASSFILE)

    def test_never_a_trust_anchor(self):
        gw = new_gateway("gw-sref3")
        self.assert_refused(gw, P12["old"], 'certificate has expired (subject "CN=Erin Old"); '
                            'nothing imported', "--passphrase-file", PASSFILE, "--trust-anchor")

    def test_key_for_expired_certificate_of_the_store(self):
        # As time leaves them: certificates imported while valid.
        gw = new_gateway("gw-sref4")
        smimetest.place_certs(gw.keystore, S_VIC.cert, S_WES.cert)
        self.assert_refused(gw, S_WES.key, 'certificate has expired (subject "CN=Wes Old"), '
                            'and none of its addresses is internal (an expired certificate is '
                            'kept only to decrypt for an internal address, with its private '
                            'key); nothing imported')
        import_ok(gw, S_VIC.key)
        self.assertEqual(self.smime_list(gw, S_VIC), {"vic@example.com": ("expired", "decrypt")})


class SmimeUse(Base):

    @classmethod
    def setUpClass(cls):
        cls.old_only = clone(GW_OLD, "gw-smime-old", policy(methods="smime"))
        cls.both = clone(GW_BOTH, "gw-smime-both", policy(methods="smime"))
        cls.old_der = cms_encrypt(ENTITY, [S_OLD.cert])
        rc, plain, err = inboundtest.cms_decrypt(cls.old_der, S_OLD)
        if (rc, plain) != (0, ENTITY):
            raise RuntimeError("openssl cannot decrypt its own message: %s" % err)
        cls.new_der = cms_encrypt(ENTITY, [S_NEW.cert])

    def test_old_mail_decrypts_for_its_owner(self):
        for gw in (self.old_only, self.both):
            with self.subTest(gw=gw.dir):
                self.assert_decrypted(gw, smime_message(self.old_der), [ERIN], ENTITY,
                                      "yes; method=smime; integrity=aead")

    def test_another_user_never_decrypts(self):
        msg = smime_message(self.old_der)
        self.assert_passthrough(self.old_only, msg, [BOB], "no; reason=not-for-recipient",
                                marker=PLAIN)

    def test_never_encrypted_to(self):
        msg = outbound()
        rc, out, err = self.old_only.process(msg, ALICE, [ERIN_HOME])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, msg)
        rc, out, err = self.old_only.process(outbound("[secure] Plans"), ALICE, [ERIN_HOME])
        self.assertEqual(rc, 2, err)
        self.assertIn('550 5.7.1 encryption required by rule "secure"; no usable key for: %s'
                      % ERIN_HOME, err)

    def test_never_signs(self):
        msg = sgtest.make_message(sgtest.std_headers(sender=ERIN, to=SIGNED)
                                  + [("Content-Type", "text/plain")], "hello\r\n")
        rc, out, err = self.old_only.process(msg, ERIN, [SIGNED], client_ip=None,
                                             extra_args=["--auth", "erin"])
        self.assertEqual(rc, 2, err)
        self.assertIn('550 5.7.1 signing required by rule "signed"', err)

    def test_active_certificate_serves_and_both_decrypt(self):
        msg = outbound()
        rc, out, err = self.both.process(msg, ALICE, [ERIN_HOME])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.stderr_field(err, "key"), [S_NEW.fpr], err)
        der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
        smimetest.assert_openssl_decrypts(self, der, S_NEW, msg)
        self.assertEqual(len(smimetest.cms_recipient_infos(smimetest.cms_print(der))), 1)
        self.assert_decrypted(self.both, smime_message(self.new_der), [ERIN], ENTITY,
                              "yes; method=smime; integrity=aead")
        self.assertEqual(self.smime_list(self.both, S_NEW)[ERIN],
                         ("active", "encrypt,decrypt,sign"))
        self.assertEqual(self.smime_list(self.both, S_OLD)[ERIN], ("expired", "decrypt"))


if __name__ == "__main__":
    unittest.main()
