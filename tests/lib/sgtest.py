"""Shared helpers for sealgate's end-to-end tests (tests/pipeline, tests/milter).

Standard library only; run with Debian's /usr/bin/python3.

The helpers drive the real `sealgate` binary and use GnuPG as an independent
checker: messages are decrypted with `gpg` in a separate GnuPG home, never with
sealgate's own code.
"""

import atexit
import email.message
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77                      # ctest SKIP_RETURN_CODE
CMD_TIMEOUT = 120              # seconds; no single command of a test may hang
SMTP_REJECT_RE = re.compile(r"^5\d\d 5\.\d{1,3}\.\d{1,3} ", re.M)
SMTP_TEMPFAIL_RE = re.compile(r"^4\d\d 4\.\d{1,3}\.\d{1,3} ", re.M)

# Who is who in the test messages. example.com is the internal domain.
SENDER = "alice@example.com"          # internal sender of the messages
BOB = "bob@example.com"               # internal recipient
CAROL = "carol@partner.example"       # external; the tests give her a key
XPART = "x@partner.example"           # external, same domain, no key
DAVE = "dave@other.example"           # external; a key in some tests
ERIN = "erin@other.example"           # external, no key
# An SMTP client outside every trusted_networks of the tests (TEST-NET-1):
# the MTA's client for mail from the Internet. Without --client-ip and
# --auth, `sealgate process` assumes local submission (127.0.0.1).
OUTSIDE_IP = "192.0.2.1"
KEY_NAMES = {BOB: "Bob Example", CAROL: "Carol Partner", DAVE: "Dave Other"}
# Text put into message bodies: it must never show up in clear where the
# message is encrypted, nor on stderr or in logs.
MARKER = "SGMARK-" + os.urandom(6).hex()


# --------------------------------------------------------------------------
# Locating things, skipping


def src_dir():
    """Repository root: $SEALGATE_SRC, else two levels above this file."""
    env = os.environ.get("SEALGATE_SRC")
    if env:
        return env
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sealgate_bin():
    """Path of the sealgate binary: $SEALGATE_BIN, else $SEALGATE_SRC/build/sealgate."""
    env = os.environ.get("SEALGATE_BIN")
    if env:
        return env
    return os.path.join(src_dir(), "build", "sealgate")


def skip_file(reason):
    """Skip a whole test file: print why and exit with ctest's skip code."""
    print("SKIP: %s" % reason, flush=True)
    sys.exit(SKIP)


def main_with_skips(skipped):
    """unittest.main for a file some of whose cases may find that they
    cannot run here (their reasons in the list skipped): a failure fails
    the file, else any such case makes the whole file skipped, never
    passed."""
    prog = unittest.main(exit=False, verbosity=2)
    if not prog.result.wasSuccessful():
        sys.exit(1)
    if skipped:
        skip_file("; ".join(sorted(set(skipped))))
    sys.exit(0)


def require_binary():
    """The sealgate binary's path. A missing binary is an error when
    SEALGATE_BIN names it (as under ctest), else the file is skipped."""
    path = sealgate_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if os.environ.get("SEALGATE_BIN"):
            print("ERROR: SEALGATE_BIN=%s is not an executable file" % path, flush=True)
            sys.exit(1)
        skip_file("sealgate binary not found at %s (build first or set SEALGATE_BIN)" % path)
    return path


def milter_user_args():
    """`sealgate milter` options that run it as the user who starts it:
    started as root it refuses to run without a user to switch to (the
    tests' keystores are root's)."""
    return ["-u", pwd.getpwuid(os.geteuid()).pw_name]


def require_program(name):
    path = shutil.which(name)
    if not path:
        skip_file("%s is not installed" % name)
    return path


# --------------------------------------------------------------------------
# Temporary directories (short, under /tmp) with GnuPG agents stopped at exit

_TMPDIRS = []


def _looks_like_gnupg_home(path):
    for marker in ("pubring.kbx", "pubring.gpg", "private-keys-v1.d",
                   "trustdb.gpg", "S.gpg-agent"):
        if os.path.exists(os.path.join(path, marker)):
            return True
    return False


