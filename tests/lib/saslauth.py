"""A minimal Dovecot authentication server (the protocol of Postfix's
smtpd_sasl_type = dovecot) for SMTP AUTH PLAIN in the milter tests.

    auth = DovecotAuthServer(os.path.join(tmp, "auth"), {"alice": "pw"})
    PrivatePostfix(..., extra_main={"smtpd_sasl_auth_enable": "yes",
                                    "smtpd_sasl_type": "dovecot",
                                    "smtpd_sasl_path": auth.path})
"""

import base64
import os
import socket
import threading
import uuid


class DovecotAuthServer:
    """Serves Dovecot's authentication protocol (version 1) on a unix
    socket: mechanism PLAIN, one fixed user list. Each smtpd process keeps
    one connection open and sends AUTH/CONT requests over it."""

    def __init__(self, path, users):
        self.path = path
        self.users = dict(users)
        self.logins = []            # (user, success) in order
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        os.chmod(path, 0o666)       # smtpd connects as user postfix
        self._sock.listen(16)
        self._closed = False
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()

    def close(self):
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept_loop(self):
        cuid = 0
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            cuid += 1
            threading.Thread(target=self._serve, args=(conn, cuid),
                             daemon=True).start()

    def _check(self, resp_b64):
        try:
            raw = base64.b64decode(resp_b64, validate=True)
            _authz, user, password = raw.split(b"\0")
            user = user.decode()
            password = password.decode()
        except (ValueError, UnicodeDecodeError):
            return None, False
        ok = self.users.get(user) == password
        with self._lock:
            self.logins.append((user, ok))
        return user, ok

    def _serve(self, conn, cuid):
        try:
            conn.sendall(("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n"
                          "SPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n"
                          % (os.getpid(), cuid, uuid.uuid4().hex)).encode())
            pending = set()
            for line in conn.makefile("rb"):
                fields = line.rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
                cmd = fields[0]
                if cmd == "AUTH" and len(fields) >= 3:
                    rid, mech = fields[1], fields[2]
                    params = dict(f.split("=", 1) for f in fields[3:] if "=" in f)
                    if mech.upper() != "PLAIN":
                        conn.sendall(("FAIL\t%s\treason=unsupported mechanism\n"
                                      % rid).encode())
                    elif "resp" in params:
                        self._answer(conn, rid, params["resp"])
                    else:
                        pending.add(rid)
                        conn.sendall(("CONT\t%s\t\n" % rid).encode())
                elif cmd == "CONT" and len(fields) >= 3 and fields[1] in pending:
                    pending.discard(fields[1])
                    self._answer(conn, fields[1], fields[2])
                # VERSION and CPID from the client need no answer.
        except OSError:
            pass
        finally:
            conn.close()

    def _answer(self, conn, rid, resp_b64):
        user, ok = self._check(resp_b64)
        if ok:
            conn.sendall(("OK\t%s\tuser=%s\n" % (rid, user)).encode())
        else:
            conn.sendall(("FAIL\t%s\treason=invalid credentials\n" % rid).encode())
