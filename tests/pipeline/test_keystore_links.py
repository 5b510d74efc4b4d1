"""No symbolic links in the keystore (README, "Files").

A link anywhere in the keystore -- a private key file, a certificate, a
trust anchor, a file of the GnuPG home, the deactivated list, one of the
directories, or the keystore itself -- is refused by every command that
opens the keystore (`keys list|import|export|remove|deactivate`, `process`,
the milter's start), with exit 1 and a message naming the link; nothing in
the keystore changes. Without the check, a link to a world-readable private
key passed the 0600 check, and the next `keys import` silently dropped it.
"""

import os
import shutil
import subprocess
import unittest

import sgtest
import smimetest

ALICE = "alice@example.com"
BOB = "bob@example.com"


def snapshot(root):
    """Everything in the tree at root, links not followed: {relative path:
    (kind, mode, target or contents)}; sockets and agent files left out."""
    out = {}
    for d, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(d, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", st.st_mode, os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", st.st_mode, None)
            elif name.startswith("S.") or name.endswith(".lock"):
                continue
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", st.st_mode, f.read())
    return out


class KeystoreLinks(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.tmp = sgtest.tmpdir("sglnk")
        ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"))
        alice = ca.issue("Alice Example", [ALICE], basename="alice")
        cls.bob = ca.issue("Bob Example", [BOB], basename="bob")
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "base"))
        sec = os.path.join(sgtest.src_dir(), "keys-example", "openpgp", "alice.sec.asc")
        cls.gw.import_keys_checked(sec)
        cls.gw.import_keys_checked(alice.cert)
        cls.gw.import_keys_checked(alice.key)
        cp = cls.gw.run("keys", "-c", cls.gw.policy, "import", "--trust-anchor", ca.cert)
        if cp.returncode != 0:
            raise RuntimeError(cp.stderr)
        cp = cls.gw.run("keys", "-c", cls.gw.policy, "deactivate", "leaver@example.com")
        if cp.returncode != 0:
            raise RuntimeError(cp.stderr)
        ks = cls.gw.keystore
        cls.alice_fpr = alice.fpr
        cls.ca_fpr = ca.fpr
        cls.grip = sorted(os.listdir(os.path.join(ks, "openpgp", "private-keys-v1.d")))[0]
        cls.n = 0

    def fresh(self):
        KeystoreLinks.n += 1
        return smimetest.clone_gateway(self.gw, os.path.join(self.tmp, "gw%d" % self.n))

    def link(self, gw, rel):
        """Replaces keystore entry rel (all of it for "") with a link to a
        copy outside the keystore that anyone may read; the path of the link."""
        path = gw.keystore if rel == "" else os.path.join(gw.keystore, rel)
        elsewhere = os.path.join(gw.dir, "elsewhere", os.path.basename(path))
        os.makedirs(os.path.dirname(elsewhere), exist_ok=True)
        shutil.move(path, elsewhere)
        os.chmod(elsewhere, 0o755 if os.path.isdir(elsewhere) else 0o644)
        os.symlink(elsewhere, path)
        return path

    def commands(self, gw):
        """(name, argv) of every kind of command that opens the keystore."""
        msg = os.path.join(gw.dir, "in.eml")
        with open(msg, "wb") as f:
            f.write(sgtest.make_message(sgtest.std_headers(), "hello\r\n"))
        p = gw.policy
        return [
            ("keys list", ["keys", "-c", p, "list"]),
            ("keys list --json", ["keys", "-c", p, "list", "--json"]),
            ("keys import", ["keys", "-c", p, "import", self.bob.cert]),
            ("keys export", ["keys", "-c", p, "export", ALICE]),
            ("keys remove", ["keys", "-c", p, "remove", ALICE]),
            ("keys deactivate", ["keys", "-c", p, "deactivate", ALICE]),
            ("process", ["process", "-c", p, "--from", ALICE, "--to",
                         "carol@partner.example", "--client-ip", "127.0.0.1",
                         "-i", msg, "-o", os.path.join(gw.dir, "out.eml")]),
            ("milter", ["milter", "-c", p, "-s",
                        "unix:" + os.path.join(gw.dir, "m.sock")] +
             sgtest.milter_user_args()),
        ]

    def assert_all_refuse(self, gw, path):
        for name, argv in self.commands(gw):
            with self.subTest(command=name):
                before = snapshot(gw.keystore)
                try:
                    cp = subprocess.run([gw.bin] + argv, stdin=subprocess.DEVNULL,
                                        capture_output=True, timeout=10)
                except subprocess.TimeoutExpired:
                    self.fail("%s kept running (the milter listened)" % name)
                err = cp.stderr.decode("utf-8", "replace")
                self.assertEqual(cp.returncode, 1, err)
                self.assertIn("%s is a symbolic link" % path, err)
                self.assertEqual(snapshot(gw.keystore), before, "keystore changed")
                self.assertFalse(os.path.exists(os.path.join(gw.dir, "m.sock")))

    def test_without_links_the_commands_work(self):
        gw = self.fresh()
        for name, argv in self.commands(gw):
            if name == "milter":
                continue
            with self.subTest(command=name):
                cp = gw.run(*argv)
                self.assertEqual(cp.returncode, 0, cp.stderr)

    def test_link_refused(self):
        ks = {
            "private key file (S/MIME)": "smime/keys/%s.pem" % self.alice_fpr,
            "certificate file": "smime/certs/%s.pem" % self.alice_fpr,
            "trust anchor file": "smime/anchors/%s.pem" % self.ca_fpr,
            "private key file (OpenPGP)": "openpgp/private-keys-v1.d/" + self.grip,
            "keyring": "openpgp/pubring.kbx",
            "gpg.conf": "openpgp/gpg.conf",
            "deactivated list": "deactivated",
            "openpgp/": "openpgp",
            "smime/": "smime",
            "smime/keys/": "smime/keys",
            "smime/certs/": "smime/certs",
            "smime/anchors/": "smime/anchors",
            "private-keys-v1.d/": "openpgp/private-keys-v1.d",
            "keystore root": "",
        }
        for name, rel in ks.items():
            with self.subTest(name):
                gw = self.fresh()
                path = self.link(gw, rel)
                self.assert_all_refuse(gw, path)

    def test_added_and_dangling_links_refused(self):
        for name, rel, target in (
                ("extra certificate", "smime/certs/extra.pem", "/etc/passwd"),
                ("dangling key", "smime/keys/%s.pem" % ("0" * 64), "/nonexistent/key.pem"),
                ("link to a directory", "openpgp/openpgp-revocs.d", "/tmp")):
            with self.subTest(name):
                gw = self.fresh()
                path = os.path.join(gw.keystore, rel)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                os.symlink(target, path)
                self.assert_all_refuse(gw, path)

    def test_keystore_path_with_trailing_slash(self):
        gw = self.fresh()
        path = self.link(gw, "")
        with open(gw.policy) as f:
            text = f.read()
        with open(gw.policy, "w") as f:
            f.write(text.replace('keystore: "store"', 'keystore: "store/"'))
        self.assertIn('keystore: "store/"', open(gw.policy).read())
        cp = gw.list_keys()
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("%s is a symbolic link" % path, cp.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
