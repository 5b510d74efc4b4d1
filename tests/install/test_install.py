"""`make install` into a DESTDIR, and what it installs.

`make install-built` (what `make install` runs once it has built) with
DESTDIR=TMP/usr-root PREFIX=/usr, and with DESTDIR=TMP/local-root and no
PREFIX (/usr/local):

  a) exactly the expected files: regular files, the binary 0755, the rest
     0644, directories 0755, all root's, the same list in
     install_manifest.txt, nothing changed at those paths outside DESTDIR;
     the binary is the build's and runs, the example policy and README are
     contrib's and the repository's;
  b) the unit's ExecStart names PREFIX/sbin/sealgate, for both prefixes;
  c) the unit is hardened (User= and Group= sealgate, NoNewPrivileges,
     ProtectSystem=strict, PrivateTmp, no capabilities, LimitCORE=0,
     ExecReload sends SIGUSR1, ReadWritePaths covers the keystore, the spool
     and the socket's directory of the installed example policy);
     `systemd-analyze verify` accepts it (a copy whose ExecStart points into
     DESTDIR, with MANPATH at the installed pages so that its Documentation=
     pages are found) and `systemd-analyze security` rates its exposure at
     2.0 or below;
  d) under DESTDIR as root directory, sysusers.d creates user sealgate and
     tmpfiles.d the directories the example policy and the unit name: the
     keystore's parent and the spool 0700 sealgate's, the socket's directory
     2750 sealgate:postfix;
  e) the man pages render without warnings (groff -ww), their NAME sections
     parse (lexgrog), and `man -l` shows them;
  f) sealgate-policy(5) lists exactly the keys of `sealgate policy keys`,
     and the validator knows each of them (a policy with the key draws no
     "unknown key"), while it does report keys that are not in the table;
  g) the installed example policy passes `sealgate policy check`.
"""

import filecmp
import os
import re
import shutil
import stat
import subprocess
import unittest

import sgtest

SRC = sgtest.src_dir()
BUILD = os.environ.get("SEALGATE_BUILD")

FILES = {
    "sbin/sealgate": 0o755,
    "share/man/man8/sealgate.8": 0o644,
    "share/man/man5/sealgate-policy.5": 0o644,
    "share/doc/sealgate/policy.yaml.example": 0o644,
    "share/doc/sealgate/README.md": 0o644,
    "lib/systemd/system/sealgate.service": 0o644,
    "lib/tmpfiles.d/sealgate.conf": 0o644,
    "lib/sysusers.d/sealgate.conf": 0o644,
}

STATE = {}


def run(argv, env=None, timeout=120):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, env=env, text=True)


def make_install(destdir, prefix=None):
    argv = ["make", "-C", SRC, "--no-print-directory", "install-built",
            "BUILD=" + BUILD, "DESTDIR=" + destdir]
    if prefix is not None:
        argv.append("PREFIX=" + prefix)
    cp = run(argv)
    if cp.returncode != 0:
        raise RuntimeError("make install-built failed (%d):\n%s%s"
                           % (cp.returncode, cp.stdout, cp.stderr))
    with open(os.path.join(BUILD, "install_manifest.txt")) as f:
        return f.read().split()


def real_state(path):
    """What is at path on this system (None: nothing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def parse_unit(path):
    """{section: {key: [values...]}} of a unit file."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = out.setdefault(line.strip("[]"), {})
                continue
            key, _, value = line.partition("=")
            section.setdefault(key, []).append(value)
    return out


def policy_value(path, key):
    """The value of a "  key: value" line of a policy file (unquoted)."""
    with open(path) as f:
        m = re.search(r"^  %s: \"?([^\"\n#]*?)\"?\s*$" % key, f.read(), re.M)
    return m.group(1) if m else None