def kill_agents_under(root):
    """Stop every gpg-agent/keyboxd/dirmngr whose GnuPG home is inside root."""
    if not os.path.isdir(root):
        return
    for dirpath, _dirnames, _files in os.walk(root):
        if _looks_like_gnupg_home(dirpath):
            subprocess.run(["gpgconf", "--homedir", dirpath, "--kill", "all"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=False)


def agent_socket(home):
    """Where the gpg-agent of a GnuPG home listens."""
    cp = subprocess.run(["gpgconf", "--homedir", home, "--list-dirs",
                         "agent-socket"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        timeout=30, check=True)
    return cp.stdout.decode().strip()


def stop_agent(home, timeout=10.0):
    """Stops the gpg-agent of a GnuPG home and waits until it is gone (its
    socket removed): `gpgconf --kill` returns before the agent exits."""
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30, check=False)
    sock = agent_socket(home)
    deadline = time.monotonic() + timeout
    while os.path.exists(sock):
        if time.monotonic() > deadline:
            raise RuntimeError("the gpg-agent of %s did not stop" % home)
        time.sleep(0.01)


def _cleanup_tmpdirs():
    for path in reversed(_TMPDIRS):
        try:
            kill_agents_under(path)
        except Exception:          # cleanup must never hide the test result
            pass
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup_tmpdirs)


def tmpdir(prefix="sg"):
    """A new, short directory under /tmp (0700), removed when the process exits.

    GnuPG homes inside it get their agents killed first. Set SGTEST_KEEP=1 to
    keep the directories for debugging.
    """
    path = tempfile.mkdtemp(prefix=prefix + ".", dir="/tmp")
    os.chmod(path, 0o700)
    if not os.environ.get("SGTEST_KEEP"):
        _TMPDIRS.append(path)
    return path


def run(argv, input_bytes=None, env=None, timeout=CMD_TIMEOUT):
    """Run a command; returns CompletedProcess with bytes stdout/stderr."""
    return subprocess.run(argv, input=input_bytes,
                          stdin=None if input_bytes is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=timeout, check=False)


def _text(b):
    return b.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# GnuPG home used as an independent checker


