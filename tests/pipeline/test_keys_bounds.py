"""`sealgate keys import` bounds the work a file can ask for before doing it.

PKCS#12 files and encrypted PKCS#8 keys carry their own iteration counts for
key derivation. A count above 1,000,000 (or more than 4,000,000 in all) is
refused with exit 1 naming the file, before any key is derived, also with
`--dry-run`: the MAC count, the PBKDF2 count of the shrouded key bag, the
PBKDF2 count of the encrypted certificate safe, the legacy PKCS#12 PBE count
and the PBKDF2 count of a PEM "ENCRYPTED PRIVATE KEY"; the 4,000,000 hold
for a whole file, also one of several PEM blocks. The hostile files
are small real files whose iteration INTEGERs are rewritten to 2^31-1 (never
run in full: without the bound the import would derive keys for minutes,
and the command timeout would end the test). An OpenPGP key with more than
100 user ids is refused too.
"""

import base64
import os
import re
import unittest

import sgtest
import smimetest

SMALL_ITER = 2345                 # what openssl writes, then rewritten
HUGE_ITER = 2 ** 31 - 1
PASS = "p12-pass"


# -- DER rewriting: INTEGERs equal to SMALL_ITER become HUGE_ITER ----------

def _len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlvs(data):
    """[(tag byte, content)] covering data exactly, or None."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data) or data[i] & 0x1f == 0x1f:
            return None
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7f
            if k == 0 or k > 4 or i + k > len(data):
                return None
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + n > len(data):
            return None
        out.append((tag, data[i:i + n]))
        i += n
    return out


def _int(value):
    b = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return b"\x02" + _len(len(b)) + b


class Rewriter:
    """Rewrites the iteration INTEGERs; select(k) says whether the k-th one
    found (0-based, in file order) is rewritten."""

    def __init__(self, select=lambda k: True):
        self.select = select
        self.seen = 0

    def items(self, data):
        """data rewritten, or None when nothing in it changed."""
        tlvs = _tlvs(data)
        if tlvs is None:
            return None
        changed, out = False, b""
        for tag, content in tlvs:
            new = self.one(tag, content)
            changed |= new is not None
            out += new if new is not None else bytes([tag]) + _len(len(content)) + content
        return out if changed else None

    def one(self, tag, content):
        if tag == 0x02 and int.from_bytes(content, "big") == SMALL_ITER:
            k, self.seen = self.seen, self.seen + 1
            return _int(HUGE_ITER) if self.select(k) else None
        if tag & 0x20 or tag == 0x04:          # constructed, or DER in an OCTET STRING
            inner = self.items(content)
            if inner is not None:
                return bytes([tag]) + _len(len(inner)) + inner
        return None


def rewrite(der, select=lambda k: True):
    r = Rewriter(select)
    out = r.items(der)
    assert out is not None and r.seen > 0, "no iteration count found"
    return out


class ImportBounds(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgkb")
        ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"))
        cls.ident = ca.issue("Alice Example", ["alice@example.com"])
        cls.passfile = os.path.join(cls.tmp, "pass")
        with open(cls.passfile, "w") as f:
            f.write(PASS + "\n")

    def setUp(self):
        self.gw = sgtest.Gateway(sgtest.tmpdir("sgkbgw"))

    def p12(self, name, *args):
        path = os.path.join(self.tmp, name + ".p12")
        smimetest.openssl("pkcs12", "-export", "-in", self.ident.cert, "-inkey",
                          self.ident.key, "-passout", "pass:" + PASS, "-out", path,
                          "-iter", str(SMALL_ITER), *args)
        return path

    def hostile(self, src, name, select=lambda k: True):
        with open(src, "rb") as f:
            der = f.read()
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(rewrite(der, select))
        return path

    def assert_refused(self, path, *extra):
        for dry in ((), ("--dry-run",)):
            cp = self.gw.run("keys", "-c", self.gw.policy, "import", path,
                             "--passphrase-file", self.passfile, *dry, *extra)
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertIn(path, cp.stderr)
            self.assertRegex(cp.stderr, r"key derivations? with .*iterations.*refused")
        self.assertNotIn("alice@example.com", self.gw.list_keys().stdout)

    def test_sane_counts_import(self):
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", self.p12("sane"),
                         "--passphrase-file", self.passfile, "--dry-run")
        self.assertEqual(cp.returncode, 0, cp.stderr)

    def test_every_count_huge(self):
        self.assert_refused(self.hostile(self.p12("all"), "all-huge.p12"))

    def test_mac_count_huge(self):
        # The MAC's count comes last in the file.
        src = self.p12("mac")
        with open(src, "rb") as f:
            n = Rewriter()
            n.items(f.read())
        self.assert_refused(self.hostile(src, "mac-huge.p12", lambda k: k == n.seen - 1))

    def test_key_bag_count_huge_without_mac(self):
        src = self.p12("keybag", "-nomac", "-certpbe", "NONE")
        self.assert_refused(self.hostile(src, "keybag-huge.p12"))

    def test_certificate_safe_count_huge_without_mac(self):
        src = self.p12("certsafe", "-nomac", "-keypbe", "NONE", "-certpbe", "AES-256-CBC")
        self.assert_refused(self.hostile(src, "certsafe-huge.p12"))

    def test_legacy_pbe_count_huge(self):
        src = self.p12("legacy", "-legacy", "-nomac")
        self.assert_refused(self.hostile(src, "legacy-huge.p12"))

    def test_encrypted_pkcs8_key_count_huge(self):
        pem = os.path.join(self.tmp, "k8.pem")
        smimetest.openssl("pkcs8", "-topk8", "-in", self.ident.key, "-v2", "aes256",
                          "-iter", str(SMALL_ITER), "-passout", "pass:" + PASS, "-out", pem)
        with open(pem) as f:
            b64 = re.sub(r"-----[^-]+-----|\s", "", f.read())
        der = rewrite(base64.b64decode(b64))
        path = os.path.join(self.tmp, "k8-huge.pem")
        with open(path, "w") as f:
            f.write("-----BEGIN ENCRYPTED PRIVATE KEY-----\n%s\n"
                    "-----END ENCRYPTED PRIVATE KEY-----\n"
                    % "\n".join(re.findall(".{1,64}", base64.b64encode(der).decode())))
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", self.ident.cert, path,
                         "--passphrase-file", self.passfile)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(path, cp.stderr)
        self.assertRegex(cp.stderr, r"key derivation with 2147483647 iterations")

    def pem_blocks(self, name, der, n):
        """A PEM file of n "PKCS12" blocks holding der."""
        b64 = "\n".join(re.findall(".{1,64}", base64.b64encode(der).decode()))
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("-----BEGIN PKCS12-----\n%s\n-----END PKCS12-----\n" % b64 * n)
        return path

    def test_counts_of_pem_blocks_add_up(self):
        # Three counts of 1,000,000 (MAC, key bag, certificate safe): one
        # block is within the bounds, two blocks of one file are not.
        path = os.path.join(self.tmp, "blocks.p12")
        smimetest.openssl("pkcs12", "-export", "-in", self.ident.cert, "-inkey",
                          self.ident.key, "-passout", "pass:" + PASS, "-out", path,
                          "-iter", "1000000")
        with open(path, "rb") as f:
            der = f.read()
        cp = self.gw.run("keys", "-c", self.gw.policy, "import",
                         self.pem_blocks("one-block.p12.asc", der, 1),
                         "--passphrase-file", self.passfile, "--dry-run")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assert_refused(self.pem_blocks("two-blocks.p12.asc", der, 2))


class UserIdBound(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sguid")
        cls.home = sgtest.GpgHome(os.path.join(cls.tmp, "h"))
        cls.home.gen_key("Many Names", "many@partner.example")
        cls.home.gen_key("Hundred Names", "hundred@partner.example")
        for i in range(100):
            cls.home.gpg("--quick-add-uid", "many@partner.example",
                         "Name %d <many%d@partner.example>" % (i, i))
            if i < 99:
                cls.home.gpg("--quick-add-uid", "hundred@partner.example",
                             "Name %d <hundred%d@partner.example>" % (i, i))
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"))

    def test_key_with_101_user_ids_refused(self):
        path = os.path.join(self.tmp, "many.asc")
        with open(path, "wb") as f:
            f.write(self.home.export_public("many@partner.example"))
        for dry in ((), ("--dry-run",)):
            cp = self.gw.run("keys", "-c", self.gw.policy, "import", path, *dry)
            self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
            self.assertIn(path, cp.stderr)
            self.assertIn("has more than 100 user ids", cp.stderr)
        self.assertNotIn("many@partner.example", self.gw.list_keys().stdout)

    def test_key_with_100_user_ids_imports(self):
        path = os.path.join(self.tmp, "hundred.asc")
        with open(path, "wb") as f:
            f.write(self.home.export_public("hundred@partner.example"))
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", path, "--dry-run")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)


if __name__ == "__main__":
    unittest.main()
