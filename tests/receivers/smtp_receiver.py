#!/usr/bin/python3
"""A real SMTP server for the e-mail notification tests (tests/common/smtp.rs), on
Debian's aiosmtpd.

    smtp_receiver.py serve --port P --folder F --mode starttls|tls|plain
                           --cert C --key K --user U --password W
    smtp_receiver.py parse FILE

`serve` listens on 127.0.0.1:P until killed:

- starttls: plain connection, STARTTLS offered and required before anything else,
  AUTH (PLAIN, LOGIN) offered only once encrypted and required before MAIL;
- tls: TLS from the first byte (port 465 style), AUTH required;
- plain: no TLS at all, AUTH offered and optional, so a client that sends credentials
  in clear is seen doing it.

Every login attempt is appended to F/logins.jsonl (the login name and whether it was
accepted, never the password). Every message is written as F/NNN.eml (the raw data) and
then F/NNN.json (the envelope), the second marking the first complete. F/ready appears
once the server listens. The recipient nobody@… is refused (550) and later@… deferred
(451).

`parse` prints a received message as JSON: its decoded headers and each text part.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class Handler:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # Two recipients the tests use to see a refusal and a deferral.
        local = address.split("@")[0]
        if local == "nobody":
            return "550 5.1.1 no such mailbox here"
        if local == "later":
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.folder, "%03d" % self.count)
        write_atomic(base + ".eml", envelope.original_content or envelope.content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
        }
        write_atomic(base + ".json", json.dumps(meta).encode())
        return "250 2.0.0 OK: queued"


def authenticator_for(folder, user, password, encrypted_from_start):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else None
        line = {
            "mechanism": mechanism,
            "login": login,
            "ok": ok,
            "encrypted": encrypted_from_start or session.ssl is not None,
        }
        with open(os.path.join(folder, "logins.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")
        return AuthResult(success=ok, handled=False)

    return authenticate


def serve(args):
    context = None
    if args.mode in ("starttls", "tls"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    authenticator = authenticator_for(args.folder, args.user, args.password, args.mode == "tls")
    handler = Handler(args.folder)
    if args.mode == "starttls":
        options = dict(tls_context=context, require_starttls=True, auth_require_tls=True, auth_required=True)
    elif args.mode == "tls":
        options = dict(auth_require_tls=False, auth_required=True)
    else:
        options = dict(auth_require_tls=False, auth_required=False)

    def factory():
        return SMTP(handler, hostname="holdfast-test-smtp", authenticator=authenticator, **options)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", args.port, ssl=context if args.mode == "tls" else None)
    )
    write_atomic(os.path.join(args.folder, "ready"), b"")
    try:
        loop.run_forever()
    finally:
        server.close()


def parse(path):
    with open(path, "rb") as f:
        message = email.message_from_bytes(f.read(), policy=email.policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "text": part.get_content(),
        })
    headers = {name.lower(): str(value) for name, value in message.items()}
    out = {
        "content_type": message.get_content_type(),
        "headers": headers,
        "parts": parts,
    }
    json.dump(out, sys.stdout)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--folder", required=True)
    s.add_argument("--mode", choices=["starttls", "tls", "plain"], required=True)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    p = sub.add_parser("parse")
    p.add_argument("file")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        parse(args.file)


if __name__ == "__main__":
    main()
