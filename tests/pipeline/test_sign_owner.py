"""Signing only for the authenticated owner of the address (DESIGN.md §4
rule 8), through `sealgate process --auth USER --client-ip IP` and
`sealgate policy explain`; every signature checked with gpg.

Keystore: OpenPGP secret keys of alice@, bob@ and shared@example.com,
carol@partner.example's public key (her secret key only in her own home).
frank@example.com has no key. Clients on 127.0.0.0/8 are trusted (outbound).
Rules: "must-sign" (recipient signed@other.example) signs, reject when it
cannot; "se-plain" (partner.example) signs and encrypts, send-plain.

Gateways:
  name  no sender_logins: a login owns the address equal to it or to its
        local part; no signing_networks;
  nets  the same with signing_networks [127.0.0.1/32];
  map   sender_logins "logins" (relative to the policy): alice@ -> alice,
        assistant; Shared@Example.COM. -> team1, team2, team3 (all on
        continuation lines); @example.com -> admin.

  a) bob, authenticated as bob, MAIL FROM alice: not signed as alice --
     "must-sign" refuses with 550 naming the sender and why; "se-plain"
     sends carol encrypted mail without a signature.
  b) login equal to the address, to its local part (any case, canonical
     forms of the sender) -> signed by alice's key; near misses and logins
     that are not one word are refused.
  c) trusted network without login: not signed; with signing_networks:
     signed, but only for the listed client.
  d) sender_logins: listed logins sign (continuation lines too), others do
     not; an address's own line wins over its @domain line; an address the
     file does not name is owned by nobody... except through @domain.
  e) policy explain says why the sender cannot sign.
  f) hostile sender_logins files: missing, a directory, bad syntax, huge
     line, huge file -> `policy check` reports each problem precisely, and
     `process` refuses to run.
"""

import json
import os
import re
import unittest

import signtest
import sgtest
from sgtest import MARKER, make_message, std_headers

ALICE = "alice@example.com"
BOB = "bob@example.com"
SHARED = "shared@example.com"
FRANK = "frank@example.com"
CAROL = "carol@partner.example"
SIGNED = "signed@other.example"

SIGN_STATUS = ("NEWSIG", "GOODSIG", "VALIDSIG", "BADSIG", "ERRSIG")

RULES = """\
    - name: must-sign
      when: { recipient: [signed@other.example] }
      action: sign
      on_missing_key: reject
    - name: se-plain
      when: { recipient_domain: partner.example }
      action: sign-encrypt
      on_missing_key: send-plain
"""

LOGINS = """\
# Owners of addresses (Postfix smtpd_sender_login_maps source format)
alice@example.com   alice, assistant

Shared@Example.COM.
    team1 team2,
	team3
@example.com        admin
"""


def policy(gateway_extra=""):
    return ("version: 1\n"
            "gateway:\n"
            "  keystore: \"../store\"\n"
            "  spool_dir: \"spool\"\n"
            "  trusted_networks: [127.0.0.0/8]\n"
            + gateway_extra +
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { action: encrypt-if-key, methods: [openpgp] }\n"
            "  rules:\n" + RULES)


POLICIES = {
    "name": policy(),
    "nets": policy("  signing_networks: [127.0.0.1/32]\n"),
    "map": policy("  sender_logins: logins\n"),
}