class GpgHome:
    """A throwaway GnuPG home (0700, no network lookups)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        with open(os.path.join(path, "gpg.conf"), "w") as f:
            f.write("no-auto-key-retrieve\n"
                    "disable-dirmngr\n"
                    "trust-model always\n")
        with open(os.path.join(path, "gpg-agent.conf"), "w") as f:
            f.write("allow-loopback-pinentry\n"
                    "disable-scdaemon\n")

    def gpg(self, *args, input_bytes=None, check=True):
        argv = ["gpg", "--homedir", self.path, "--batch", "--no-tty",
                "--pinentry-mode", "loopback", "--passphrase", ""] + list(args)
        cp = run(argv, input_bytes=input_bytes)
        if check and cp.returncode != 0:
            raise RuntimeError("gpg %s failed (%d): %s"
                               % (" ".join(args), cp.returncode, _text(cp.stderr)))
        return cp

    def gen_key(self, name, addr):
        """Create an ed25519/cv25519 key without passphrase; returns its fingerprint."""
        self.gpg("--quick-gen-key", "%s <%s>" % (name, addr),
                 "future-default", "default", "never")
        return self.fingerprint(addr)

    def _colons(self, pattern):
        cp = self.gpg("--with-colons", "--fixed-list-mode", "--list-keys", pattern)
        return [line.split(":") for line in _text(cp.stdout).splitlines()]

    def fingerprint(self, addr):
        """Fingerprint of the primary key for addr (the first one listed)."""
        rows = self._colons(self._uid_match(addr))
        seen_primary = False
        for r in rows:
            if r[0] == "pub":
                seen_primary = True
            elif r[0] == "fpr" and seen_primary:
                return r[9]
        raise RuntimeError("no key for %s" % addr)

    def encryption_keyids(self, addr):
        """Long key ids (16 hex digits, upper case) of the usable encryption (sub)keys."""
        rows = self._colons(self._uid_match(addr))
        ids = []
        for r in rows:
            if r[0] in ("pub", "sub") and "e" in r[11] and r[1] not in ("r", "e", "d", "i"):
                ids.append(r[4].upper())
        return ids

    @staticmethod
    def _uid_match(addr):
        # "<addr>" matches the mail address exactly (gpg's '<' search mode).
        return "<%s>" % addr if "@" in addr and not addr.startswith("<") else addr

    def export_public(self, addr, armor=True):
        args = ["--export"]
        if armor:
            args.insert(0, "--armor")
        cp = self.gpg(*args, self._uid_match(addr))
        if not cp.stdout:
            raise RuntimeError("nothing exported for %s" % addr)
        return cp.stdout

    def export_secret(self, addr):
        cp = self.gpg("--armor", "--export-secret-keys", self._uid_match(addr))
        if not cp.stdout:
            raise RuntimeError("no secret key exported for %s" % addr)
        return cp.stdout

    def import_keys(self, data):
        return self.gpg("--import", input_bytes=data)

    def encrypt(self, data, recipients, armor=True, extra=()):
        """Encrypt with this home's gpg (used to build already-encrypted input)."""
        args = ["--trust-model", "always", "--encrypt"]
        if armor:
            args.append("--armor")
        for r in recipients:
            args += ["--recipient", self._uid_match(r)]
        args += list(extra)
        return self.gpg(*args, input_bytes=data).stdout

    def decrypt(self, data):
        """(returncode, plaintext bytes, stderr text) of `gpg --decrypt`.

        The stderr text includes gpg's status lines ("[GNUPG:] ..."). With
        hidden recipients, gpg 2.2 exits 2 after it first tried a session key
        packet meant for someone else, even though it then decrypted: see
        decryption_succeeded().
        """
        cp = self.gpg("--status-fd", "2", "--decrypt", input_bytes=data, check=False)
        return cp.returncode, cp.stdout, _text(cp.stderr)

    def list_packets(self, data):
        """Text of `gpg --list-packets` (stdout and stderr; return code ignored)."""
        cp = self.gpg("--list-packets", input_bytes=data, check=False)
        return _text(cp.stdout) + _text(cp.stderr)

    def kill(self):
        subprocess.run(["gpgconf", "--homedir", self.path, "--kill", "all"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)


def decryption_succeeded(returncode, stderr_text):
    """True when gpg decrypted an integrity-protected message.

    Exit code 0, or -- for gpg 2.2's exit code 2 after trying a hidden
    recipient's packet with the wrong key -- the status lines DECRYPTION_OKAY,
    GOODMDC and END_DECRYPTION without DECRYPTION_FAILED or BADMDC.
    """
    status = set(re.findall(r"^\[GNUPG:\] (\S+)", stderr_text, re.M))
    if status & {"DECRYPTION_FAILED", "BADMDC"}:
        return False
    if returncode == 0:
        return True
    return {"DECRYPTION_OKAY", "GOODMDC", "END_DECRYPTION"} <= status


PKESK_RE = re.compile(r"pubkey enc packet: version \d+, algo \d+, keyid ([0-9A-Fa-f]{16})")


def pkesk_keyids(list_packets_text):
    """Key ids (upper case) of the public-key encrypted session key packets."""
    return [k.upper() for k in PKESK_RE.findall(list_packets_text)]


def new_key_home(tmp, addr):
    """A GpgHome in tmp/<local part of addr> holding a new key for addr,
    with its real name from KEY_NAMES. Returns (home, fingerprint)."""
    home = GpgHome(os.path.join(tmp, addr.split("@")[0]))
    return home, home.gen_key(KEY_NAMES[addr], addr)


def class_set_up(prefix, *addrs):
    """The start of a test class's set-up: the sealgate binary must exist
    (else the file is skipped), a new temporary directory, and a GnuPG home
    with a new key for each address. Returns (tmp, [(home, fingerprint), ...])."""
    require_binary()
    tmp = tmpdir(prefix)
    return tmp, [new_key_home(tmp, addr) for addr in addrs]


def export_public_key(tmp, home, addr, armor=True):
    """Write addr's public key from home into a file in tmp (ASCII armor, or
    binary with armor=False); returns the file's path."""
    path = os.path.join(tmp, "%s.pub.%s" % (addr.replace("@", "_at_"),
                                            "asc" if armor else "gpg"))
    with open(path, "wb") as f:
        f.write(home.export_public(addr, armor=armor))
    return path


# --------------------------------------------------------------------------
# The gateway under test


POLICY_TEMPLATE = """\
version: 1
gateway:
  socket: "{socket}"
  keystore: "store"
  spool_dir: "spool"
internal_domains: [{domains}]
outbound:
  default: {{ action: {action} }}
"""


class Gateway:
    """A sealgate configuration in a directory: policy.yaml, keystore, spool.

    `socket` is the milter socket written to the policy (libmilter syntax);
    `extra_yaml` is appended to the policy as is (further top-level keys).
    """

    def __init__(self, tmp, internal_domains=("example.com",),
                 default_action="encrypt-if-key", socket="inet:8891@127.0.0.1",
                 extra_yaml=""):
        self.dir = tmp
        os.makedirs(tmp, exist_ok=True)
        self.policy = os.path.join(tmp, "policy.yaml")
        self.keystore = os.path.join(tmp, "store")
        self.spool = os.path.join(tmp, "spool")
        self.socket = socket
        with open(self.policy, "w") as f:
            f.write(POLICY_TEMPLATE.format(domains=", ".join(internal_domains),
                                           action=default_action, socket=socket))
            f.write(extra_yaml)
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        os.chmod(self.spool, 0o700)
        self.bin = sealgate_bin()
        self._n = 0

    def run(self, *args, input_bytes=None):
        """Run `sealgate ARGS...`; CompletedProcess with stdout/stderr as text."""
        cp = run([self.bin] + list(args), input_bytes=input_bytes)
        return subprocess.CompletedProcess(cp.args, cp.returncode,
                                           _text(cp.stdout), _text(cp.stderr))

    def import_keys(self, *paths):
        return self.run("keys", "-c", self.policy, "import", *paths)

    def import_keys_checked(self, *paths):
        """import_keys for set-up: raises RuntimeError when sealgate fails."""
        cp = self.import_keys(*paths)
        if cp.returncode != 0:
            raise RuntimeError("sealgate keys import failed (%d): %s%s"
                               % (cp.returncode, cp.stdout, cp.stderr))
        return cp

    def check_policy(self, text=None):
        """`sealgate policy check` for set-up, on the gateway's policy file or,
        given text, on that text in a scratch file next to it; raises
        RuntimeError when the policy is refused."""
        path = self.policy
        if text is not None:
            path = os.path.join(self.dir, "probe.yaml")
            with open(path, "w") as f:
                f.write(text)
        try:
            cp = self.run("policy", "check", "-c", path)
        finally:
            if text is not None:
                os.unlink(path)
        if cp.returncode != 0:
            raise RuntimeError("policy check failed (%d): %s%s\n%s"
                               % (cp.returncode, cp.stdout, cp.stderr, text or ""))
        return cp

    def list_keys(self):
        return self.run("keys", "-c", self.policy, "list")

    def process(self, msg_bytes, sender, rcpts, client_ip="127.0.0.1", extra_args=()):
        """Run one message through `sealgate process`.

        client_ip None gives no --client-ip: with no --auth in extra_args
        that is local submission (127.0.0.1, no login). Returns (returncode, output bytes or None, stderr text); the output is
        None when the file was not created or is empty.
        """
        return self.start_process(msg_bytes, sender, rcpts, client_ip,
                                  extra_args).result()

    def start_process(self, msg_bytes, sender, rcpts, client_ip="127.0.0.1",
                      extra_args=()):
        """process() started in the background: a Processing whose .proc
        is the running sealgate and whose .result() waits for it."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        self._n += 1
        inp = os.path.join(self.dir, "in%d.eml" % self._n)
        out = os.path.join(self.dir, "out%d.eml" % self._n)
        with open(inp, "wb") as f:
            f.write(msg_bytes)
        argv = ["process", "-c", self.policy, "--from", sender]
        for r in rcpts:
            argv += ["--to", r]
        if client_ip is not None:
            argv += ["--client-ip", client_ip]
        argv += list(extra_args)
        argv += ["-i", inp, "-o", out]
        return Processing([self.bin] + argv, inp, out)

    def spool_entries(self):
        return sorted(os.listdir(self.spool)) if os.path.isdir(self.spool) else []


class Processing:
    """A `sealgate process` run in the background (Gateway.start_process)."""

    def __init__(self, argv, inp, out):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._inp = inp
        self._out = out

    def result(self):
        """(returncode, output bytes or None, stderr text), as Gateway.process."""
        _stdout, stderr = self.proc.communicate(timeout=CMD_TIMEOUT)
        data = None
        if os.path.exists(self._out):
            with open(self._out, "rb") as f:
                data = f.read() or None
            os.unlink(self._out)
        os.unlink(self._inp)
        return self.proc.returncode, data, _text(stderr)


def verdict(stderr_text):
    """The word of the `verdict: ...` line on stderr, or None."""
    m = re.search(r"^verdict: (\S+)", stderr_text, re.M)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# MIME helpers (on bytes; no re-serialisation by the email package)

_EOL_RE = re.compile(rb"\r\n|\r|\n")


def canon(b):
    """Normalise every line ending (CRLF, LF, lone CR) to CRLF."""
    return _EOL_RE.sub(b"\r\n", b)


def split_header_body(msg):
    """Split a message or MIME entity into its header fields and body.

    Returns ([(name, value), ...], body_bytes). Names and values are str
    (decoded as UTF-8 with surrogate escapes for odd bytes); a value is the
    text after the colon, unfolded (line breaks before continuation lines
    removed, the whitespace kept), without leading whitespace and line ending.
    The body is everything after the blank line, byte for byte (b"" when
    there is no blank line).
    """
    lines = msg.splitlines(keepends=True)
    fields = []
    i = 0
    body = b""
    while i < len(lines):
        line = lines[i]
        if line in (b"\r\n", b"\n", b"\r"):
            body = b"".join(lines[i + 1:])
            break
        stripped = line.rstrip(b"\r\n")
        if stripped[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + stripped.decode("utf-8", "surrogateescape"))
        else:
            name, sep, value = stripped.partition(b":")
            if not sep:
                raise ValueError("not a header line: %r" % stripped[:80])
            fields.append((name.decode("utf-8", "surrogateescape"),
                           value.decode("utf-8", "surrogateescape").lstrip(" \t")))
        i += 1
    return fields, body


def norm_value(value):
    """Header value compared modulo folding whitespace."""
    return re.sub(r"[ \t]+", " ", value).strip()


def norm_fields(fields):
    return [(n.lower(), norm_value(v)) for n, v in fields]


def is_content_field(name):
    return name.lower().startswith("content-")


def header_values(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


def parse_content_type(value):
    """(lower-case type/subtype, email.message.Message for get_param)."""
    m = email.message.Message()
    m["Content-Type"] = value
    return m.get_content_type(), m


def split_multipart(body, boundary):
    """Body parts (bytes, CRLF-canonical) of a multipart body.

    Follows RFC 2046: the CRLF before a delimiter line belongs to the delimiter;
    text before the first and after the close delimiter is dropped.
    """
    body = canon(body)
    delim = b"--" + boundary.encode("ascii")
    lines = body.split(b"\r\n")
    parts, cur, started, closed = [], None, False, False
    for line in lines:
        bare = line.rstrip(b" \t")
        if bare == delim + b"--":
            if cur is not None:
                parts.append(b"\r\n".join(cur))
            closed = True
            break
        if bare == delim:
            if cur is not None:
                parts.append(b"\r\n".join(cur))
            cur, started = [], True
            continue
        if started:
            cur.append(line)
    if not closed:
        raise AssertionError("multipart body has no close delimiter for boundary %r" % boundary)
    return parts


def pgp_mime_parts(msg):
    """Check msg is RFC 3156 PGP/MIME; return (control_part_bytes, armored_bytes).

    Asserts: the top-level Content-Type is multipart/encrypted with
    protocol="application/pgp-encrypted" and a boundary; there are exactly two
    body parts; the first is application/pgp-encrypted holding "Version: 1";
    the second is application/octet-stream holding an ASCII-armored OpenPGP
    message. control_part_bytes is the whole first part (header and body),
    armored_bytes the body of the second part.
    """
    fields, body = split_header_body(msg)
    cts = header_values(fields, "Content-Type")
    if len(cts) != 1:
        raise AssertionError("expected one top-level Content-Type, got %r" % cts)
    ctype, ct = parse_content_type(cts[0])
    if ctype != "multipart/encrypted":
        raise AssertionError("top-level Content-Type is %r, not multipart/encrypted" % cts[0])
    protocol = ct.get_param("protocol")
    if (protocol or "").lower() != "application/pgp-encrypted":
        raise AssertionError("protocol parameter is %r" % protocol)
    boundary = ct.get_param("boundary")
    if not boundary:
        raise AssertionError("multipart/encrypted without boundary")
    parts = split_multipart(body, boundary)
    if len(parts) != 2:
        raise AssertionError("multipart/encrypted has %d parts, expected 2" % len(parts))

    f1, b1 = split_header_body(parts[0])
    t1 = [parse_content_type(v)[0] for v in header_values(f1, "Content-Type")]
    if t1 != ["application/pgp-encrypted"]:
        raise AssertionError("first part Content-Type %r" % t1)
    if not re.search(rb"^Version: ?1[ \t]*\r?$", canon(b1), re.M):
        raise AssertionError("control part lacks 'Version: 1': %r" % b1[:200])

    f2, b2 = split_header_body(parts[1])
    t2 = [parse_content_type(v)[0] for v in header_values(f2, "Content-Type")]
    if t2 != ["application/octet-stream"]:
        raise AssertionError("second part Content-Type %r" % t2)
    if b"-----BEGIN PGP MESSAGE-----" not in b2 or b"-----END PGP MESSAGE-----" not in b2:
        raise AssertionError("second part is not an armored OpenPGP message")
    return parts[0], b2


def expected_entity(original):
    """What the encrypted entity of `original` must be, CRLF-canonical:
    its top-level Content-* fields (order and values) + blank line + body."""
    fields, body = split_header_body(canon(original))
    out = [("%s: %s\r\n" % (n, v)).encode("utf-8", "surrogateescape")
           for n, v in fields if is_content_field(n)]
    return b"".join(out) + b"\r\n" + body


# --------------------------------------------------------------------------
# Building test messages


def make_message(headers, body, eol=b"\r\n"):
    """Bytes of a message from [(name, value), ...] and a body (bytes or str)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    out = b"".join(canon(("%s: %s" % (n, v)).encode("utf-8")).replace(b"\r\n", eol) + eol
                   for n, v in headers)
    return out + eol + body


def rfc5322_date(t=None):
    """t (seconds since the epoch, default now) as a Date field value.
    Signed mail is checked against its Date (inbound.signature_date_tolerance),
    so test messages carry the time they are made."""
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                         time.gmtime(time.time() if t is None else t))


