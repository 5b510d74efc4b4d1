"""The keystore's generation file: every change through `sealgate keys`
(import, remove, deactivate, reactivate) replaces it, written aside and
renamed, with a higher number; a change that changes nothing (reactivating
an active address) leaves it alone.
"""

import os
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

    def test_every_change_bumps_the_generation(self):
        self.keys("import", FX["carol_pub"])
        first = self.generation()
        st = os.stat(self.gen)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        steps = [("deactivate", CAROL), ("reactivate", CAROL), ("remove", CAROL),
                 ("import", FX["carol_pub"])]
        for n, step in enumerate(steps, 1):
            self.keys(*step)
            self.assertEqual(self.generation(), first + n, step)
            self.assertNotEqual(os.stat(self.gen).st_ino, st.st_ino, step)
            st = os.stat(self.gen)
        self.keys("reactivate", CAROL)                  # already active
        self.assertEqual(self.generation(), first + len(steps))


if __name__ == "__main__":
    unittest.main()
