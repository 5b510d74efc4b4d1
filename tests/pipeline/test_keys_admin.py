"""Key administration: `sealgate keys list|export|remove|deactivate|reactivate`.

Every key and certificate is made by the real tools (gpg, `openssl ca`) and
every exported or processed result is checked with them:

  - list: one line per identity (address, method, fingerprint, state,
    expiry, usability), the same data as --json; --expiring N lists only
    active identities expiring within N days and exits 1 when there is one;
  - export: public material only, unless --secret; gpg / openssl read it
    back and it is the same key (fingerprint);
  - remove: keys, certificates and private keys go, encryption to the
    address stops;
  - deactivate / reactivate: no signing as and no decrypting for a
    deactivated address, both restored afterwards;
  - a revocation certificate makes the key `revoked` and stops encryption.
"""

import datetime
import json
import os
import re
import shutil
import unittest

import inboundtest
import sgtest
import smimetest
from inboundtest import InboundCase, new_marker, outer_headers, pgp_mime_message, text_entity

ALICE = sgtest.SENDER               # internal: OpenPGP key pair in the gateway
CAROL = sgtest.CAROL                # external: OpenPGP key, never expires
DAVE = sgtest.DAVE                  # external: OpenPGP key, expires in 10 days
ERIN = sgtest.ERIN                  # external: S/MIME certificate, 20 days
GONE = sgtest.XPART                 # external: OpenPGP key that gets revoked
SIGNED = "signed@other.example"     # the sign rule's recipient

LINE_RE = re.compile(r"^(\S+)\s+(openpgp|smime)\s+([0-9A-F]{40,64})\s+(\S+)\s+"
                     r"expires=(\d{4}-\d\d-\d\d|never)\s+usable=(\S*)\s*$")

POLICY = """\
version: 1
gateway:
  keystore: "store"
  spool_dir: "spool"
  trusted_networks: [127.0.0.0/8]
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp, smime] }
  rules:
    - name: must-sign
      when: { recipient: [%s] }
      action: sign
      methods: [openpgp]
      on_missing_key: reject
inbound: { decrypt: true, verify: true }
""" % SIGNED

FX = {}


def setUpModule():
    sgtest.require_binary()
    sgtest.require_program("gpg")
    smimetest.require_tools()
    tmp = sgtest.tmpdir("sgka")
    FX["tmp"] = tmp
    homes = {}
    for addr, name, expiry in ((ALICE, "Alice Example", "never"),
                               (CAROL, "Carol Partner", "never"),
                               (DAVE, "Dave Other", "10d"),
                               (GONE, "Gone Partner", "never")):
        home = sgtest.GpgHome(os.path.join(tmp, addr.split("@")[0]))
        home.gpg("--quick-gen-key", "%s <%s>" % (name, addr),
                 "future-default", "default", expiry)
        homes[addr] = home
    FX["homes"] = homes
    FX["fpr"] = {a: h.fingerprint(a) for a, h in homes.items()}
    FX["pub"] = {a: sgtest.export_public_key(tmp, h, a) for a, h in homes.items()}
    sec = os.path.join(tmp, "alice.sec.asc")
    with open(sec, "wb") as f:
        f.write(homes[ALICE].export_secret(ALICE))
    FX["alice_sec"] = sec
    rev = os.path.join(homes[GONE].path, "openpgp-revocs.d", FX["fpr"][GONE] + ".rev")
    text = smimetest.read_file(rev)
    FX["gone_rev"] = smimetest.write_file(
        os.path.join(tmp, "gone.rev.asc"),
        text.replace(b":-----BEGIN PGP", b"-----BEGIN PGP"))
    # carol's home encrypts the inbound test messages to alice
    homes[CAROL].import_keys(homes[ALICE].export_public(ALICE))
    ca = smimetest.TestCA(os.path.join(tmp, "ca"))
    FX["ca"] = ca
    FX["erin"] = ca.issue("Erin Other", [ERIN],
                          end=smimetest.utcnow() + smimetest.days(20))
    FX["checker"] = sgtest.GpgHome(os.path.join(tmp, "chk"))