def std_headers(sender="Alice Example <alice@example.com>",
                to="Carol Partner <carol@partner.example>", subject="Test message",
                extra=()):
    """Typical non-MIME top-level fields, in the order a mail program writes them."""
    h = [("Received", "from client.example.com (client.example.com [192.0.2.10])\r\n"
                      "\tby mx.example.com (Postfix) with ESMTPS id 4ABCD123;\r\n"
                      "\tMon,  2 Jan 2023 10:00:00 +0000 (UTC)"),
         ("From", sender),
         ("To", to)]
    h += list(extra)
    h += [("Subject", subject),
          ("Date", rfc5322_date()),
          ("Message-ID", "<%s@example.com>" % os.urandom(8).hex()),
          ("X-Mailer", "sgtest 1.0"),
          ("MIME-Version", "1.0")]
    return h


# --------------------------------------------------------------------------
# Checking an encrypted result (assertions through a unittest.TestCase)


def assert_outer_headers_kept(tc, original, out):
    """The result's top-level fields other than Content-* are the original's,
    same order and values; MIME-Version: 1.0 is present; the only Content-*
    fields left are the new multipart/encrypted Content-Type and, optionally,
    Content-Transfer-Encoding: 7bit."""
    of, _ = split_header_body(canon(original))
    nf, _ = split_header_body(canon(out))
    orig_other = [(n.lower(), v) for n, v in of if not is_content_field(n)]
    new_other = [(n.lower(), v) for n, v in nf if not is_content_field(n)]
    if not header_values(of, "MIME-Version") and ("mime-version", "1.0") in new_other:
        new_other.remove(("mime-version", "1.0"))
    tc.assertEqual(new_other, orig_other,
                   "outer header fields other than Content-* changed")
    tc.assertEqual([norm_value(v) for v in header_values(nf, "MIME-Version")], ["1.0"])
    new_content = [(n.lower(), norm_value(v)) for n, v in nf if is_content_field(n)]
    names = [n for n, _v in new_content]
    tc.assertEqual(names.count("content-type"), 1, "outer Content-* fields: %r" % new_content)
    extra = [(n, v) for n, v in new_content if n != "content-type"]
    for n, v in extra:
        tc.assertTrue(n == "content-transfer-encoding" and v.lower() == "7bit",
                      "original or unexpected Content-* field left in the outer header: "
                      "%s: %s" % (n, v))
    ctype, _ = parse_content_type(header_values(nf, "Content-Type")[0])
    tc.assertEqual(ctype, "multipart/encrypted")