class SignOwner(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        tmp = cls.tmp = sgtest.tmpdir("sgown")
        cls.scratch = signtest.Scratch(os.path.join(tmp, "chk"))
        signers = sgtest.GpgHome(os.path.join(tmp, "signers"))
        cls.fpr = {a: signers.gen_key("User", a) for a in (ALICE, BOB, SHARED)}
        cls.verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
        cls.carol = sgtest.GpgHome(os.path.join(tmp, "carol"))
        cls.carol.gen_key("Carol Partner", CAROL)
        files = []
        for a in (ALICE, BOB, SHARED):
            cls.verifier.import_keys(signers.export_public(a))
            cls.carol.import_keys(signers.export_public(a))
            files.append(signtest.write(os.path.join(tmp, a + ".sec.asc"),
                                        signers.export_secret(a)))
        signers.kill()
        files.append(sgtest.export_public_key(tmp, cls.carol, CAROL))
        cls.gw = sgtest.policy_gateways(
            tmp, POLICIES, files,
            prepare=lambda d: signtest.write(os.path.join(d, "logins"), LOGINS))

    @classmethod
    def tearDownClass(cls):
        cls.carol.kill()
        cls.verifier.kill()

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def msg(sender=ALICE, to=SIGNED):
        return make_message(std_headers(sender="Sender <%s>" % sender, to="<%s>" % to)
                            + [("Content-Type", "text/plain; charset=us-ascii")],
                            "Figures. %s\r\n" % MARKER)

    def process(self, gwname, sender, rcpt, auth=None, client_ip="127.0.0.1"):
        extra = ["--auth", auth] if auth is not None else []
        rc, out, err = self.gw[gwname].process(self.msg(sgtest_addr(sender), rcpt), sender,
                                               [rcpt], client_ip=client_ip,
                                               extra_args=extra)
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        return rc, out, err

    def assert_signed(self, gwname, sender, auth=None, client_ip="127.0.0.1",
                      signer=ALICE):
        rc, out, err = self.process(gwname, sender, SIGNED, auth, client_ip)
        self.assertEqual(rc, 0, "%s as %r: exit %d\n%s" % (sender, auth, rc, err))
        signtest.assert_pgp_verifies(self, self.scratch, sgtest.canon(out),
                                     self.verifier, self.fpr[signer])

    def assert_not_signed(self, gwname, sender, auth=None, client_ip="127.0.0.1",
                          why=None, named=ALICE):
        """must-sign refuses with 550 naming the sender (and why when given);
        nothing is written."""
        rc, out, err = self.process(gwname, sender, SIGNED, auth, client_ip)
        self.assertEqual(rc, 2, "%s as %r signed: exit %d\n%s" % (sender, auth, rc, err))
        self.assertIsNone(out)
        line = [ln for ln in err.splitlines() if ln.startswith("550 ")]
        self.assertEqual(len(line), 1, err)
        self.assertTrue(line[0].startswith(
            '550 5.7.1 signing required by rule "must-sign"; no usable signing key '
            'for: %s (sender <%s> may not sign: ' % (SIGNED, named)), err)
        if why is not None:
            self.assertIn(why, line[0])
        return line[0]

    # -- a) bob claims alice -------------------------------------------------

    def test_a_other_login_does_not_sign_as_alice(self):
        for gw in ("name", "nets", "map"):
            with self.subTest(policy=gw):
                self.assert_not_signed(gw, ALICE, "bob")
        self.assert_not_signed("name", ALICE, "bob",
                               why='login "bob" is neither the address nor its local part')
        # Bob signs as himself.
        self.assert_signed("name", BOB, "bob", signer=BOB)
        # sign-encrypt with send-plain: carol gets encrypted mail, unsigned.
        msg = self.msg(ALICE, CAROL)
        rc, out, err = self.gw["name"].process(msg, ALICE, [CAROL],
                                               extra_args=["--auth", "bob"])
        self.assertEqual(rc, 0, err)
        plain = sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        self.assertNotIn(b"multipart/signed", plain)
        _c, armored = sgtest.pgp_mime_parts(sgtest.canon(out))
        _rc, _p, text = self.carol.decrypt(armored)
        self.assertFalse([kw for kw, _a in signtest.status_lines(text) if kw in SIGN_STATUS],
                         "signed although bob does not own alice's address: %s" % text)
        # The same as alice herself: signed inside.
        rc, out, err = self.gw["name"].process(msg, ALICE, [CAROL],
                                               extra_args=["--auth", "alice"])
        self.assertEqual(rc, 0, err)
        _c, armored = sgtest.pgp_mime_parts(sgtest.canon(out))
        _rc, _p, text = self.carol.decrypt(armored)
        valid = signtest.status_args(text, "VALIDSIG")
        self.assertEqual([v[9].upper() for v in valid], [self.fpr[ALICE]], text)

    # -- b) login equal to the address or its local part --------------------

    def test_b_login_owns_address(self):
        for auth in ("alice", "Alice", "alice@example.com", "ALICE@Example.COM."):
            with self.subTest(auth=auth):
                self.assert_signed("name", ALICE, auth)
        for sender in ("alice@example.com.", '"alice"@EXAMPLE.com', "<@r.example:alice@example.com>"):
            with self.subTest(sender=sender):
                self.assert_signed("name", sender, "alice")
        for auth in ("alic", "alicex", "alice@example.co", "alice@example.com.evil.example",
                     "alice@other.example", "x.alice", "alice@example.com@evil.example"):
            with self.subTest(auth=auth):
                self.assert_not_signed("name", ALICE, auth)
        for auth in ("alice@example.com foo", "alice foo", "<alice@example.com>",
                     "alice,bob", "ali\x01ce", "alice\n", '"alice"@example.com'):
            with self.subTest(auth=auth):
                self.assert_not_signed("name", ALICE, auth,
                                       why="the SMTP AUTH login is not usable")

    # -- c) trusted network without login -----------------------------------

    def test_c_trusted_network_needs_signing_networks(self):
        self.assert_not_signed("name", ALICE, why="client 127.0.0.1 is not authenticated "
                               "(SMTP AUTH) and not in gateway.signing_networks")
        self.assert_signed("nets", ALICE)
        self.assert_not_signed("nets", ALICE, client_ip="127.0.0.2",
                               why="client 127.0.0.2 is not authenticated")
        self.assert_not_signed("map", ALICE)
        # Authenticated, a login decides even from a signing network.
        self.assert_not_signed("nets", ALICE, "bob")

    # -- d) sender_logins ----------------------------------------------------

    def test_d_sender_logins(self):
        for auth in ("alice", "assistant", "ASSISTANT"):
            with self.subTest(auth=auth):
                self.assert_signed("map", ALICE, auth)
        for auth in ("team1", "team2", "team3"):
            with self.subTest(auth=auth):
                self.assert_signed("map", SHARED, auth, signer=SHARED)
        # Without the map, "shared" would own it; with the map it does not.
        self.assert_signed("name", SHARED, "shared", signer=SHARED)
        self.assert_not_signed("map", SHARED, "shared", named=SHARED,
                               why="does not own the address in gateway.sender_logins")
        # alice's own line wins over @example.com.
        self.assert_not_signed("map", ALICE, "admin",
                               why='login "admin" does not own the address')
        self.assert_not_signed("map", ALICE, "bob")
        # frank: only the @example.com line; admin may, frank's key is missing.
        rc, out, err = self.process("map", FRANK, SIGNED, "admin")
        self.assertEqual(rc, 2, err)
        self.assertIn('no usable signing key for: %s\n' % SIGNED, err)
        self.assertNotIn("may not sign", err)
        self.assert_not_signed("map", FRANK, "frank", named=FRANK)

    # -- e) explain ----------------------------------------------------------

    def test_e_explain_says_why(self):
        gw = self.gw["name"]
        cp = gw.run("policy", "explain", "-c", gw.policy, "--from", ALICE, "--to", SIGNED,
                    "--client-ip", "127.0.0.1", "--auth", "bob")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn('  cannot sign: login "bob" is neither the address nor its local '
                      'part\n', cp.stdout)
        self.assertIn("  outcome: reject\n", cp.stdout)
        self.assertNotIn("signing key: ", cp.stdout)
        cp = gw.run("policy", "explain", "-c", gw.policy, "--from", ALICE, "--to", SIGNED,
                    "--client-ip", "127.0.0.1", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        (r,) = json.loads(cp.stdout)["recipients"]
        self.assertRegex(r["cannot_sign"], r"^client 127\.0\.0\.1 is not authenticated")
        cp = gw.run("policy", "explain", "-c", gw.policy, "--from", ALICE, "--to", SIGNED,
                    "--client-ip", "127.0.0.1", "--auth", "alice")
        self.assertIn("  signing key: %s\n" % self.fpr[ALICE], cp.stdout)
        self.assertNotIn("cannot sign", cp.stdout)

    # -- f) hostile sender_logins files --------------------------------------

    def check(self, logins_path, content=None):
        """`policy check` of the map policy with sender_logins naming
        logins_path (content written there unless None); (rc, stderr, policy)."""
        d = os.path.join(self.tmp, "chk-%d" % len(os.listdir(self.tmp)))
        os.makedirs(d)
        pol = os.path.join(d, "policy.yaml")
        with open(pol, "w") as f:
            f.write(policy("  sender_logins: %s\n" % logins_path))
        if content is not None:
            with open(os.path.join(d, logins_path), "wb") as f:
                f.write(content)
        cp = self.gw["map"].run("policy", "check", "-c", pol)
        self.assertNotEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        # The other commands refuse the same policy.
        rc = self.gw["map"].run("process", "-c", pol, "--from", ALICE, "--to", SIGNED,
                                "-i", "/dev/null", "-o", "/dev/null").returncode
        self.assertEqual(rc, 1)
        return cp.returncode, cp.stderr, pol, d

    def test_f_hostile_files(self):
        # policy(): sender_logins is on line 6, its value at column 18.
        _rc, err, pol, d = self.check("nothere")
        self.assertEqual(err.splitlines(), [
            '%s:6:18: "sender_logins": cannot open %s/nothere: No such file or directory'
            % (pol, d)], err)
        _rc, err, pol, d = self.check(".")
        self.assertEqual(err.splitlines(), [
            '%s:6:18: "sender_logins": %s/. is not a regular file' % (pol, d)], err)

        lines = [b"  orphan",
                 b"alice\talice",
                 b"bob@example.com",
                 b"carol@example.com bob@@x",
                 b"Dave@Example.com. dave",
                 b"dave@example.com dave2",
                 b"@bad..example admin",
                 b"erin@example.com er\x01in",
                 b"x" * 5000 + b"@example.com a",
                 b"# comment",
                 b"",
                 b"frank@example.com\xff frank",
                 b"gina@example.com gina\r",
                 b"hank@example.com",
                 b"  hank",
                 b"zed@example.com"]
        _rc, err, pol, d = self.check("bad", b"\n".join(lines) + b"\n")
        f = os.path.join(d, "bad")
        self.assertEqual(err.splitlines(), [
            "%s:1:1: continuation line without an entry before it" % f,
            '%s:2:1: "alice": expected an address or @domain' % f,
            '%s:3:16: no logins for "bob@example.com"' % f,
            '%s:4:19: invalid login "bob@@x"' % f,
            '%s:6:1: duplicate entry for "dave@example.com" (first on line 5)' % f,
            '%s:7:1: invalid domain "@bad..example": invalid domain' % f,
            "%s:8:20: control character 0x01" % f,
            "%s:9:4097: line longer than 4096 bytes" % f,
            "%s:12:1: not valid UTF-8" % f,
            '%s:16:16: no logins for "zed@example.com"' % f], err)

        # A file over 16 MiB (sparse) is not read.
        d2 = os.path.join(self.tmp, "huge")
        os.makedirs(d2)
        with open(os.path.join(d2, "huge"), "wb") as fh:
            fh.truncate(16 * 1024 * 1024 + 1)
        _rc, err, pol, d = self.check(os.path.join(d2, "huge"))
        self.assertEqual(err.splitlines(), [
            '%s:6:18: "sender_logins": %s/huge is larger than 16777216 bytes' % (pol, d2)],
            err)


def sgtest_addr(sender):
    """The plain address of an envelope form, for the From: field."""
    m = re.search(r'([A-Za-z0-9.]+)"?@([A-Za-z0-9.]+?)\.?>?$', sender)
    return ("%s@%s" % (m.group(1), m.group(2))).lower() if m else sender


if __name__ == "__main__":
    unittest.main()
