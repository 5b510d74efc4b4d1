"""Keystore changes are all or nothing.

`sealgate keys import` killed half-way through a large keyring (SIGKILL,
as from an administrator's `kill -9` or the OOM killer) leaves the keystore
as it was; the next import completes and leaves nothing of the killed one.
An import or remove that cannot put its finished copy of the keyring in
place (made immutable with chattr) fails with the reason and changes
nothing; so does an S/MIME import.

The keyring holds 150 public keys with two secret keys in the middle. The
import is killed once a GnuPG keyring under the keystore directory (the real
one, or any directory the import created) has grown by a given share of
what the whole keyring adds, so gpg is known to be writing keys when the
kill comes.
"""
import contextlib
import os
import shutil
import subprocess
import time
import unittest

import sgtest
import smimetest

PARTNERS = 150
SECRETS = ("sec1@example.com", "sec2@example.com")
KILL_AT = (0.2, 0.5, 0.8)      # shares of the keyring's growth
POLL = 0.002                   # seconds between looks at the keyring


def batch_keys(addrs):
    """A `gpg --gen-key --batch` parameter file for ed25519/cv25519 keys."""
    spec = ""
    for addr in addrs:
        spec += ("Key-Type: EDDSA\nKey-Curve: ed25519\n"
                 "Subkey-Type: ECDH\nSubkey-Curve: cv25519\n"
                 "Name-Real: %s\nName-Email: %s\nExpire-Date: 0\n"
                 "%%no-protection\n%%commit\n" % (addr.split("@")[0], addr))
    return spec.encode()


def home_of(gw):
    return os.path.join(gw.keystore, "openpgp")


def keyring_size(home):
    try:
        return os.path.getsize(os.path.join(home, "pubring.kbx"))
    except OSError:
        return 0


def read(path):
    with open(path, "rb") as f:
        return f.read()


def key_files(gw):
    """The keyring, the private key files and the S/MIME store, by name."""
    home = home_of(gw)
    files = {"pubring.kbx": read(os.path.join(home, "pubring.kbx"))}
    for top in (os.path.join(home, "private-keys-v1.d"),
                os.path.join(gw.keystore, "smime")):
        for d, _sub, names in os.walk(top):
            for name in names:
                path = os.path.join(d, name)
                files[os.path.relpath(path, gw.keystore)] = read(path)
    return files


def write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def all_dirs(root):
    return {d for d, _sub, _files in os.walk(root)}