def assert_decrypts_to_original(tc, home, original, out):
    """Decrypt the result with gpg in `home` and compare the entity with the
    original's Content-* fields and body. Returns the plaintext bytes."""
    _control, armored = pgp_mime_parts(out)
    rc, plain, err = home.decrypt(armored)
    tc.assertTrue(decryption_succeeded(rc, err), "gpg --decrypt failed (%d): %s" % (rc, err))
    tc.assertEqual(plain, canon(plain), "encrypted entity is not CRLF-canonical")
    pf, pb = split_header_body(plain)
    of, ob = split_header_body(canon(original))
    tc.assertEqual(norm_fields(pf), norm_fields([f for f in of if is_content_field(f[0])]),
                   "Content-* fields of the encrypted entity differ from the original")
    tc.assertTrue(pb == ob, "encrypted entity body differs from the original body "
                  "(%d vs %d bytes)" % (len(pb), len(ob)))
    return plain


# --------------------------------------------------------------------------
# Policy tests: gateways with a complete policy file, header fields by name


def policy_yaml(rules="", trusted_networks=None, internal_domains="example.com",
                action="encrypt-if-key", methods="openpgp"):
    """A policy file's text: keystore "store", spool_dir "spool", the
    gateway's trusted_networks (a YAML flow list's items, or None to leave the
    key out), internal_domains, the outbound default and, when given, the
    outbound rules (YAML list items indented by four spaces)."""
    text = ("version: 1\n"
            "gateway:\n"
            "  keystore: \"store\"\n"
            "  spool_dir: \"spool\"\n")
    if trusted_networks is not None:
        text += "  trusted_networks: [%s]\n" % trusted_networks
    text += ("internal_domains: [%s]\n"
             "outbound:\n"
             "  default: { action: %s, methods: [%s] }\n"
             % (internal_domains, action, methods))
    if rules:
        text += "  rules:\n" + rules
    return text