def yaml_for(name, value="x", indent=0):
    """A YAML document that sets the key NAME (as `policy keys` writes it:
    dots between levels, [] for an item of a list) to value."""
    first, _, rest = name.partition(".")
    is_list = first.endswith("[]")
    key = first[:-2] if is_list else first
    pad = " " * indent
    if not rest:
        return "%s%s: %s\n" % (pad, key, value)
    if not is_list:
        return "%s%s:\n%s" % (pad, key, yaml_for(rest, value, indent + 2))
    inner = yaml_for(rest, value, indent + 4)
    return "%s%s:\n%s  - %s" % (pad, key, pad, inner[indent + 4:])


def setUpModule():
    if os.geteuid() != 0:
        sgtest.skip_file("installs files that must be root's and creates users "
                         "under a root directory: run as root")
    if not BUILD or not os.path.isdir(BUILD):
        sgtest.skip_file("SEALGATE_BUILD does not name the build directory (run under ctest)")
    for tool in ("make", "cmake", "systemd-analyze", "systemd-sysusers",
                 "systemd-tmpfiles", "man", "groff", "lexgrog"):
        sgtest.require_program(tool)
    tmp = sgtest.tmpdir("sgin")
    os.chmod(tmp, 0o755)
    usr = os.path.join(tmp, "usr-root")
    local = os.path.join(tmp, "local-root")
    outside = {p: real_state(p) for prefix in ("/usr", "/usr/local") for p in
               (os.path.join(prefix, f) for f in FILES)}
    STATE.update(tmp=tmp, usr=usr, local=local, outside=outside,
                 usr_manifest=make_install(usr, "/usr"),
                 local_manifest=make_install(local))