class InterruptedImport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgkill")
        h = cls.home = sgtest.GpgHome(os.path.join(cls.tmp, "h"))
        partners = ["p%03d@partner.example" % i for i in range(PARTNERS)]
        h.gpg("--gen-key", input_bytes=batch_keys(partners + list(SECRETS) +
                                                  ["alice@example.com"]))
        half = PARTNERS // 2
        cls.ring = write(cls.tmp, "ring.asc",
                         h.gpg("--armor", "--export", *partners[:half]).stdout +
                         h.gpg("--armor", "--export-secret-keys", *SECRETS).stdout +
                         h.gpg("--armor", "--export", *partners[half:]).stdout)
        # What the keystore holds before: an internal user's secret key and
        # a partner's public key.
        cls.before_files = [
            write(cls.tmp, "alice.asc", h.export_secret("alice@example.com")),
            write(cls.tmp, "partner.asc", h.export_public(partners[0])),
        ]
        cls.new_partner = write(cls.tmp, "new.asc", h.export_public(partners[1]))
        cls.new_cert = os.path.join(cls.tmp, "new.pem")
        smimetest.openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec",
                          "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-keyout", os.path.join(cls.tmp, "new.key"),
                          "-out", cls.new_cert, "-days", "30",
                          "-subj", "/CN=New Partner",
                          "-addext", "subjectAltName=email:new@partner.example",
                          "-addext", "basicConstraints=critical,CA:FALSE")

        # The same import, not interrupted, in a second keystore: the size
        # the keyring grows to and the listing it ends with.
        ref = sgtest.Gateway(sgtest.tmpdir("sgkillref"))
        ref.import_keys_checked(*cls.before_files)
        cls.size_before = keyring_size(home_of(ref))
        ref.import_keys_checked(cls.ring)
        cls.size_after = keyring_size(home_of(ref))
        cls.listing_after = sorted(ref.list_keys().stdout.splitlines())

    def kill_half_way(self, gw, share):
        """Starts an import of the keyring and SIGKILLs it when a keyring
        under the keystore has grown by share of the import's growth."""
        threshold = self.size_before + share * (self.size_after - self.size_before)
        old_dirs = all_dirs(gw.keystore)
        proc = subprocess.Popen([gw.bin, "keys", "-c", gw.policy, "import", self.ring],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + sgtest.CMD_TIMEOUT
        grown = False
        while not grown and proc.poll() is None and time.monotonic() < deadline:
            for d in all_dirs(gw.keystore):
                if (d == home_of(gw) or d not in old_dirs) and \
                        keyring_size(d) >= threshold:
                    grown = True
            if not grown:
                time.sleep(POLL)
        proc.kill()
        proc.wait()
        self.assertTrue(grown, "the keyring never grew to %d bytes" % threshold)
        self.assertEqual(proc.returncode, -9,
                         "the import ended before it could be killed")

    def test_killed_import_leaves_keystore_as_it_was(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgkillgw"))
        gw.import_keys_checked(*self.before_files)
        listing = gw.list_keys().stdout
        files = key_files(gw)
        entries = sorted(os.listdir(gw.keystore))
        self.assertIn("alice@example.com", listing)

        for share in KILL_AT:
            with self.subTest(killed_at=share):
                self.kill_half_way(gw, share)
                self.assertEqual(key_files(gw), files, "key files changed")
                self.assertEqual(gw.list_keys().stdout, listing)

        # The next import completes, and the killed ones left nothing.
        cp = gw.import_keys(self.ring)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(gw.list_keys().stdout.splitlines()),
                         self.listing_after)
        self.assertEqual(sorted(os.listdir(gw.keystore)), entries)


    @contextlib.contextmanager
    def immutable(self, path):
        """path made immutable (chattr +i) for the block; skips where the
        file system or the user cannot do that."""
        if shutil.which("chattr") is None:
            self.skipTest("chattr is not installed")
        cp = subprocess.run(["chattr", "+i", path], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)
        if cp.returncode != 0:
            self.skipTest("cannot make %s immutable: %s" % (path, cp.stdout))
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", path], check=True)

    def assert_refused_unchanged(self, gw, locked, why, *args):
        listing = gw.list_keys().stdout
        files = key_files(gw)
        entries = sorted(os.listdir(gw.keystore))
        with self.immutable(locked):
            cp = gw.run("keys", "-c", gw.policy, *args)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(why, cp.stderr)
        self.assertEqual(key_files(gw), files, "key files changed")
        self.assertEqual(gw.list_keys().stdout, listing)
        self.assertEqual(sorted(os.listdir(gw.keystore)), entries)

    def test_change_that_cannot_replace_the_keyring_changes_nothing(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgkillro"))
        gw.import_keys_checked(*self.before_files)
        home = home_of(gw)
        with self.subTest("import"):
            self.assert_refused_unchanged(
                gw, home, "cannot replace %s atomically" % home,
                "import", self.new_partner)
        with self.subTest("remove"):
            self.assert_refused_unchanged(
                gw, home, "cannot replace %s atomically" % home,
                "remove", "alice@example.com")
        smime = os.path.join(gw.keystore, "smime")
        with self.subTest("S/MIME import"):
            self.assert_refused_unchanged(
                gw, smime, "cannot replace %s atomically" % smime,
                "import", self.new_cert)

    def test_change_that_cannot_copy_the_keyring_changes_nothing(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgkillro"))
        gw.import_keys_checked(*self.before_files)
        self.assert_refused_unchanged(gw, gw.keystore, "cannot create",
                                      "import", self.new_partner)


if __name__ == "__main__":
    unittest.main(verbosity=2)
