"""The keystore's generation file and snapshot builds that must fail.

  - every change through `sealgate keys` (import, remove, deactivate,
    reactivate) replaces the generation file with a higher number (before
    and after the change); a change
    that changes nothing (importing what is there, deactivating twice)
    leaves it alone where the command says so;
  - `sealgate process` and `policy explain` decide from a snapshot of the
    keystore: a keyring file gpg cannot read completely (garbage, cut
    short, a directory) or a certificate file that does not parse is an
    error (exit 1, naming it), never a keystore without those keys, which
    would send mail in clear to a partner whose key is there;
  - the envelope address is canonicalised: the recipient
    `<Carol@Partner.Example.>` finds carol@partner.example's key; but a
    key's own address is taken as written: a key whose user id is only
    `<carol@partner.example.>` (or quoted, or with a source route) is not
    carol's key, whatever it canonicalises to;
  - a `deactivated` file that cannot be read fails the snapshot (exit 1),
    never "nobody is deactivated".
"""

import os
import shutil
import unittest

import sgtest

CAROL = sgtest.CAROL

POLICY = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool", trusted_networks: [127.0.0.0/8] }
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp] }
"""

FX = {}


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def setUpModule():
    tmp = sgtest.tmpdir("sgks")
    carol = sgtest.GpgHome(os.path.join(tmp, "carol"))
    carol.gen_key("Carol Partner", CAROL)
    FX.update(tmp=tmp, carol=carol,
              carol_pub=sgtest.export_public_key(tmp, carol, CAROL))
    carol.kill()


class KeystoreSnapshot(unittest.TestCase):

    def setUp(self):
        path = os.path.join(FX["tmp"], self._testMethodName)
        self.gw = sgtest.policy_gateway(path, POLICY)
        self.gen = os.path.join(self.gw.keystore, "generation")

    def tearDown(self):
        sgtest.run(["gpgconf", "--homedir", os.path.join(self.gw.keystore, "openpgp"),
                    "--kill", "all"])

    def keys(self, *args, rc=0):
        cp = self.gw.run("keys", "-c", self.gw.policy, *args)
        self.assertEqual(cp.returncode, rc, cp.stdout + cp.stderr)
        return cp

    def generation(self):
        with open(self.gen) as f:
            return int(f.read())

    def explain(self, to=CAROL):
        return self.gw.run("policy", "explain", "-c", self.gw.policy,
                           "--from", sgtest.SENDER, "--to", to,
                           "--client-ip", "127.0.0.1")

    def test_every_change_bumps_the_generation(self):
        self.keys("import", FX["carol_pub"])
        first = self.generation()
        st = os.stat(self.gen)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        steps = [("deactivate", CAROL), ("reactivate", CAROL), ("remove", CAROL),
                 ("import", FX["carol_pub"])]
        last = first
        for step in steps:
            self.keys(*step)
            self.assertGreater(self.generation(), last, step)
            now = os.stat(self.gen)
            self.assertNotEqual((now.st_ino, now.st_mtime_ns, now.st_ctime_ns),
                                (st.st_ino, st.st_mtime_ns, st.st_ctime_ns), step)
            st = now
            last = self.generation()
        self.keys("reactivate", CAROL)                  # already active
        self.assertEqual(self.generation(), last)

    def test_canonical_address_finds_the_key(self):
        self.keys("import", FX["carol_pub"])
        cp = self.explain("<Carol@Partner.Example.>")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("class: openpgp", cp.stdout)

    def test_key_address_taken_as_written(self):
        tmp = sgtest.tmpdir("sgksuid")
        uids = ["<carol@partner.example.>", '<"carol"@partner.example>',
                "<@evil.example:carol@partner.example>"]
        for n, uid in enumerate(uids):
            with self.subTest(uid=uid):
                home = sgtest.GpgHome(os.path.join(tmp, "m%d" % n))
                home.gpg("--quick-gen-key", "Mallory %s" % uid, "default",
                         "default", "never")
                pub = os.path.join(tmp, "m%d.asc" % n)
                write(pub, home.gpg("--armor", "--export").stdout)
                home.kill()
                gw = sgtest.policy_gateway(os.path.join(tmp, "gw%d" % n), POLICY)
                cp = gw.run("keys", "-c", gw.policy, "import", pub)
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
                cp = gw.run("policy", "explain", "-c", gw.policy, "--from",
                            sgtest.SENDER, "--to", CAROL, "--client-ip",
                            "127.0.0.1")
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertIn("class: plain", cp.stdout)

    def test_unreadable_deactivated_file_is_an_error(self):
        self.keys("import", FX["carol_pub"])
        path = os.path.join(self.gw.keystore, "deactivated")
        os.mkdir(path)
        cp = self.explain()
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("deactivated", cp.stderr)
        rc, out, err = self.gw.process(
            sgtest.make_message(sgtest.std_headers(), "text\n"),
            sgtest.SENDER, [CAROL])
        self.assertEqual((rc, out), (1, None), err)
        os.rmdir(path)
        self.assertEqual(self.explain().returncode, 0)

    def test_unreadable_keyring_is_an_error(self):
        self.keys("import", FX["carol_pub"])
        cp = self.explain()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("class: openpgp", cp.stdout)
        ring = os.path.join(self.gw.keystore, "openpgp", "pubring.kbx")
        saved = ring + ".saved"
        shutil.copy(ring, saved)
        with open(saved, "rb") as f:
            good = f.read()
        cases = {
            "garbage": lambda: write(ring, os.urandom(300)),
            "cut short": lambda: write(ring, good[:-10]),
            "a directory": lambda: (os.unlink(ring), os.mkdir(ring)),
        }
        for name, damage in cases.items():
            with self.subTest(name):
                damage()
                try:
                    cp = self.explain()
                    self.assertEqual(cp.returncode, 1, cp.stdout)
                    self.assertRegex(cp.stderr, r"keyring .*pubring\.kbx|pubring\.kbx")
                    self.assertNotIn("class: plain", cp.stdout)
                    rc, out, err = self.gw.process(
                        sgtest.make_message(sgtest.std_headers(), "text\n"),
                        sgtest.SENDER, [CAROL])
                    self.assertEqual((rc, out), (1, None), err)
                finally:
                    if os.path.isdir(ring):
                        os.rmdir(ring)
                    shutil.copy(saved, ring)

    def test_unparsable_certificate_is_an_error(self):
        self.keys("import", FX["carol_pub"])
        bad = os.path.join(self.gw.keystore, "smime", "certs", "BAD.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        cp = self.explain()
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("smime/certs: 0 of 1 certificate files could be read", cp.stderr)


if __name__ == "__main__":
    unittest.main()
