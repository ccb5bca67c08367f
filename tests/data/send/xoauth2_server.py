#!/usr/bin/env python3
"""An SMTP server that takes only AUTH XOAUTH2, for tests/send_xoauth2.rs (aiosmtpd).

It listens on 127.0.0.1 on a free port, prints `PORT <n>`, and accepts mail only after
`AUTH XOAUTH2` with --user and one of the --token values (as Exchange Online does with a
token from Entra). Every message is appended to --out as a JSON line with the user and the
token it logged in with.
"""

import argparse
import asyncio
import base64
import json
import logging
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a", encoding="utf-8")

    async def auth_XOAUTH2(self, server, args):
        # AUTH XOAUTH2 <base64("user=" user "\x01auth=Bearer " token "\x01\x01")>
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            text = base64.b64decode(args[1]).decode()
        except Exception:
            return AuthResult(success=False, handled=False)
        fields = dict(
            part.split("=", 1) for part in text.split("\x01") if "=" in part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        ok = user == self.args.user and token in self.args.token
        server.xoauth2_login = (user, token)
        return AuthResult(success=ok, handled=False, auth_data=user)

    async def handle_DATA(self, server, session, envelope):
        user, token = getattr(server, "xoauth2_login", ("", ""))
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "user": user,
            "token": token,
            "auth": bool(session.authenticated),
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return "250 2.0.0 queued"


async def main():
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--token", action="append", default=[])
    args = parser.parse_args()
    handler = Handler(args)

    def factory():
        return SMTP(
            handler,
            hostname="localhost",
            auth_required=True,
            auth_require_tls=False,
            auth_exclude_mechanism=["PLAIN", "LOGIN"],
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    # Ends when the test closes standard input or kills the process.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