def tearDownModule():
    for h in list(FX.get("homes", {}).values()) + [FX.get("checker")]:
        if h is not None:
            h.kill()


_GW = [0]


def new_gateway(openpgp=(CAROL, DAVE), alice_secret=True, erin=True, erin_key=True):
    """A fresh gateway with POLICY and the named keys."""
    _GW[0] += 1
    gw = sgtest.policy_gateway(os.path.join(FX["tmp"], "gw%d" % _GW[0]), POLICY)
    gw.check_policy()
    files = [FX["pub"][a] for a in openpgp]
    if alice_secret:
        files.append(FX["alice_sec"])
    if erin:
        cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", FX["ca"].cert)
        if cp.returncode != 0:
            raise RuntimeError("trust anchor import failed: %s%s" % (cp.stdout, cp.stderr))
        files.append(FX["erin"].cert)
        if erin_key:
            files.append(FX["erin"].key)
    if files:
        gw.import_keys_checked(*files)
    return gw


def keys(gw, *args):
    return gw.run("keys", "-c", gw.policy, *args)


def list_rows(text):
    """Parsed lines of `keys list`: [(addr, method, fpr, state, expires, usable)]."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = LINE_RE.match(line)
        if not m:
            raise AssertionError("unexpected `keys list` line: %r" % line)
        rows.append(m.groups())
    return rows


def rows_for(rows, addr):
    return [r for r in rows if r[0].lower() == addr.lower()]


def plain_msg(to, marker):
    h = sgtest.std_headers(to="<%s>" % to, subject="Figures")
    h += [("Content-Type", "text/plain; charset=us-ascii"),
          ("Content-Transfer-Encoding", "7bit")]
    return sgtest.make_message(h, "Hello,\r\n%s\r\nAlice\r\n" % marker)


def top_type(msg):
    vals = sgtest.field_values(msg, "Content-Type")
    return sgtest.parse_content_type(vals[0])[0] if vals else None


class KeysAdmin(unittest.TestCase, InboundCase):

    maxDiff = None

    # -- helpers ---------------------------------------------------------

    def assert_encrypted_to(self, gw, rcpt, home):
        marker = new_marker()
        msg = plain_msg(rcpt, marker)
        rc, out, err = gw.process(msg, ALICE, [rcpt])
        self.assertEqual(rc, 0, err)
        self.assertIsNotNone(out, err)
        self.assertEqual(top_type(out), "multipart/encrypted", err)
        self.assertNotIn(marker.encode(), out)
        sgtest.assert_decrypts_to_original(self, home, msg, out)

    def assert_sent_plain(self, gw, rcpt):
        marker = new_marker()
        msg = plain_msg(rcpt, marker)
        rc, out, err = gw.process(msg, ALICE, [rcpt])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, err)
        self.assertNotEqual(top_type(out), "multipart/encrypted", err)
        self.assertNotIn(b"BEGIN PGP MESSAGE", out)
        self.assertIn(marker.encode(), out)

    def show_keys_fprs(self, data):
        cp = FX["checker"].gpg("--with-colons", "--show-keys", input_bytes=data)
        fprs, prev = [], None
        for line in cp.stdout.decode().splitlines():
            f = line.split(":")
            if f[0] == "fpr" and prev in ("pub", "sec"):
                fprs.append(f[9])
            prev = f[0]
        return fprs

    # -- list --------------------------------------------------------------

    def test_list_lines_and_json_agree(self):
        gw = new_gateway()
        cp = keys(gw, "list")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = list_rows(cp.stdout)
        today = datetime.datetime.now(datetime.timezone.utc).date()

        def close_to(date_text, when):
            d = datetime.date.fromisoformat(date_text)
            return abs((d - when).days) <= 1

        (carol,) = [r for r in rows_for(rows, CAROL)]
        self.assertEqual(carol[1:5], ("openpgp", FX["fpr"][CAROL], "active", "never"))
        (dave,) = rows_for(rows, DAVE)
        self.assertEqual(dave[1:4], ("openpgp", FX["fpr"][DAVE], "active"))
        self.assertTrue(close_to(dave[4], today + datetime.timedelta(days=10)), dave)
        (alice,) = rows_for(rows, ALICE)
        self.assertEqual(alice[1:5], ("openpgp", FX["fpr"][ALICE], "active", "never"))
        (erin,) = rows_for(rows, ERIN)
        self.assertEqual(erin[1:4], ("smime", FX["erin"].fpr, "active"))
        self.assertTrue(close_to(erin[4], FX["erin"].not_after.date()), erin)

        cj = keys(gw, "list", "--json")
        self.assertEqual(cj.returncode, 0, cj.stderr)
        data = json.loads(cj.stdout)
        self.assertIsInstance(data, list)
        for obj in data:
            self.assertTrue({"address", "method", "fingerprint", "state", "expires",
                             "usable"} <= set(obj), obj)
        as_rows = sorted((o["address"], o["method"], o["fingerprint"], o["state"],
                          o["expires"] if o["expires"] is not None else "never",
                          o["usable"] if isinstance(o["usable"], str)
                          else ",".join(o["usable"])) for o in data)
        self.assertEqual(as_rows, sorted(rows))
        by_addr = {o["address"]: o for o in data}
        self.assertIsNone(by_addr[CAROL]["expires"])
        self.assertEqual(by_addr[DAVE]["expires"], dave[4])

    def test_list_does_not_ask_the_agent(self):
        """Which keys have their secret part here is read from the keystore,
        not from whatever gpg-agent answers on its socket: with no agent able
        to start (a non-empty directory where its socket goes), alice still
        lists as able to decrypt and sign, carol as encrypt only."""
        gw = new_gateway()
        home = os.path.join(gw.keystore, "openpgp")
        sgtest.stop_agent(home)
        blocker = sgtest.agent_socket(home)
        os.mkdir(blocker)
        with open(os.path.join(blocker, "keep"), "w"):
            pass
        try:
            gpg = sgtest.run(["gpg", "--homedir", home, "--batch",
                              "--with-colons", "--list-secret-keys"])
            self.assertNotIn(b"\nsec:", b"\n" + gpg.stdout,
                             "an agent answered: the test proves nothing")
            cp = keys(gw, "list")
        finally:
            shutil.rmtree(blocker)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows = list_rows(cp.stdout)
        (alice,) = rows_for(rows, ALICE)
        self.assertEqual(alice[5], "encrypt,decrypt,sign", cp.stdout)
        (carol,) = rows_for(rows, CAROL)
        self.assertEqual(carol[5], "encrypt", cp.stdout)

    def test_list_expiring(self):
        gw = new_gateway()
        cp = keys(gw, "list", "--expiring", "15")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        rows = list_rows(cp.stdout)
        self.assertEqual([(r[0], r[2]) for r in rows], [(DAVE, FX["fpr"][DAVE])])

        cp = keys(gw, "list", "--expiring", "25")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertEqual(sorted(r[0] for r in list_rows(cp.stdout)), sorted([DAVE, ERIN]))

        cp = keys(gw, "list", "--expiring", "5")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(list_rows(cp.stdout), [])

        # keys that never expire are never listed, however far ahead
        cp = keys(gw, "list", "--expiring", "36500")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        listed = [r[0] for r in list_rows(cp.stdout)]
        self.assertNotIn(CAROL, listed)
        self.assertNotIn(ALICE, listed)
        self.assertIn(DAVE, listed)

        # only active identities count
        d = keys(gw, "deactivate", DAVE)
        self.assertEqual(d.returncode, 0, d.stderr)
        cp = keys(gw, "list", "--expiring", "15")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(list_rows(cp.stdout), [])

    def test_list_expiring_bad_value(self):
        gw = new_gateway(openpgp=(DAVE,), alice_secret=False, erin=False)
        for bad in ("abc", "10x", ""):
            cp = keys(gw, "list", "--expiring", bad)
            self.assertEqual(cp.returncode, 1, "--expiring %r: %s%s" % (bad, cp.stdout, cp.stderr))
            self.assertTrue(cp.stderr.strip(), "--expiring %r: no message" % bad)
            self.assertNotIn(DAVE, cp.stdout)

    # -- export ------------------------------------------------------------

    def test_export_openpgp_public(self):
        gw = new_gateway()
        for name in (CAROL, FX["fpr"][CAROL]):
            cp = keys(gw, "export", name)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertIn("-----BEGIN PGP PUBLIC KEY BLOCK-----", cp.stdout)
            self.assertNotIn("PRIVATE", cp.stdout)
            self.assertEqual(self.show_keys_fprs(cp.stdout.encode()), [FX["fpr"][CAROL]])
        # alice's secret key is in the keystore: still only public material
        cp = keys(gw, "export", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn("PRIVATE", cp.stdout)
        self.assertEqual(self.show_keys_fprs(cp.stdout.encode()), [FX["fpr"][ALICE]])

    def test_export_openpgp_secret(self):
        gw = new_gateway()
        cp = keys(gw, "export", ALICE, "--secret")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("-----BEGIN PGP PRIVATE KEY BLOCK-----", cp.stdout)
        home = sgtest.GpgHome(os.path.join(FX["tmp"], "imp%d" % _GW[0]))
        try:
            home.import_keys(cp.stdout.encode())
            out = home.gpg("--with-colons", "--list-secret-keys").stdout.decode()
            self.assertIn("fpr:::::::::%s:" % FX["fpr"][ALICE], out)
            self.assertRegex(out, r"(?m)^sec:")
            # the imported secret key works: it decrypts mail to alice
            armored = FX["homes"][CAROL].encrypt(b"secret words\n", [ALICE])
            rc, plain, err = home.decrypt(armored)
            self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
            self.assertEqual(plain, b"secret words\n")
        finally:
            home.kill()

    def test_export_smime(self):
        gw = new_gateway()
        erin = FX["erin"]
        cp = keys(gw, "export", ERIN)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("-----BEGIN CERTIFICATE-----", cp.stdout)
        self.assertNotIn("PRIVATE", cp.stdout)
        pem = smimetest.write_file(os.path.join(gw.dir, "erin-export.pem"), cp.stdout)
        self.assertEqual(smimetest.cert_fingerprint(pem), erin.fpr)
        # by fingerprint
        cp = keys(gw, "export", erin.fpr)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("-----BEGIN CERTIFICATE-----", cp.stdout)
        self.assertNotIn("PRIVATE", cp.stdout)

        cp = keys(gw, "export", ERIN, "--secret")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("-----BEGIN CERTIFICATE-----", cp.stdout)
        self.assertRegex(cp.stdout, r"-----BEGIN (RSA |ENCRYPTED )?PRIVATE KEY-----")
        both = smimetest.write_file(os.path.join(gw.dir, "erin-secret.pem"), cp.stdout)
        key_pub = smimetest.openssl("pkey", "-in", both, "-pubout").stdout
        cert_pub = smimetest.openssl("x509", "-in", both, "-noout", "-pubkey").stdout
        self.assertTrue(key_pub.strip(), "openssl read no private key")
        self.assertEqual(key_pub, cert_pub, "exported private key does not match the certificate")

    def test_export_unknown(self):
        gw = new_gateway()
        for name in ("nobody@other.example", "0123456789ABCDEF0123456789ABCDEF01234567"):
            cp = keys(gw, "export", name)
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertIn("nothing in the keystore for %s" % name, cp.stderr)
            self.assertEqual(cp.stdout, "")

    # -- remove ------------------------------------------------------------

    def test_remove(self):
        gw = new_gateway()
        self.assert_encrypted_to(gw, CAROL, FX["homes"][CAROL])

        cp = keys(gw, "remove", CAROL)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("%s: 1 OpenPGP key(s) and 0 certificate(s) removed" % CAROL, cp.stdout)
        rows = list_rows(keys(gw, "list").stdout)
        self.assertEqual(rows_for(rows, CAROL), [])
        self.assertEqual([r[0] for r in rows if r[2] == FX["fpr"][CAROL]], [])
        self.assert_sent_plain(gw, CAROL)
        cp = keys(gw, "export", CAROL)
        self.assertEqual(cp.returncode, 1, cp.stdout)

        # a certificate and its private key, by address
        cp = keys(gw, "remove", ERIN)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("%s: 0 OpenPGP key(s) and 1 certificate(s) removed" % ERIN, cp.stdout)
        self.assertEqual(rows_for(list_rows(keys(gw, "list").stdout), ERIN), [])
        self.assertEqual(keys(gw, "export", ERIN, "--secret").returncode, 1)
        self.assert_sent_plain(gw, ERIN)

        # a key pair, public and secret, by fingerprint
        cp = keys(gw, "remove", FX["fpr"][ALICE])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, r": 1 OpenPGP key\(s\) and 0 certificate\(s\) removed")
        rows = list_rows(keys(gw, "list").stdout)
        self.assertEqual(rows_for(rows, ALICE), [])
        self.assertEqual(keys(gw, "export", ALICE, "--secret").returncode, 1)
        self.assertEqual(keys(gw, "export", FX["fpr"][ALICE]).returncode, 1)

        # what was not named stays
        self.assertEqual(len(rows_for(rows, DAVE)), 1)
        self.assert_encrypted_to(gw, DAVE, FX["homes"][DAVE])

        # nothing left to remove
        for name in (CAROL, "nobody@other.example"):
            cp = keys(gw, "remove", name)
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertTrue(cp.stderr.strip())

    # -- deactivate / reactivate ------------------------------------------

    def sign_as_alice(self, gw):
        """alice, authenticated as herself, sends mail a rule must sign."""
        msg = plain_msg(SIGNED, new_marker())
        return gw.process(msg, ALICE, [SIGNED], extra_args=["--auth", "alice"])

    def test_deactivate_stops_signing(self):
        gw = new_gateway(openpgp=(), erin=False)
        rc, out, err = self.sign_as_alice(gw)
        self.assertEqual(rc, 0, err)
        self.assertEqual(top_type(out), "multipart/signed", err)

        cp = keys(gw, "deactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn("already", cp.stdout)
        (row,) = rows_for(list_rows(keys(gw, "list").stdout), ALICE)
        self.assertEqual(row[3], "deactivated")
        cj = json.loads(keys(gw, "list", "--json").stdout)
        self.assertEqual([o["state"] for o in cj if o["address"] == ALICE], ["deactivated"])

        rc, out, err = self.sign_as_alice(gw)
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertRegex(err, sgtest.SMTP_REJECT_RE)
        self.assertRegex(err, r"(?m)^550 5\.7\.\d+ ")
        self.assertIn("must-sign", err)

        cp = keys(gw, "deactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("already", cp.stdout + cp.stderr)

        # the keys are kept: export still works
        self.assertEqual(keys(gw, "export", ALICE, "--secret").returncode, 0)

        cp = keys(gw, "reactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn("already", cp.stdout)
        (row,) = rows_for(list_rows(keys(gw, "list").stdout), ALICE)
        self.assertEqual(row[3], "active")
        rc, out, err = self.sign_as_alice(gw)
        self.assertEqual(rc, 0, err)
        self.assertEqual(top_type(out), "multipart/signed", err)

        cp = keys(gw, "reactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("already", cp.stdout + cp.stderr)

        # Any form of the address names the same identity (canonical form),
        # and any form of MAIL FROM is stopped.
        cp = keys(gw, "deactivate", '"Alice"@EXAMPLE.com.')
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout.split(":")[0], "Alice@example.com")
        for sender in (ALICE, "alice@example.com.", "<@r.example:alice@Example.COM>"):
            with self.subTest(sender=sender):
                rc, out, err = gw.process(plain_msg(SIGNED, new_marker()), sender, [SIGNED],
                                          extra_args=["--auth", "alice"])
                self.assertEqual(rc, 2, err)
        cp = keys(gw, "reactivate", "alice@example.com.")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn("already", cp.stdout)
        self.assertEqual(self.sign_as_alice(gw)[0], 0)

    def test_deactivate_stops_decrypting(self):
        gw = new_gateway(openpgp=(), erin=False)
        marker = new_marker()
        entity = text_entity(marker)
        armored = FX["homes"][CAROL].encrypt(entity, [ALICE])
        msg = pgp_mime_message(armored, headers=outer_headers())
        self.assert_decrypted(gw, msg, [ALICE], entity, "yes; method=openpgp; integrity=mdc")

        cp = keys(gw, "deactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assert_passthrough(gw, msg, [ALICE], "no; reason=deactivated", marker=marker)

        cp = keys(gw, "reactivate", ALICE)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assert_decrypted(gw, msg, [ALICE], entity, "yes; method=openpgp; integrity=mdc")

    def test_deactivate_bad_address(self):
        gw = new_gateway(openpgp=(), erin=False)
        for verb in ("deactivate", "reactivate"):
            for bad in ("bad", ""):
                cp = keys(gw, verb, bad)
                self.assertEqual(cp.returncode, 1, "%s %r: %s%s" % (verb, bad, cp.stdout,
                                                                   cp.stderr))
                self.assertTrue(cp.stderr.strip())
        (row,) = rows_for(list_rows(keys(gw, "list").stdout), ALICE)
        self.assertEqual(row[3], "active")

    def test_deactivate_malformed_address(self):
        # neither is a mail address: refused like any other bad address
        # (alice's key pair is in the keystore, so an empty keystore is not
        # what makes the command fail)
        gw = new_gateway(openpgp=(), erin=False)
        for verb in ("deactivate", "reactivate"):
            for bad in ("a@b@c", "@example.com"):
                with self.subTest(verb=verb, address=bad):
                    cp = keys(gw, verb, bad)
                    self.assertEqual(cp.returncode, 1, "%s %r: %s%s"
                                     % (verb, bad, cp.stdout, cp.stderr))
                    self.assertTrue(cp.stderr.strip())
        (row,) = rows_for(list_rows(keys(gw, "list").stdout), ALICE)
        self.assertEqual(row[3], "active")

    # -- revocation --------------------------------------------------------

    def test_revocation_certificate(self):
        gw = new_gateway(openpgp=(GONE,), alice_secret=False, erin=False)
        self.assert_encrypted_to(gw, GONE, FX["homes"][GONE])
        cp = keys(gw, "import", FX["gone_rev"])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        (row,) = rows_for(list_rows(keys(gw, "list").stdout), GONE)
        self.assertEqual(row[2:4], (FX["fpr"][GONE], "revoked"))
        cj = json.loads(keys(gw, "list", "--json").stdout)
        self.assertEqual([o["state"] for o in cj if o["address"] == GONE], ["revoked"])
        self.assert_sent_plain(gw, GONE)
        # a revoked key is not "expiring"
        cp = keys(gw, "list", "--expiring", "36500")
        self.assertNotIn(GONE, cp.stdout)


if __name__ == "__main__":
    unittest.main()