# The rules of the reference policy, first match wins: header, MIP label,
# subject tag, recipient domain.
REFERENCE_RULES = """\
    - name: confidential
      when: { header: { name: Sensitivity, matches: "company-confidential" } }
      action: encrypt
      on_missing_key: reject
    - name: mip
      when: { label: Confidential }
      action: encrypt
    - name: subject-tag
      when: { subject_tag: "[secure]" }
      action: encrypt
    - name: partner
      when: { recipient_domain: [partner.example] }
      action: encrypt
      on_missing_key: send-plain
"""



def policy_gateway(tmp, policy_text):
    """A Gateway in tmp whose policy.yaml is exactly policy_text.

    The policy should name keystore "store" and spool_dir "spool" (relative
    to the file), as Gateway sets them up.
    """
    gw = Gateway(tmp)
    with open(gw.policy, "w") as f:
        f.write(policy_text)
    return gw


def policy_gateways(tmp, policies, key_files=(), prepare=None):
    """{name: Gateway in tmp/gw-NAME} for each name and policy text of
    policies, each policy checked with `sealgate policy check`. Policies
    naming keystore "../store" share tmp/store; key_files are imported
    through the first gateway. prepare(dir), when given, runs on each
    directory before its check."""
    gws = {}
    for name, text in policies.items():
        d = os.path.join(tmp, "gw-" + name)
        os.makedirs(d)
        if prepare is not None:
            prepare(d)
        gws[name] = policy_gateway(d, text)
        gws[name].check_policy()
    if key_files:
        next(iter(gws.values())).import_keys_checked(*key_files)
    return gws