class Install(unittest.TestCase):

    def tree(self, root):
        files, dirs = {}, {}
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                p = os.path.join(dirpath, d)
                dirs[os.path.relpath(p, root)] = os.lstat(p)
            for n in filenames:
                p = os.path.join(dirpath, n)
                files[os.path.relpath(p, root)] = os.lstat(p)
        return files, dirs

    def test_a_files_modes_and_owners(self):
        for root, prefix, manifest in ((STATE["usr"], "usr", STATE["usr_manifest"]),
                                       (STATE["local"], "usr/local", STATE["local_manifest"])):
            with self.subTest(prefix=prefix):
                files, dirs = self.tree(root)
                want = {os.path.join(prefix, p): m for p, m in FILES.items()}
                self.assertEqual(sorted(files), sorted(want))
                for path, st in files.items():
                    self.assertTrue(stat.S_ISREG(st.st_mode), path)
                    self.assertEqual(stat.S_IMODE(st.st_mode), want[path], path)
                    self.assertEqual((st.st_uid, st.st_gid), (0, 0), path)
                for path, st in dirs.items():
                    self.assertEqual(stat.S_IMODE(st.st_mode), 0o755, path)
                    self.assertEqual(st.st_uid, 0, path)
                self.assertEqual(sorted(manifest), sorted("/" + p for p in want))
                binary = os.path.join(root, prefix, "sbin/sealgate")
                self.assertTrue(filecmp.cmp(binary, os.path.join(BUILD, "sealgate"),
                                            shallow=False))
                cp = run([binary, "version"])
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertRegex(cp.stdout, r"^sealgate \d+\.\d+\.\d+\n")
                doc = os.path.join(root, prefix, "share/doc/sealgate")
                self.assertTrue(filecmp.cmp(os.path.join(doc, "policy.yaml.example"),
                                            os.path.join(SRC, "contrib/policy.yaml.example"),
                                            shallow=False))
                self.assertTrue(filecmp.cmp(os.path.join(doc, "README.md"),
                                            os.path.join(SRC, "README.md"), shallow=False))

    def test_a_nothing_installed_outside_destdir(self):
        for path, before in STATE["outside"].items():
            self.assertEqual(real_state(path), before, path)

    def test_b_exec_start_names_the_installed_binary(self):
        for root, prefix in ((STATE["usr"], "/usr"), (STATE["local"], "/usr/local")):
            with self.subTest(prefix=prefix):
                unit = parse_unit(os.path.join(root, prefix.lstrip("/"),
                                               "lib/systemd/system/sealgate.service"))
                self.assertEqual(unit["Service"]["ExecStart"],
                                 ["%s/sbin/sealgate milter -c /etc/sealgate/policy.yaml"
                                  % prefix])

    def unit_path(self):
        return os.path.join(STATE["usr"], "usr/lib/systemd/system/sealgate.service")

    def test_c_unit_hardened(self):
        svc = parse_unit(self.unit_path())["Service"]
        for key, value in (("User", ["sealgate"]), ("Group", ["sealgate"]),
                           ("NoNewPrivileges", ["yes"]), ("ProtectSystem", ["strict"]),
                           ("PrivateTmp", ["yes"]), ("CapabilityBoundingSet", [""]),
                           ("AmbientCapabilities", [""]), ("LimitCORE", ["0"]),
                           ("UMask", ["0077"]),
                           ("ExecReload", ["/bin/kill -USR1 $MAINPID"])):
            self.assertEqual(svc.get(key), value, key)
        self.assertTrue(os.access("/bin/kill", os.X_OK))
        writable = [p.lstrip("-") for v in svc["ReadWritePaths"] for p in v.split()]
        example = os.path.join(STATE["usr"], "usr/share/doc/sealgate/policy.yaml.example")
        socket_spec = policy_value(example, "socket")
        self.assertTrue(socket_spec.startswith("unix:"), socket_spec)
        for what, path in (("keystore", policy_value(example, "keystore")),
                           ("spool_dir", policy_value(example, "spool_dir")),
                           ("socket", socket_spec[len("unix:"):])):
            with self.subTest(what):
                self.assertTrue(any(path == w or path.startswith(w + "/") for w in writable),
                                "%s %s is not under ReadWritePaths %s" % (what, path, writable))

    def test_c_systemd_analyze_verify_and_security(self):
        copy = os.path.join(STATE["tmp"], "sealgate.service")
        with open(self.unit_path()) as f:
            text = f.read()
        binary = os.path.join(STATE["usr"], "usr/sbin/sealgate")
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=/usr/sbin/sealgate ", "ExecStart=%s " % binary))
        env = dict(os.environ, MANPATH=os.path.join(STATE["usr"], "usr/share/man"))
        cp = run(["systemd-analyze", "verify", copy], env=env)
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, "", ""))
        # The checker does fail: without the installed pages it misses them.
        cp = run(["systemd-analyze", "verify", copy],
                 env=dict(os.environ, MANPATH=os.path.join(STATE["tmp"], "nowhere")))
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("man sealgate(8)", cp.stderr)
        cp = run(["systemd-analyze", "security", "--offline=true", "--threshold=20", copy])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        m = re.search(r"Overall exposure level for sealgate.service: (\d+\.\d)", cp.stdout)
        self.assertIsNotNone(m, cp.stdout)
        self.assertLessEqual(float(m.group(1)), 2.0)

    def test_d_sysusers_and_tmpfiles(self):
        root = os.path.join(STATE["tmp"], "sysroot")
        shutil.copytree(STATE["usr"], root)
        os.makedirs(os.path.join(root, "etc"))
        # Postfix installed on that system: its group exists.
        with open(os.path.join(root, "etc/group"), "w") as f:
            f.write("postfix:x:4711:\n")
        cp = run(["systemd-sysusers", "--root=" + root])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(root, "etc/passwd")) as f:
            users = {line.split(":")[0]: line.split(":") for line in f}
        self.assertIn("sealgate", users)
        uid, gid = int(users["sealgate"][2]), int(users["sealgate"][3])
        self.assertNotEqual(uid, 0)
        self.assertEqual(users["sealgate"][6].strip(), "/usr/sbin/nologin")
        cp = run(["systemd-tmpfiles", "--root=" + root, "--create", "sealgate.conf"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        example = os.path.join(root, "usr/share/doc/sealgate/policy.yaml.example")
        keystore = policy_value(example, "keystore")
        for path, mode, owner in (
                (os.path.dirname(keystore), 0o700, (uid, gid)),
                (policy_value(example, "spool_dir"), 0o700, (uid, gid)),
                (os.path.dirname(policy_value(example, "socket")[len("unix:"):]),
                 0o2750, (uid, 4711))):
            with self.subTest(path):
                st = os.lstat(os.path.join(root, path.lstrip("/")))
                self.assertTrue(stat.S_ISDIR(st.st_mode))
                self.assertEqual(stat.S_IMODE(st.st_mode), mode)
                self.assertEqual((st.st_uid, st.st_gid), owner)

    def man_page(self, section, name):
        return os.path.join(STATE["usr"], "usr/share/man/man%d/%s.%d" % (section, name, section))

    def render(self, path):
        env = dict(os.environ, MANWIDTH="250", PAGER="cat", MANPAGER="cat", LANG="C.UTF-8")
        cp = run(["man", "--warnings", "-l", path], env=env)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stderr, "")
        return cp.stdout

    def test_e_man_pages_render(self):
        for section, name, title in ((8, "sealgate", "SEALGATE(8)"),
                                     (5, "sealgate-policy", "SEALGATE-POLICY(5)")):
            with self.subTest(name):
                path = self.man_page(section, name)
                cp = run(["groff", "-man", "-ww", "-z", "-Tutf8", path])
                self.assertEqual((cp.returncode, cp.stderr), (0, ""))
                cp = run(["lexgrog", path])
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
                self.assertIn('"%s - ' % name, cp.stdout)
                text = self.render(path)
                self.assertTrue(text.startswith(title), text[:200])
                self.assertNotIn("@", text.splitlines()[0])   # @VERSION@ replaced

    def test_f_policy_man_page_lists_exactly_the_keys(self):
        binary = os.path.join(STATE["usr"], "usr/sbin/sealgate")
        cp = run([binary, "policy", "keys"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        keys = [line.split()[0] for line in cp.stdout.splitlines()]
        self.assertGreater(len(keys), 40)
        for key in ("gateway.user", "gateway.group", "gateway.socket_mode",
                    "gateway.socket_group", "outbound.rules[].when.header.matches"):
            self.assertIn(key, keys)
        with open(self.man_page(5, "sealgate-policy")) as f:
            roff = f.read()
        tags = [t.replace("\\-", "-") for t in re.findall(r"^\.TP\n\.B (\S+)$", roff, re.M)]
        self.assertEqual(tags, keys)
        text = self.render(self.man_page(5, "sealgate-policy"))
        shown = [line.strip() for line in text.splitlines()]
        for key in keys:
            self.assertIn(key, shown, "%s is not a tag of the rendered page" % key)

    def test_f_validator_knows_every_key(self):
        binary = os.path.join(STATE["usr"], "usr/sbin/sealgate")
        keys = [line.split()[0] for line in run([binary, "policy", "keys"]).stdout.splitlines()]
        path = os.path.join(STATE["tmp"], "probe.yaml")

        def check(name):
            with open(path, "w") as f:
                f.write(yaml_for(name))
            cp = run([binary, "policy", "check", "-c", path])
            return cp.returncode, cp.stdout + cp.stderr

        for key in keys:
            with self.subTest(key):
                _rc, out = check(key)
                self.assertNotIn("unknown key", out)
        # The probe is able to fail.
        for bogus, want in (("gateway.no_such_key", 'unknown key "no_such_key" in "gateway"'),
                            ("outbound.rules[].when.no_such_key",
                             'unknown key "no_such_key" in "outbound.rules[1].when"'),
                            ("no_such_key", 'unknown key "no_such_key"')):
            with self.subTest(bogus):
                rc, out = check(bogus)
                self.assertEqual(rc, 1)
                self.assertIn(want, out)

    def test_g_example_policy_checks(self):
        binary = os.path.join(STATE["usr"], "usr/sbin/sealgate")
        example = os.path.join(STATE["usr"], "usr/share/doc/sealgate/policy.yaml.example")
        cp = run([binary, "policy", "check", "-c", example])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)


if __name__ == "__main__":
    unittest.main()
