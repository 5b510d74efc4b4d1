"""OpenPGP encryption in process (librnp), checked with real gpg.

Encryption without signing runs in sealgate's own process with librnp; gpg
is the reference. Every message here is decrypted by gpg in a GnuPG home
that holds only the recipient's secret key; the packets must be those gpg
makes (a session key packet for exactly the subkey the keystore snapshot
chose, SEIPD with MDC, no AEAD), the cipher and the compression those gpg
chooses from the recipients' preferences. A key rnp judges unusable
(self-signatures made with SHA-1, which gpg 2.2 still accepts) goes to gpg,
and the log line says why; Bcc goes to gpg too (rnp 0.16 cannot hide key
ids).
"""

import os
import re
import unittest

import sgtest
from sgtest import CAROL, DAVE, MARKER, SENDER, make_message, std_headers

FRANK = "frank@multi.example"     # two encryption subkeys and an expired one
GRACE = "grace@prefs.example"     # prefers AES-128 and ZIP
HEIDI = "heidi@sha1.example"      # self-signatures with SHA-1
IVAN = "ivan@rsa.example"         # RSA-3072

# Fixed creation times in the past: the newest subkey is known.
T_PRIMARY = "20240105T000000"
T_SUB_OLD = "20240201T000000"
T_SUB_NEW = "20240301T000000"
T_SUB_EXPIRED = "20240401T000000"


def message(rcpts, body=None):
    """A message whose To names every recipient (none is hidden)."""
    return make_message(
        std_headers(to=", ".join(rcpts))
        + [("Content-Type", "text/plain; charset=us-ascii")],
        body or "Hello,\r\n\r\nthe figures. %s\r\n" % MARKER)


def packets_of(home, armored):
    return home.list_packets(armored)


