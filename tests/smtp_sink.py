#!/usr/bin/python3
"""A real SMTP server for the tests (aiosmtpd, Debian 12's python3-aiosmtpd 1.4).

Started by scripts/test-services.sh; listens on 127.0.0.1 only.

  smtp_sink.py --port N --spool DIR --user U --password P
               [--tls-cert CERT --tls-key KEY] [--no-starttls]

With a certificate it offers STARTTLS (not required: what the client does is
what the tests check) and AUTH PLAIN/LOGIN only after STARTTLS. With
--no-starttls it offers no STARTTLS but advertises AUTH in the clear, so a
test can prove the client refuses to send credentials there. Both require
AUTH before MAIL.

SPOOL/mail/<rcpt>/<time_ns>-<n>.eml   raw message bytes (after dot-unstuffing),
                                      one file per accepted recipient
SPOOL/events.log                      `<time_ns> <event> <detail>` lines:
    connect PEERPORT | starttls | auth USER ok|fail | mail FROM | rcpt TO
    | reply CODE TO (injected failures) | stored TO FILE
SPOOL/counters.json                   per-address counters of the one-shot
                                      failures (survive a restart)

Failure injection, by `+tag`s in the recipient's local part (several tags may
be combined, `+`-separated; unknown tags are ignored, so `+<unique-id>` is fine):
  +t451x<N>   the first N RCPT TO for that exact address: 451 4.3.0
  +t550       RCPT TO always 550 5.1.1
  +t554data   end of DATA 554 5.6.0
  +t452data   end of DATA 452 4.3.1 the first time for that address
  +slow<S>    sleep S seconds (may be fractional) before answering end of DATA

Prints `smtp_sink: ready on 127.0.0.1:PORT` on stdout once listening.
SIGTERM/SIGINT stop it.
"""
import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

R451 = "451 4.3.0 Try again later"
R550 = "550 5.1.1 Mailbox unavailable"
R554 = "554 5.6.0 Message rejected"
R452 = "452 4.3.1 Insufficient storage"


def tags_of(address):
    local = address.rsplit("@", 1)[0]
    return [t.lower() for t in local.split("+")[1:]]


def safe_dir_name(address):
    name = address.replace("/", "_").replace("\0", "_")
    return "_" + name if name in ("", ".", "..") else name


class Spool:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "mail"), exist_ok=True)
        self.events = open(os.path.join(root, "events.log"), "a", encoding="utf-8")
        self.counters_path = os.path.join(root, "counters.json")
        try:
            with open(self.counters_path, encoding="utf-8") as f:
                self.counters = json.load(f)
        except FileNotFoundError:
            self.counters = {}
        self.seq = 0

    def event(self, name, detail=""):
        line = f"{time.time_ns()} {name} {detail}".rstrip()
        self.events.write(line + "\n")
        self.events.flush()

    def bump(self, key):
        """Increments counter `key`, persists it, returns the value before."""
        before = self.counters.get(key, 0)
        self.counters[key] = before + 1
        self._write_atomic(self.counters_path, json.dumps(self.counters).encode())
        return before

    def store(self, rcpt, content):
        folder = os.path.join(self.root, "mail", safe_dir_name(rcpt))
        os.makedirs(folder, exist_ok=True)
        self.seq += 1
        path = os.path.join(folder, f"{time.time_ns()}-{self.seq}.eml")
        self._write_atomic(path, content)
        return path

    @staticmethod
    def _write_atomic(path, data):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class Handler:
    # aiosmtpd calls every `handle_*` attribute as a hook: no helpers named so.
    def __init__(self, spool):
        self.spool = spool

    def handle_STARTTLS(self, server, session, envelope):  # synchronous hook
        self.spool.event("starttls")
        return True

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.spool.event("mail", address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.spool.event("rcpt", address)
        for tag in tags_of(address):
            if tag == "t550":
                return self._reply(R550, address)
            m = re.fullmatch(r"t451x(\d+)", tag)
            if m and self.spool.bump(f"t451:{address}") < int(m.group(1)):
                return self._reply(R451, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        delay = 0.0
        for rcpt in envelope.rcpt_tos:
            for tag in tags_of(rcpt):
                m = re.fullmatch(r"slow(\d+(?:\.\d*)?)", tag)
                if m:
                    delay = max(delay, float(m.group(1)))
        if delay:
            await asyncio.sleep(delay)
        for rcpt in envelope.rcpt_tos:
            tags = tags_of(rcpt)
            if "t554data" in tags:
                return self._reply(R554, rcpt)
            if "t452data" in tags and self.spool.bump(f"t452data:{rcpt}") == 0:
                return self._reply(R452, rcpt)
        for rcpt in envelope.rcpt_tos:
            path = self.spool.store(rcpt, envelope.content)
            self.spool.event("stored", f"{rcpt} {path}")
        return "250 OK queued"

    def _reply(self, status, address):
        self.spool.event("reply", f"{status.split()[0]} {address}")
        return status


class SinkSMTP(SMTP):
    def __init__(self, handler, spool, **kwargs):
        super().__init__(handler, **kwargs)
        self.spool = spool

    def connection_made(self, transport):
        if self._original_transport is None:  # not the re-entry after STARTTLS
            peer = transport.get_extra_info("peername")
            self.spool.event("connect", str(peer[1] if peer else "?"))
        super().connection_made(transport)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()
    if not a.no_starttls and not (a.tls_cert and a.tls_key):
        p.error("--tls-cert and --tls-key are needed unless --no-starttls")

    spool = Spool(os.path.abspath(a.spool))
    handler = Handler(spool)
    user, password = a.user.encode(), a.password.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            spool.event("auth", "? fail")
            return AuthResult(success=False, handled=False)
        ok = auth_data.login == user and auth_data.password == password
        name = auth_data.login.decode("utf-8", "replace").replace(" ", "_") or "-"
        spool.event("auth", f"{name} {'ok' if ok else 'fail'}")
        return AuthResult(success=ok, handled=False)

    tls = None
    if not a.no_starttls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)

    # aiosmtpd warns (warnings + logging) about AUTH without TLS, intended
    # here, and logs a deprecation warning of its own on every AUTH.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    def factory():
        return SinkSMTP(
            handler, spool,
            hostname="localhost", decode_data=False,
            tls_context=tls, require_starttls=False,
            auth_required=True, auth_require_tls=not a.no_starttls,
            authenticator=authenticator, timeout=60,
        )

    async def serve():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        server = await loop.create_server(factory, host="127.0.0.1", port=a.port,
                                          reuse_address=True)
        print(f"smtp_sink: ready on 127.0.0.1:{a.port}", flush=True)
        await stop
        server.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