# Signing rules: "must-sign" (recipient signed@other.example) signs or
# rejects, "may-sign" (maybe@other.example) signs or sends plain.
SIGN_RULES = """\
    - name: must-sign
      when: { recipient: [signed@other.example] }
      action: sign
      on_missing_key: reject
    - name: may-sign
      when: { recipient: [maybe@other.example] }
      action: sign
      on_missing_key: send-plain
"""


def import_public_keys(gw, tmp, pairs):
    """Export each (GpgHome, address)'s public key into tmp and import them
    all into gw's keystore with `sealgate keys import`; raises on failure."""
    return gw.import_keys_checked(*[export_public_key(tmp, home, addr)
                                    for home, addr in pairs])


def field_values(msg, name):
    """Unfolded values (str) of the top-level header field `name` of msg (bytes)."""
    fields, _body = split_header_body(msg)
    return header_values(fields, name)


def decoded_value(value):
    """A header value with RFC 2047 encoded words decoded (str)."""
    import email.header
    return str(email.header.make_header(email.header.decode_header(value)))


def without_fields(msg, names):
    """msg (bytes, CRLF-canonical result) without the top-level fields in names."""
    lower = {n.lower() for n in names}
    fields, body = split_header_body(canon(msg))
    out = [("%s: %s\r\n" % (n, v)).encode("utf-8", "surrogateescape")
           for n, v in fields if n.lower() not in lower]
    return b"".join(out) + b"\r\n" + body