class EncryptRnp(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgrnp", CAROL, DAVE)
        (cls.carol, _), (cls.dave, _) = homes
        cls.homes = {CAROL: cls.carol, DAVE: cls.dave}
        cls.frank = cls._frank()
        cls.grace = cls._key(GRACE, "Grace Prefs", "ed25519", "cv25519",
                             extra=("--default-preference-list",
                                    "AES AES256 SHA256 ZIP ZLIB"))
        cls.heidi = cls._key(HEIDI, "Heidi Sha1", "rsa3072", "rsa3072",
                             extra=("--cert-digest-algo", "SHA1"))
        cls.ivan = cls._key(IVAN, "Ivan Rsa", "rsa3072", "rsa3072")
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"))
        sgtest.import_public_keys(cls.gw, cls.tmp, [
            (cls.carol, CAROL), (cls.dave, DAVE), (cls.frank, FRANK),
            (cls.grace, GRACE), (cls.heidi, HEIDI), (cls.ivan, IVAN)])

    @classmethod
    def tearDownClass(cls):
        for h in [cls.carol, cls.dave, cls.frank, cls.grace, cls.heidi, cls.ivan]:
            h.kill()

    @classmethod
    def _key(cls, addr, name, primary, sub, extra=()):
        home = sgtest.GpgHome(os.path.join(cls.tmp, addr.split("@")[0]))
        home.gpg(*extra, "--quick-gen-key", "%s <%s>" % (name, addr), primary,
                 "sign,cert", "never")
        fpr = home.fingerprint(addr)
        home.gpg(*extra, "--quick-add-key", fpr, sub, "encr", "never")
        cls.homes[addr] = home
        return home

    @classmethod
    def _frank(cls):
        """Primary key, an older cv25519 and a newer RSA encryption subkey,
        and a still newer RSA one that has expired."""
        home = sgtest.GpgHome(os.path.join(cls.tmp, "frank"))
        home.gpg("--faked-system-time", T_PRIMARY, "--quick-gen-key",
                 "Frank Multi <%s>" % FRANK, "ed25519", "sign,cert", "never")
        fpr = home.fingerprint(FRANK)
        home.gpg("--faked-system-time", T_SUB_OLD, "--quick-add-key", fpr,
                 "cv25519", "encr", "never")
        home.gpg("--faked-system-time", T_SUB_NEW, "--quick-add-key", fpr,
                 "rsa3072", "encr", "never")
        home.gpg("--faked-system-time", T_SUB_EXPIRED, "--quick-add-key", fpr,
                 "rsa3072", "encr", "30d")
        cls.homes[FRANK] = home
        return home

    def subkeys(self, addr):
        """(key id, creation time, usable) of addr's encryption subkeys."""
        cp = self.homes[addr].gpg("--with-colons", "--fixed-list-mode",
                                  "--list-keys", "<%s>" % addr)
        out = []
        for line in cp.stdout.decode().splitlines():
            r = line.split(":")
            if r[0] == "sub" and "e" in r[11]:
                out.append((r[4].upper(), int(r[5]), r[1] not in "reid"))
        return out

    def newest_usable_subkey(self, addr):
        usable = [s for s in self.subkeys(addr) if s[2]]
        return max(usable, key=lambda s: s[1])[0]

    def encrypt(self, rcpts, msg=None, env=None):
        msg = msg or message(rcpts)
        saved = dict(os.environ)
        if env:
            os.environ.update(env)
        try:
            rc, out, err = self.gw.process(msg, SENDER, list(rcpts))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertNotIn(MARKER.encode(), out)
        _control, armored = sgtest.pgp_mime_parts(out)
        self.assertTrue(armored.lstrip().startswith(b"-----BEGIN PGP MESSAGE-----"))
        return msg, out, armored, err

    def reason(self, err):
        return sgtest.stderr_field(err, "reason")[0]

    def assert_rnp(self, err):
        self.assertRegex(self.reason(err), r", rnp, AES(128|192|256)$", err)

    def assert_packets(self, home, armored):
        """SEIPD with MDC, no AEAD packet; returns the PKESK key ids."""
        text = packets_of(home, armored)
        self.assertIn(":encrypted data packet:", text)
        self.assertRegex(text, r"mdc_method: 2")
        self.assertNotRegex(text, r"aead encrypted packet|tag=20 ")
        self.assertNotRegex(text, r"tag=9 ", "SED without MDC")
        return sgtest.pkesk_keyids(text)

    def session_algos(self, home, armored):
        """(cipher, compression) algorithm numbers gpg reports decrypting."""
        cp = home.gpg("--status-fd", "2", "--show-session-key", "--list-packets",
                      input_bytes=armored, check=False)
        text = cp.stdout.decode() + cp.stderr.decode()
        cipher = re.search(r"SESSION_KEY (\d+):", text)
        zipm = re.search(r"compressed packet: algo=(\d+)", text)
        self.assertIsNotNone(cipher, text)
        return int(cipher.group(1)), int(zipm.group(1)) if zipm else 0

    # -- tests -----------------------------------------------------------

    def test_cv25519_decrypts_and_packets(self):
        msg, out, armored, err = self.encrypt([CAROL])
        self.assert_rnp(err)
        ids = self.assert_packets(self.carol, armored)
        self.assertEqual(ids, [self.newest_usable_subkey(CAROL)])
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    def test_rsa_decrypts(self):
        msg, out, armored, err = self.encrypt([IVAN])
        self.assert_rnp(err)
        self.assertEqual(self.assert_packets(self.ivan, armored),
                         [self.newest_usable_subkey(IVAN)])
        sgtest.assert_decrypts_to_original(self, self.ivan, msg, out)

    def test_pkesk_names_the_snapshots_subkey(self):
        subs = self.subkeys(FRANK)
        self.assertEqual(len(subs), 3, subs)
        expired = [s for s in subs if not s[2]]
        self.assertEqual(len(expired), 1, subs)
        chosen = self.newest_usable_subkey(FRANK)
        # The newest usable one is neither the oldest nor the expired one.
        self.assertNotEqual(chosen, min(subs, key=lambda s: s[1])[0])
        self.assertNotEqual(chosen, expired[0][0])
        msg, out, armored, err = self.encrypt([FRANK])
        self.assert_rnp(err)
        self.assertEqual(self.assert_packets(self.frank, armored), [chosen])
        # What gpg itself encrypts to.
        ref = self.frank.encrypt(b"x", [FRANK])
        self.assertEqual(sgtest.pkesk_keyids(self.frank.list_packets(ref)), [chosen])
        sgtest.assert_decrypts_to_original(self, self.frank, msg, out)

    def test_several_recipients_each_decrypt(self):
        rcpts = [CAROL, IVAN, FRANK]
        msg, out, armored, err = self.encrypt(rcpts)
        self.assert_rnp(err)
        ids = self.assert_packets(self.carol, armored)
        self.assertEqual(sorted(ids), sorted(self.newest_usable_subkey(a) for a in rcpts))
        for a in rcpts:
            sgtest.assert_decrypts_to_original(self, self.homes[a], msg, out)

    def test_cipher_and_compression_as_gpg_chooses(self):
        for rcpts in ([CAROL], [GRACE], [GRACE, CAROL], [IVAN, GRACE]):
            with self.subTest(rcpts=rcpts):
                msg, out, armored, err = self.encrypt(rcpts)
                self.assert_rnp(err)
                home = self.homes[rcpts[0]]
                got = self.session_algos(home, armored)
                # gpg with the same public keys, asked by fingerprint.
                ref_home = sgtest.GpgHome(os.path.join(self.tmp, "ref-" + "-".join(
                    a.split("@")[0] for a in rcpts)))
                args = []
                for a in rcpts:
                    ref_home.import_keys(self.homes[a].export_public(a))
                    args += ["--recipient", self.homes[a].fingerprint(a)]
                ref = ref_home.gpg("--trust-model", "always", "--armor", "--encrypt",
                                   *args, input_bytes=b"reference text\n").stdout
                ref_home.kill()
                self.assertEqual(got, self.session_algos(home, ref))
        # Grace's preference for AES-128 and ZIP is followed, not rnp's default.
        _m, _o, armored, _e = self.encrypt([GRACE])
        self.assertEqual(self.session_algos(self.grace, armored), (7, 1))
        _m, _o, armored, _e = self.encrypt([CAROL])
        self.assertEqual(self.session_algos(self.carol, armored), (9, 2))

    def test_large_message(self):
        line = ("%s large message line %%07d\r\n" % MARKER)
        body = "".join(line % i for i in range(12 * 1024 * 1024 // len(line % 0)))
        msg, out, armored, err = self.encrypt([CAROL], msg=message([CAROL], body))
        self.assert_rnp(err)
        self.assertGreater(len(msg), 12_000_000)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    def test_key_rnp_refuses_goes_to_gpg(self):
        msg, out, armored, err = self.encrypt([HEIDI])
        reason = self.reason(err)
        self.assertRegex(reason, r", gpg \(rnp not used: rnp judges subkey [0-9A-F]{40} "
                         r"of key [0-9A-F]{40} unusable for encryption\)$", err)
        self.assertEqual(self.assert_packets(self.heidi, armored),
                         [self.newest_usable_subkey(HEIDI)])
        sgtest.assert_decrypts_to_original(self, self.heidi, msg, out)
        # One such key among others sends the whole message to gpg.
        msg, out, armored, err = self.encrypt([CAROL, HEIDI])
        self.assertIn(", gpg (rnp not used: ", self.reason(err))
        for a in (CAROL, HEIDI):
            sgtest.assert_decrypts_to_original(self, self.homes[a], msg, out)

    def test_bcc_goes_to_gpg_and_hides_key_ids(self):
        msg = make_message(
            [(n, v) for n, v in std_headers(to=CAROL)]
            + [("Content-Type", "text/plain")], "Bcc test %s\r\n" % MARKER)
        msg, out, armored, err = self.encrypt([CAROL, IVAN], msg=msg)
        self.assertRegex(self.reason(err), r"key ids hidden, gpg$", err)
        ids = self.assert_packets(self.carol, armored)
        self.assertEqual(ids, ["0000000000000000"] * 2)

    def test_engine_gpg_by_environment(self):
        msg, out, armored, err = self.encrypt([CAROL], env={"SEALGATE_OPENPGP_ENGINE": "gpg"})
        self.assertRegex(self.reason(err), r", gpg$", err)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)


if __name__ == "__main__":
    unittest.main()
