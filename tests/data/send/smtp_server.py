#!/usr/bin/env python3
"""A real SMTP server for tests/send.rs, built on aiosmtpd.

It listens on 127.0.0.1 on a free port and prints `PORT <n>` on standard output once it
accepts connections. Every message accepted is appended to --out as one JSON line:
{"from": ..., "to": [...], "data": "<the message as received>"}.

Options make it behave like a real provider: --reject ADDR answers 550 to that recipient,
--tempfail-once ADDR answers 451 the first time only, --stall-after N stops answering after
N messages (the connection left open), --tempfail-always ADDR answers 450 every
time (a mailbox that stays busy), --mail-from-reply REPLY refuses every sender (an account
that may not send as that sender), --tls CERT KEY offers STARTTLS and then requires it,
together with AUTH (--user/--password), before any mail; with --implicit-tls the whole
connection is TLS instead (smtps), and --auth-mechanism LOGIN offers that mechanism only.
"""

import argparse
import asyncio
import json
import sys
import logging
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a", encoding="utf-8")
        self.failed_once = set()
        self.taken = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.args.mail_from_reply:
            return self.args.mail_from_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.args.tempfail_always:
            return "450 4.2.1 <%s>: mailbox busy, try again later" % address
        if address.lower() in self.args.reject:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if address.lower() in self.args.tempfail_once and address not in self.failed_once:
            self.failed_once.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.delay:
            await asyncio.sleep(self.args.delay)
        if self.args.stall_after is not None:
            if self.taken >= self.args.stall_after:
                # A server that stops answering mid-transaction, connection left open.
                await asyncio.sleep(3600)
            self.taken += 1
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "tls": session.ssl is not None or bool(self.args.implicit_tls),
            "auth": bool(session.authenticated),
            "received_at": time.time(),
            "auth_mechanisms": getattr(server, "auth_mechanisms_used", []),
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        if self.args.hang_up_after_data:
            # Took the message, then the connection breaks before the reply.
            server.transport.close()
        return "250 2.0.0 queued"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers 535 to a failed login.
        if ok:
            server.auth_mechanisms_used = getattr(server, "auth_mechanisms_used", [])
            server.auth_mechanisms_used.append(mechanism)
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    # aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on each login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    # With --implicit-tls the socket is TLS, which aiosmtpd's warning does not know.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--tempfail-once", action="append", default=[])
    parser.add_argument("--tempfail-always", action="append", default=[])
    parser.add_argument("--mail-from-reply")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth-mechanism")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall-after", type=int)
    parser.add_argument("--hang-up-after-data", action="store_true")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--user", default="campaign")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    args.reject = [a.lower() for a in args.reject]
    args.tempfail_once = [a.lower() for a in args.tempfail_once]
    args.tempfail_always = [a.lower() for a in args.tempfail_always]
    handler = Handler(args)

    context = None
    if args.tls:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)

    def factory():
        options = {"hostname": "localhost", "data_size_limit": 1 << 20}
        if context is not None:
            options.update(
                authenticator=authenticator(args.user, args.password),
                auth_required=True,
            )
            if args.implicit_tls:
                # The socket is TLS from the first byte; aiosmtpd's own check looks for STARTTLS.
                options.update(auth_require_tls=False)
            else:
                options.update(
                    tls_context=context, require_starttls=True, auth_require_tls=True
                )
            if args.auth_mechanism:
                others = {"PLAIN", "LOGIN"} - {args.auth_mechanism.upper()}
                options.update(auth_exclude_mechanism=sorted(others))
        return SMTP(handler, **options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", 0, ssl=context if args.implicit_tls else None
    )
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    # Ends when the test closes standard input or kills the process.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
