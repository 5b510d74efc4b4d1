"""A key that carries another key's (sub)key material (DESIGN.md §4 rule 3).

With only alice's public key, anyone can make a key of their own whose
encryption subkey is alice's: gpg's `addkey` takes an existing keygrip, and
with alice's creation time the subkey is hers to the fingerprint. GnuPG
finds secret key files by keygrip alone. Built here for eve@example.com, an
internal colleague, with the real gpg; eve's exported key holds no secret
at all. Without the checks below, mail encrypted to alice that eve sends to
herself is decrypted for eve. Now:

  - importing eve's public key next to alice's secret key is refused, and
    the keystore is unchanged; so is importing alice's key next to eve's,
    and a file that holds both (gpg would merge alice's secret into eve's
    key);
  - in a keystore that holds both anyway (filled by gpg directly, as
    before this check), a message encrypted to alice is decrypted neither
    for eve nor for alice, and the plaintext is nowhere; and neither
    address signs.
"""

import os
import shutil
import subprocess
import unittest

import inboundtest
import sgtest
from inboundtest import ALICE, InboundCase, alternative_entity, gpg_encrypt, \
    inbound_policy, new_marker, pgp_mime_message, process, status_fields

EVE = "eve@example.com"
DAY = 86400


def setUpModule():
    global IDS, TMP, EVE_PUB
    sgtest.require_binary()
    sgtest.require_program("gpg")
    TMP = sgtest.tmpdir("sgshare")
    IDS = inboundtest.Identities(TMP, smime=False)
    EVE_PUB = os.path.join(TMP, "eve.pub.asc")
    with open(EVE_PUB, "wb") as f:
        f.write(eve_with_alices_keys())


def tearDownModule():
    IDS.kill_agents()


def eve_with_alices_keys():
    """eve's public key with alice's two keys as its own subkeys: her
    primary (signing) key and her encryption subkey, each with the same key
    material and creation time, so the same fingerprints and key ids. Made
    in a home that holds no key of alice's, only the secret key files gpg's
    "existing key" needs (an attacker makes stubs for them from alice's
    public key; the result is the same public key)."""
    colons = IDS.alice.gpg("--with-colons", "--with-keygrip", "--list-keys",
                           ALICE).stdout.decode().splitlines()
    keys = [line.split(":") for line in colons if line[:4] in ("pub:", "sub:")]
    grips = [line.split(":")[9] for line in colons if line.startswith("grp:")]
    fprs = [line.split(":")[9] for line in colons if line.startswith("fpr:")]
    home = sgtest.GpgHome(os.path.join(TMP, "eve"))
    secrets = os.path.join(home.path, "private-keys-v1.d")
    os.makedirs(secrets, mode=0o700, exist_ok=True)
    for grip in grips:
        shutil.copy(os.path.join(IDS.alice.path, "private-keys-v1.d",
                                 grip + ".key"), secrets)
    home.gpg("--faked-system-time", "%d!" % (int(keys[0][5]) - DAY),
             "--quick-gen-key", "Eve Example <%s>" % EVE, "ed25519", "cert",
             "never")
    for key, grip in zip(keys, grips):
        cp = home.gpg("--expert", "--faked-system-time", "%s!" % key[5],
                      "--command-fd", "0", "--status-fd", "1",
                      "--edit-key", EVE, "addkey", "save",
                      input_bytes=("13\n%s\nQ\n0\n" % grip).encode())
        assert b"KEY_CREATED S" in cp.stdout, cp.stdout
    pub = home.export_public(EVE)
    home.kill()
    shown = sgtest.run(["gpg", "--batch", "--with-colons", "--show-keys"],
                       input_bytes=pub).stdout.decode()
    for fpr in fprs:
        assert "fpr:::::::::%s:" % fpr in shown, (fpr, shown)
    assert b"PRIVATE KEY" not in pub
    return pub


class SharedKeyMaterial(unittest.TestCase, InboundCase):

    def listing(self, gw):
        return sorted(gw.list_keys().stdout.splitlines())

    def test_import_refused_both_ways(self):
        for first, second in ((IDS.sec_files[ALICE], EVE_PUB),
                              (EVE_PUB, IDS.sec_files[ALICE])):
            with self.subTest(first=os.path.basename(first)):
                gw = sgtest.policy_gateway(sgtest.tmpdir("sgsharegw"),
                                           inbound_policy())
                gw.import_keys_checked(first)
                before = self.listing(gw)
                cp = gw.import_keys(second)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                self.assertIn("share key material", cp.stderr)
                self.assertEqual(self.listing(gw), before)

    def test_one_file_with_both_refused(self):
        for order in ((EVE_PUB, IDS.sec_files[ALICE]),
                      (IDS.sec_files[ALICE], EVE_PUB)):
            with self.subTest(first=os.path.basename(order[0])):
                both = os.path.join(sgtest.tmpdir("sgsharefile"), "both.asc")
                with open(both, "wb") as out:
                    for path in order:
                        with open(path, "rb") as f:
                            out.write(f.read())
                gw = sgtest.policy_gateway(sgtest.tmpdir("sgsharegw"),
                                           inbound_policy())
                cp = gw.import_keys(both)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                self.assertIn("share", cp.stderr)
                self.assertEqual(gw.list_keys().stdout, "")

    def test_keystore_holding_both_decrypts_for_neither(self):
        gw = IDS.gateway(sgtest.tmpdir("sgsharegw"), inbound_policy(),
                         openpgp=(ALICE,), smime=())
        # Into the keyring behind sealgate's back, as a keystore filled
        # before imports were checked would hold it.
        subprocess.run(["gpg", "--homedir", os.path.join(gw.keystore, "openpgp"),
                        "--batch", "--import", EVE_PUB], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertIn(EVE, gw.list_keys().stdout)
        marker = new_marker()
        msg = pgp_mime_message(gpg_encrypt(IDS, alternative_entity(marker),
                                           [ALICE]))
        for rcpts in ([EVE], [ALICE]):
            with self.subTest(rcpts=rcpts):
                rc, out, err = process(gw, msg, rcpts)
                self.assertEqual(rc, 0, err)
                (status,) = status_fields(out)[0]
                self.assertFalse(status.startswith("yes"), status)
                self.assert_no_marker(marker, out, err, gw)

    def test_keystore_holding_both_signs_for_neither(self):
        gw = sgtest.policy_gateway(sgtest.tmpdir("sgsharegw"), POLICY_SIGN)
        gw.import_keys_checked(IDS.sec_files[ALICE])
        self.sign_as(gw, ALICE, 0)          # alice's own key signs
        subprocess.run(["gpg", "--homedir", os.path.join(gw.keystore, "openpgp"),
                        "--batch", "--import", EVE_PUB], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for sender in (EVE, ALICE):
            with self.subTest(signing_as=sender):
                self.sign_as(gw, sender, 2)

    def sign_as(self, gw, sender, rc_expected):
        msg = sgtest.make_message(
            [("From", sender), ("To", "signed@other.example"),
             ("Subject", "s"), ("Date", sgtest.rfc5322_date())], "Hello\r\n")
        rc, out, err = gw.process(msg, sender, ["signed@other.example"],
                                  extra_args=["--auth", sender.split("@")[0]])
        self.assertEqual(rc, rc_expected, err)
        return err


POLICY_SIGN = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool" }
internal_domains: [example.com]
outbound:
  default: { action: none }
  rules:
""" + sgtest.SIGN_RULES


if __name__ == "__main__":
    unittest.main(verbosity=2)
