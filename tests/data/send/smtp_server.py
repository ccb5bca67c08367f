#!/usr/bin/env python3
"""A real SMTP server for tests/send.rs, built on aiosmtpd.

It listens on 127.0.0.1 on a free port and prints `PORT <n>` on standard output once it
accepts connections. Every message accepted is appended to --out as one JSON line:
{"from": ..., "to": [...], "data": "<the message as received>"}.

Options make it behave like a real provider: --reject ADDR answers 550 to that recipient,
--tempfail-once ADDR answers 451 the first time only, --tls CERT KEY offers STARTTLS and
then requires it, together with AUTH (--user/--password), before any mail.
"""

import argparse
import asyncio
import json
import sys
import logging

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a", encoding="utf-8")
        self.failed_once = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
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
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "auth": bool(session.authenticated),
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return "250 2.0.0 queued"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers 535 to a failed login.
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    # aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on each login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--tempfail-once", action="append", default=[])
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--user", default="campaign")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    args.reject = [a.lower() for a in args.reject]
    args.tempfail_once = [a.lower() for a in args.tempfail_once]
    handler = Handler(args)

    def factory():
        options = {"hostname": "localhost", "data_size_limit": 1 << 20}
        if args.tls:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*args.tls)
            options.update(
                tls_context=context,
                require_starttls=True,
                authenticator=authenticator(args.user, args.password),
                auth_required=True,
                auth_require_tls=True,
            )
        return SMTP(handler, **options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    # Ends when the test closes standard input or kills the process.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