def replace_field(msg, name, new_value):
    """msg (bytes) with the value of its (single) top-level field `name`
    replaced; the rest of the message byte for byte as it was."""
    lines = msg.splitlines(keepends=True)
    out, i, done = [], 0, False
    while i < len(lines):
        line = lines[i]
        if line in (b"\r\n", b"\n", b"\r"):
            out += lines[i:]
            break
        n, sep, _v = line.partition(b":")
        if not done and sep and n.decode("ascii", "replace").lower() == name.lower():
            eol = line[len(line.rstrip(b"\r\n")):]
            out.append(("%s: %s" % (n.decode("ascii"), new_value)).encode("utf-8") + eol)
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            done = True
            continue
        out.append(line)
        i += 1
    if not done:
        raise ValueError("no %s field" % name)
    return b"".join(out)


def stderr_field(stderr_text, name):
    """Values of the `name: value` lines sealgate prints on stderr."""
    return re.findall(r"^%s: (.*?)\r?$" % re.escape(name), stderr_text, re.M)


# Status fields sealgate appends to mail for internal recipients that was
# neither encrypted nor signed.
INBOUND_PLAIN_STATUS = (("X-Sealgate-Decrypted", "no; reason=not-encrypted"),
                        ("X-Sealgate-Signature", "none"))


def with_fields_appended(msg, fields=INBOUND_PLAIN_STATUS):
    """msg with header fields added at the end of its header, in the
    message's own line ending: what an MTA makes of smfi_addheader."""
    eol = b"\r\n" if b"\r\n" in msg.split(b"\n", 1)[0] + b"\n" else b"\n"
    head, sep, body = msg.partition(eol + eol)
    added = b"".join(("%s: %s" % f).encode() + eol for f in fields)
    return head + eol + added.rstrip(b"\r\n") + sep + body if sep else msg
