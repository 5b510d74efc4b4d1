"""The demo (scripts/demo.py) runs as root: what another local user can and
cannot make it do.

- Its directory (--dir): a symbolic link, a directory owned by another user
  or writable by others, or one under a parent others may write to, is
  refused with exit 1 before anything in it is deleted or written; files
  the demo creates never follow a symbolic link planted in their place.
- `demo.py send` takes only the pid and the port from demo.json, and only
  from a demo.json the effective user owns: the file it sends inbound is
  always DIR's own.
- The sink, which any local user can reach: a command line, a line in DATA
  and a message are bounded (552 beyond 64 MiB, the rest discarded, memory
  kept low), and a recipient of any length makes a file name of bounded
  length.
- Stopping (Ctrl-C): an unprivileged user's shell working in the demo's
  Postfix queue does not keep the demo from stopping everything and
  saying so (exit 0); a Ctrl-C that arrives as `postfix start` returns
  still stops the master it started.
"""
import importlib.util
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time
import types
import unittest

import postfix
import sgtest

ROOT = sgtest.src_dir()
DEMO = os.path.join(ROOT, "scripts", "demo.py")
NOBODY = 65534


def load_demo():
    spec = importlib.util.spec_from_file_location("sgdemo_script", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo = load_demo()


def as_nobody(command):
    """Runs a shell command as the unprivileged user nobody."""
    cp = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", command],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=30)
    if cp.returncode != 0:
        raise AssertionError("as nobody: %s: %s" % (command, cp.stdout))


def snapshot(top):
    """{relative path: content or link target} of everything under top."""
    out = {}
    for dirpath, dirnames, files in os.walk(top):
        for name in dirnames + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = "dir"
    return out


class DemoCase(unittest.TestCase):
    """A private Postfix must be possible here; each test gets its own
    directory (searchable by the postfix user) with a copy of
    policy.yaml.example."""

    @classmethod
    def setUpClass(cls):
        ok, why = postfix.can_run()
        if not ok:
            sgtest.skip_file(why)
        cls.bin = sgtest.require_binary()

    def new_tmp(self, prefix):
        self.tmp = sgtest.tmpdir(prefix)
        os.chmod(self.tmp, 0o755)
        self.policy = os.path.join(self.tmp, "policy.yaml")
        shutil.copy(os.path.join(ROOT, "policy.yaml.example"), self.policy)


class Safety(DemoCase):
    def setUp(self):
        self.new_tmp("sgsafe")
        # What root owns and another user must not get at.
        self.victim = os.path.join(self.tmp, "victim")
        os.mkdir(self.victim, 0o700)
        for sub in ("mail", "postfix"):
            os.mkdir(os.path.join(self.victim, sub))
            with open(os.path.join(self.victim, sub, "keep"), "w") as f:
                f.write("root's %s\n" % sub)
        for name in ("demo.json", "milter.log", "inbound-to-alice.eml",
                     "secret"):
            with open(os.path.join(self.victim, name), "w") as f:
                f.write("root's %s: TOPSECRET\n" % name)
        self.before = snapshot(self.victim)

    def demo_argv(self, command, directory):
        return ["python3", DEMO, command, "--bin", self.bin, "--policy",
                self.policy, "--dir", directory,
                "--port", str(postfix.free_port()),
                "--milter-port", str(postfix.free_port())]

    def run_demo(self, command, directory, timeout=60):
        """(exit code, output) of demo.py; a demo still running after
        timeout is stopped (exit code None)."""
        proc = subprocess.Popen(self.demo_argv(command, directory),
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace")

    def assert_refused(self, directory, why, command="run"):
        rc, out = self.run_demo(command, directory)
        self.assertEqual(rc, 1, out)
        self.assertIn("refusing %s as the demo's directory: " % directory,
                      out)
        self.assertIn(why, out)
        self.assertEqual(snapshot(self.victim), self.before)
        return out

    # -- F2 (a): DIR a symbolic link ---------------------------------------

    def test_dir_symlink_refused(self):
        # nobody (in a sticky /tmp) points DIR at root's directory
        link = os.path.join(self.tmp, "demo")
        os.symlink(self.victim, link)
        self.assert_refused(link, "it is a symbolic link")

    # -- F2 (b): DIR another user's, with symlinks planted in it -----------

    def test_dir_of_another_user_refused(self):
        directory = os.path.join(self.tmp, "demo")
        os.mkdir(directory, 0o755)
        os.chown(directory, NOBODY, -1)
        for name in ("demo.json", "milter.log", "inbound-to-alice.eml"):
            as_nobody("ln -s %s %s" % (os.path.join(self.victim, name),
                                       os.path.join(directory, name)))
        as_nobody("ln -s %s %s" % (os.path.join(self.victim, "mail"),
                                   os.path.join(directory, "mail")))
        self.assert_refused(directory, "it is owned by uid %d" % NOBODY)

    def test_dir_writable_by_others_refused(self):
        for mode in (0o777, 0o775, 0o1777):
            with self.subTest(mode=oct(mode)):
                directory = os.path.join(self.tmp, "demo%o" % mode)
                os.mkdir(directory)
                os.chmod(directory, mode)
                with self.assertRaisesRegex(
                        demo.DemoError, "it is writable by group or others"):
                    demo.check_dir(directory)

    def test_parent_writable_or_not_root_refused(self):
        parent = os.path.join(self.tmp, "parent")
        directory = os.path.join(parent, "demo")
        os.mkdir(parent)
        os.mkdir(directory, 0o755)
        for mode, uid, why in ((0o777, 0, "is writable by group or others"),
                               (0o775, 0, "is writable by group or others"),
                               (0o755, NOBODY, "is owned by uid %d" % NOBODY)):
            with self.subTest(mode=oct(mode), uid=uid):
                os.chmod(parent, mode)
                os.chown(parent, uid, -1)
                with self.assertRaisesRegex(
                        demo.DemoError, "its parent %s %s" % (parent, why)):
                    demo.check_dir(directory)
        # missing DIR under such a parent: refused before it is created
        missing = os.path.join(parent, "new", "demo")
        with self.assertRaises(demo.DemoError):
            demo.check_dir(missing)
        self.assertFalse(os.path.lexists(os.path.dirname(missing)))

    def test_safe_dir_accepted(self):
        # a sticky, world-writable parent (like /tmp) is fine; a missing DIR
        # is created
        sticky = os.path.join(self.tmp, "sticky")
        os.mkdir(sticky)
        os.chmod(sticky, 0o1777)
        directory = os.path.join(sticky, "a", "demo")
        demo.check_dir(directory)
        st = os.lstat(directory)
        self.assertEqual(st.st_uid, os.geteuid())
        self.assertEqual(st.st_mode & 0o022, 0)

    def test_created_files_do_not_follow_symlinks(self):
        directory = os.path.join(self.tmp, "demo")
        os.mkdir(directory, 0o755)
        link = os.path.join(directory, "milter.log")
        os.symlink(os.path.join(self.victim, "milter.log"), link)
        with demo.create(link, "wb") as f:
            f.write(b"new\n")
        self.assertFalse(os.path.islink(link))
        with open(link, "rb") as f:
            self.assertEqual(f.read(), b"new\n")
        self.assertEqual(snapshot(self.victim), self.before)

    # -- F2 (c): demo.json's paths -----------------------------------------

    def fake_demo_json(self, directory, owner):
        """A demo.json naming root's secret as the inbound message and a
        port this test listens on (a sink that keeps what it gets)."""
        got = os.path.join(self.tmp, "got")
        os.mkdir(got)
        sink = demo.Sink(got)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        self.addCleanup(sink.server_close)
        self.addCleanup(sink.shutdown)
        path = os.path.join(directory, "demo.json")
        with open(path, "w") as f:
            json.dump({"pid": os.getpid(), "port": sink.server_address[1],
                       "inbound": os.path.join(self.victim, "secret"),
                       "mail": got,
                       "milter_log": os.path.join(self.victim, "secret")}, f)
        os.chown(path, owner, -1)
        return got, sink.server_address[1]

    def test_send_ignores_paths_in_demo_json(self):
        directory = os.path.join(self.tmp, "demo")
        os.mkdir(directory, 0o755)
        _, port = self.fake_demo_json(directory, 0)
        self.assertEqual(demo.running_demo(directory), {
            "pid": os.getpid(), "port": port,
            "mail": os.path.join(directory, "mail"),
            "inbound": os.path.join(directory, "inbound-to-alice.eml"),
            "milter_log": os.path.join(directory, "milter.log")})

    def test_send_ignores_demo_json_of_another_user(self):
        directory = os.path.join(self.tmp, "demo")
        os.mkdir(directory, 0o755)
        self.fake_demo_json(directory, NOBODY)
        self.assertIsNone(demo.running_demo(directory))

    def test_send_to_dir_of_another_user_sends_nothing(self):
        # nobody's own DIR with nobody's demo.json: `make demo` as root
        # refuses it, and nothing reaches nobody's port
        directory = os.path.join(self.tmp, "demo")
        os.mkdir(directory, 0o755)
        os.chown(directory, NOBODY, -1)
        got, _ = self.fake_demo_json(directory, NOBODY)
        self.assert_refused(directory, "it is owned by uid %d" % NOBODY,
                            command="send")
        self.assertEqual(os.listdir(got), [])


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


class Sink(unittest.TestCase):
    def setUp(self):
        self.mail = sgtest.tmpdir("sgsink")
        self.sink = demo.Sink(self.mail)
        threading.Thread(target=self.sink.serve_forever, daemon=True).start()
        self.addCleanup(self.sink.server_close)
        self.addCleanup(self.sink.shutdown)
        self.conn = socket.create_connection(self.sink.server_address, 30)
        self.addCleanup(self.conn.close)
        self.rfile = self.conn.makefile("rb")
        self.assertTrue(self.rfile.readline().startswith(b"220 "))

    def command(self, line):
        """The last line of the reply to line."""
        self.conn.sendall(line + b"\r\n")
        while True:
            reply = self.rfile.readline()
            if reply[3:4] != b"-":
                return reply.decode().rstrip()

    def envelope(self):
        self.assertEqual(self.command(b"EHLO test")[:3], "250")
        self.assertEqual(self.command(b"MAIL FROM:<a@x>")[:3], "250")
        self.assertEqual(self.command(b"RCPT TO:<b@x>")[:3], "250")
        self.assertEqual(self.command(b"DATA")[:3], "354")

    def test_long_recipient(self):
        rcpt = "a" * 300 + "@x.example"
        with smtplib.SMTP(*self.sink.server_address, timeout=30) as smtp:
            smtp.sendmail("s@x", [rcpt], b"Subject: long\r\n\r\nhi\r\n")
        (name,) = os.listdir(self.mail)
        self.assertEqual(name, "001-%s.eml" % rcpt[:64])
        with open(os.path.join(self.mail, name), "rb") as f:
            self.assertIn(b"Delivered-To: " + rcpt.encode(), f.read())

    def test_long_command_line(self):
        self.assertEqual(self.command(b"NOOP " + b"x" * 10000)[:3], "500")
        self.assertEqual(self.command(b"NOOP"), "250 2.0.0 Ok")

    def test_message_too_big(self):
        # 144 MiB without a newline: refused with 552; at most the first
        # 64 MiB (more than the example policy's max_message_size of 50M)
        # are held in memory
        self.assertEqual(demo.MAX_DATA, 64 * 1024 * 1024)
        self.envelope()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")            # resets VmHWM
        before = peak_rss_kib()
        chunk = b"x" * (1024 * 1024)
        for _ in range(144):
            self.conn.sendall(chunk)
        reply = self.command(b"\r\n.")
        grown = peak_rss_kib() - before
        self.assertTrue(reply.startswith("552 5.3.4 "), reply)
        self.assertLess(grown, 100 * 1024, "peak RSS grew by %d KiB" % grown)
        self.assertEqual(os.listdir(self.mail), [])
        # the session goes on: the next message is delivered
        self.envelope()
        self.conn.sendall(b"Subject: small\r\n\r\n..dot\r\n")
        self.assertEqual(self.command(b"."), "250 2.0.0 Ok: delivered")
        self.assertEqual(self.command(b"QUIT")[:3], "221")
        (name,) = os.listdir(self.mail)
        with open(os.path.join(self.mail, name), "rb") as f:
            self.assertTrue(f.read().endswith(b"\n\n.dot\n"))


def instance_processes(pf):
    """(pid, exe) of Postfix daemons working in the instance under pf."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if exe.startswith("/usr/lib/postfix/sbin/") and \
                (cwd == pf or cwd.startswith(pf + "/")):
            out.append((int(pid), exe))
    return out


class Stop(DemoCase):
    def setUp(self):
        self.new_tmp("sgstop")
        self.dir = os.path.join(self.tmp, "demo")
        self.pf = os.path.join(self.dir, "postfix")
        self.keystore = os.path.join(self.tmp, "keys-example", "store")
        self.addCleanup(self.kill_instance)

    def kill_instance(self):
        if os.path.isdir(os.path.join(self.pf, "etc")):
            subprocess.run(["postfix", "-c", os.path.join(self.pf, "etc"),
                            "stop"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 10
        while instance_processes(self.pf) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid, _ in instance_processes(self.pf):
            os.kill(pid, signal.SIGKILL)

    def test_user_shell_in_queue(self):
        port, milter_port = postfix.free_port(), postfix.free_port()
        proc = subprocess.Popen(
            ["python3", DEMO, "run", "--bin", self.bin, "--policy",
             self.policy, "--dir", self.dir, "--port", str(port),
             "--milter-port", str(milter_port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and
                        os.killpg(proc.pid, signal.SIGKILL))
        out = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not (b"== The gateway's log" in b"".join(out) or
                   proc.poll() is not None or time.monotonic() > deadline):
            time.sleep(0.2)
        self.assertIsNone(proc.poll(), b"".join(out).decode())
        self.assertTrue(instance_processes(self.pf))

        # nobody's shell, working in the queue directory
        queue = os.path.join(self.pf, "queue")
        shell = subprocess.Popen(
            ["su", "nobody", "-s", "/bin/sh", "-c",
             "cd %s && exec sleep 600" % queue],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(self.kill_tree, shell)
        deadline = time.monotonic() + 10
        while not [pid for pid in self.children(shell.pid)
                   if self.cwd(pid) == queue]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)

        os.killpg(proc.pid, signal.SIGINT)
        self.assertEqual(proc.wait(120), 0, b"".join(out).decode())
        reader.join(10)
        text = b"".join(out).decode("utf-8", "replace")
        self.assertIn("sealgate demo: stopped; nothing left running", text)
        self.assertEqual(instance_processes(self.pf), [])
        for p in (port, milter_port):
            self.assertFalse(postfix.port_open(p), p)
        agents = [pid for pid in os.listdir("/proc") if pid.isdigit() and
                  self.keystore.encode() in self.cmdline(pid)]
        self.assertEqual(agents, [])

    def kill_tree(self, proc):
        for pid in reversed(self.children(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(10)

    @staticmethod
    def cwd(pid):
        try:
            return os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            return None

    @staticmethod
    def cmdline(pid):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                return f.read()
        except OSError:
            return b""

    @staticmethod
    def children(pid):
        """pid and its descendants."""
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                with open("/proc/%d/task/%d/children" % (p, p)) as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return out

    def test_interrupt_during_postfix_start(self):
        from saslauth import DovecotAuthServer
        d = demo.Demo(types.SimpleNamespace(
            bin=self.bin, policy=self.policy, dir=self.dir,
            port=postfix.free_port(), milter_port=postfix.free_port()))
        demo.check_dir(d.dir)
        d.prepare_dir()
        d.sink = demo.Sink(d.mail)
        threading.Thread(target=d.sink.serve_forever, daemon=True).start()
        d.auth = DovecotAuthServer(os.path.join(d.pf, "auth"), demo.LOGINS)
        real = d.postfix

        def postfix_then_ctrl_c(*args, check=True):
            cp = real(*args, check=check)
            if args == ("start",):
                raise KeyboardInterrupt
            return cp

        d.postfix = postfix_then_ctrl_c
        with self.assertRaises(KeyboardInterrupt):
            d.start_postfix()
        self.assertTrue(instance_processes(self.pf))
        failures = d.stop()
        self.assertEqual(instance_processes(self.pf), [])
        self.assertEqual(failures, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
