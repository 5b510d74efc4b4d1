"""`sealgate keys import` refuses OpenPGP keys that cannot serve, file by
file, before the keystore changes; `--dry-run` checks without importing.

Refused: an expired key, a revoked key (a partner's public key; an internal
user's with its secret key decrypts only, see test_decrypt_only_keys.py), a
key without an encryption-capable (sub)key, an RSA key below 2048 bits. A keyring with one bad key among good
ones is refused whole. A private key file others could read stops every
command; a change by a user other than the keystore's owner is refused.
"""
import os
import pwd
import unittest

import sgtest


def keystore_listing(gw):
    return gw.list_keys().stdout


class KeyRefusals(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgref")
        cls.home = sgtest.GpgHome(os.path.join(cls.tmp, "h"))
        h = cls.home
        cls.good = h.gen_key("Good Partner", "good@partner.example")
        h.gpg("--faked-system-time", "20200101T000000", "--quick-gen-key",
              "Old Partner <old@partner.example>", "future-default", "default", "1d")
        cls.revoked = h.gen_key("Revoked Partner", "revoked@partner.example")
        rev = os.path.join(h.path, "openpgp-revocs.d", cls.revoked + ".rev")
        with open(rev, "rb") as f:
            text = f.read().replace(b":-----BEGIN PGP", b"-----BEGIN PGP")
        h.import_keys(text)
        h.gpg("--quick-gen-key", "Signer Only <signonly@partner.example>", "ed25519",
              "sign", "never")
        h.gpg("--quick-gen-key", "Small Rsa <small@partner.example>", "rsa1024",
              "default", "never")
        cls.files = {}
        for addr in ("good", "old", "revoked", "signonly", "small"):
            path = os.path.join(cls.tmp, addr + ".asc")
            with open(path, "wb") as f:
                f.write(h.export_public("%s@partner.example" % addr))
            cls.files[addr] = path
        ring = os.path.join(cls.tmp, "ring.asc")
        with open(ring, "wb") as f:
            f.write(h.gpg("--armor", "--export", "good@partner.example",
                          "small@partner.example").stdout)
        cls.files["ring"] = ring

    def setUp(self):
        self.gw = sgtest.Gateway(sgtest.tmpdir("sgrefgw"))

    def assert_refused(self, name, why):
        before = keystore_listing(self.gw)
        cp = self.gw.import_keys(self.files[name])
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(self.files[name], cp.stderr)
        self.assertIn(why, cp.stderr)
        self.assertEqual(keystore_listing(self.gw), before, "keystore changed")

    def test_good_key_imports(self):
        cp = self.gw.import_keys(self.files["good"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("good@partner.example", keystore_listing(self.gw))

    def test_expired_key_refused(self):
        self.assert_refused("old", "has expired, and the file holds no secret key of it "
                            "that decrypts")

    def test_revoked_key_refused(self):
        self.assert_refused("revoked", "is revoked, and the file holds no secret key of it "
                            "that decrypts")

    def test_key_without_encryption_subkey_refused(self):
        self.assert_refused("signonly", "has no encryption-capable (sub)key")

    def test_small_rsa_key_refused(self):
        self.assert_refused("small", "has an RSA key smaller than 2048 bits")

    def test_keyring_with_one_bad_key_refused_whole(self):
        self.assert_refused("ring", "has an RSA key smaller than 2048 bits")
        self.assertNotIn("good@partner.example", keystore_listing(self.gw))

    def test_dry_run_checks_and_imports_nothing(self):
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", "--dry-run",
                         self.files["good"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("1 OpenPGP key(s) checked; nothing imported (dry run)", cp.stdout)
        self.assertNotIn("good@partner.example", keystore_listing(self.gw))
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", "--dry-run",
                         self.files["small"])
        self.assertEqual(cp.returncode, 1)
        self.assertIn("smaller than 2048 bits", cp.stderr)


class KeyFilePermissions(unittest.TestCase):
    """A private key file other users could read stops every command that
    opens the keystore (and so the milter's start), saying how to fix it."""

    def test_readable_private_key_refused(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgperm"))
        sec = os.path.join(sgtest.src_dir(), "keys-example", "openpgp", "alice.sec.asc")
        cp = gw.import_keys(sec)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        keydir = os.path.join(gw.keystore, "openpgp", "private-keys-v1.d")
        files = [os.path.join(keydir, n) for n in os.listdir(keydir)]
        self.assertTrue(files, "no private key files")
        os.chmod(files[0], 0o644)
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("can be read by other users", cp.stderr)
        self.assertIn("chmod 600 " + files[0], cp.stderr)
        rc, out, err = gw.process(b"Subject: x\r\n\r\nx\r\n", "alice@example.com",
                                  ["carol@partner.example"])
        self.assertEqual(rc, 1, err)
        os.chmod(files[0], 0o600)
        self.assertEqual(gw.list_keys().returncode, 0)


class KeystoreOwner(unittest.TestCase):
    """Changes to a keystore that belongs to another user (an administrator
    running `sealgate keys` as root on the gateway user's store) are
    refused, naming the owner: the files they wrote would be unreadable for
    the gateway. Listing still works."""

    def test_change_by_another_user_refused(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the keystore to another user")
        gw = sgtest.Gateway(sgtest.tmpdir("sgowner"))
        gw.import_keys_checked(os.path.join(sgtest.src_dir(), "keys-example",
                                            "openpgp", "carol.pub.asc"))
        before = keystore_listing(gw)
        os.chown(gw.keystore, 65534, -1)
        try:
            owner = pwd.getpwuid(65534).pw_name
        except KeyError:
            owner = "65534"
        try:
            for args in (["import", os.path.join(sgtest.src_dir(), "keys-example",
                                                 "openpgp", "dave.pub.asc")],
                         ["remove", "carol@partner.example"],
                         ["deactivate", "alice@example.com"]):
                with self.subTest(args[0]):
                    cp = gw.run("keys", "-c", gw.policy, *args)
                    self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                    self.assertIn("keystore %s belongs to user %s" % (gw.keystore, owner),
                                  cp.stderr)
                    self.assertIn("sudo -u %s sealgate keys" % owner, cp.stderr)
            cp = gw.list_keys()
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertEqual(cp.stdout, before)
        finally:
            os.chown(gw.keystore, 0, -1)


if __name__ == "__main__":
    unittest.main()
