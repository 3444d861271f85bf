#!/usr/bin/env python3
"""Test OAuth2 provider for the lab: token endpoint, authorization endpoint and token introspection.

Dovecot's oauth2 passdb (dovecot/start.sh with OAUTH2_INTROSPECTION_URL) asks /introspect whether an access
token is valid, so one server plays both the provider that issues tokens and the check behind IMAP/SMTP
logins. Tests run in parallel processes against this one server: each registers its own client id through
/control/client and only ever touches its own client, so they never collide.

Endpoints (all on 127.0.0.1, stdlib only):
  POST /token            form: grant_type=refresh_token (refresh_token) or authorization_code (code,
                         redirect_uri, code_verifier); client_id + client_secret in the form or HTTP Basic.
                         Errors as RFC 6749 section 5.2 JSON: invalid_client (401), invalid_grant (400) ...
  GET  /authorize        response_type=code, client_id, redirect_uri, state, code_challenge,
                         code_challenge_method=S256: answers 302 to redirect_uri?code=..&state=.. at once
                         (the test plays the browser; consent is implied).
  POST /introspect       form token=...: {"active": true, "username": ...} or {"active": false} (RFC 7662).
  POST /control/client   JSON {client_id, client_secret, username, access_ttl, rotate, refresh_token?}:
                         registers a client and a refresh token (answer: {"refresh_token": ...}).
  POST /control/revoke   JSON {client_id}: revokes every refresh and access token of the client.
  POST /control/expire   JSON {client_id}: expires every access token of the client now.
  POST /control/fail     JSON {client_id, count}: the next COUNT token requests answer 503.
  GET  /control/stats?client_id=X: counters (refreshes, code_exchanges, invalid_grants, introspections,
                         introspections_active, failures) and the live refresh tokens.
"""
import argparse
import base64
import hashlib
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

LOCK = threading.Lock()
CLIENTS = {}   # client_id -> {secret, username, access_ttl, rotate, fail}
REFRESH = {}   # refresh token -> {client_id, active}
ACCESS = {}    # access token -> {client_id, expires, active}
CODES = {}     # code -> {client_id, redirect_uri, challenge}
STATS = {}     # client_id -> counters


def counters(client_id):
    return STATS.setdefault(client_id, {
        "refreshes": 0, "code_exchanges": 0, "invalid_grants": 0, "introspections": 0,
        "introspections_active": 0, "failures": 0, "token_requests": 0,
    })


def issue(client_id, refresh_token=None):
    """New access token (and refresh token when none is kept) for a client; caller holds LOCK."""
    client = CLIENTS[client_id]
    access = "at-" + secrets.token_urlsafe(24)
    ACCESS[access] = {"client_id": client_id, "expires": time.time() + client["access_ttl"], "active": True}
    answer = {"access_token": access, "token_type": "Bearer", "expires_in": client["access_ttl"],
              "scope": "test"}
    if refresh_token is None:
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        REFRESH[refresh_token] = {"client_id": client_id, "active": True}
        answer["refresh_token"] = refresh_token
    return answer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read /control/stats instead
        if self.server.verbose:
            sys.stderr.write("oauth_server: " + (fmt % args) + "\n")

    def reply(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def form(self):
        return {k: v[0] for k, v in parse_qs(self.body().decode(), keep_blank_values=True).items()}

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/authorize":
            return self.authorize(query)
        if url.path == "/control/stats":
            with LOCK:
                client_id = query.get("client_id", "")
                stats = dict(counters(client_id))
                stats["refresh_tokens"] = [t for t, r in REFRESH.items()
                                           if r["client_id"] == client_id and r["active"]]
            return self.reply(200, stats)
        if url.path == "/health":
            return self.reply(200, {"ok": True})
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        path = urlsplit(self.path).path
        if path == "/token":
            return self.token(self.form())
        if path == "/introspect":
            return self.introspect(self.form())
        if path.startswith("/control/"):
            try:
                request = json.loads(self.body() or b"{}")
            except ValueError:
                return self.reply(400, {"error": "bad json"})
            return self.control(path[len("/control/"):], request)
        self.reply(404, {"error": "not_found"})

    def control(self, action, request):
        client_id = request.get("client_id", "")
        with LOCK:
            if action == "client":
                CLIENTS[client_id] = {
                    "secret": request.get("client_secret"), "username": request["username"],
                    "access_ttl": int(request.get("access_ttl", 3600)),
                    "rotate": bool(request.get("rotate", False)), "fail": 0,
                }
                counters(client_id)
                token = request.get("refresh_token") or ("rt-" + secrets.token_urlsafe(24))
                REFRESH[token] = {"client_id": client_id, "active": True}
                return self.reply(200, {"refresh_token": token})
            if client_id not in CLIENTS:
                return self.reply(404, {"error": "unknown client"})
            if action == "revoke":
                for record in list(REFRESH.values()) + list(ACCESS.values()):
                    if record["client_id"] == client_id:
                        record["active"] = False
                return self.reply(200, {"ok": True})
            if action == "expire":
                for record in ACCESS.values():
                    if record["client_id"] == client_id:
                        record["expires"] = 0
                return self.reply(200, {"ok": True})
            if action == "fail":
                CLIENTS[client_id]["fail"] = int(request.get("count", 1))
                return self.reply(200, {"ok": True})
        self.reply(404, {"error": "unknown control action"})

    def client_credentials(self, form):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user, password
            except ValueError:
                return None, None
        return form.get("client_id"), form.get("client_secret")

    def token(self, form):
        client_id, client_secret = self.client_credentials(form)
        with LOCK:
            client = CLIENTS.get(client_id)
            if client is None or (client["secret"] is not None and client["secret"] != client_secret):
                return self.reply(401, {"error": "invalid_client"})
            stats = counters(client_id)
            stats["token_requests"] += 1
            if client["fail"] > 0:
                client["fail"] -= 1
                stats["failures"] += 1
                return self.reply(503, {"error": "temporarily_unavailable"})
            grant = form.get("grant_type")
            if grant == "refresh_token":
                record = REFRESH.get(form.get("refresh_token", ""))
                if record is None or not record["active"] or record["client_id"] != client_id:
                    stats["invalid_grants"] += 1
                    return self.reply(400, {"error": "invalid_grant",
                                            "error_description": "Token has been expired or revoked."})
                stats["refreshes"] += 1
                if client["rotate"]:
                    record["active"] = False
                    return self.reply(200, issue(client_id))
                return self.reply(200, issue(client_id, refresh_token=form["refresh_token"]))
            if grant == "authorization_code":
                code = CODES.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if (code is None or code["client_id"] != client_id
                        or code["redirect_uri"] != form.get("redirect_uri") or code["challenge"] != challenge):
                    stats["invalid_grants"] += 1
                    return self.reply(400, {"error": "invalid_grant"})
                stats["code_exchanges"] += 1
                return self.reply(200, issue(client_id))
            return self.reply(400, {"error": "unsupported_grant_type"})

    def authorize(self, query):
        with LOCK:
            client = CLIENTS.get(query.get("client_id"))
            redirect = query.get("redirect_uri", "")
            if client is None or not redirect.startswith("http://127.0.0.1:"):
                return self.reply(400, {"error": "invalid_request"})
            if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                    or not query.get("code_challenge"):
                return self.reply(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
            code = "code-" + secrets.token_urlsafe(16)
            CODES[code] = {"client_id": query["client_id"], "redirect_uri": redirect,
                           "challenge": query["code_challenge"]}
        target = redirect + ("&" if "?" in redirect else "?") + urlencode({"code": code, "state": query.get("state", "")})
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def introspect(self, form):
        with LOCK:
            record = ACCESS.get(form.get("token", ""))
            if record is None:
                return self.reply(200, {"active": False})
            stats = counters(record["client_id"])
            stats["introspections"] += 1
            if not record["active"] or record["expires"] < time.time():
                return self.reply(200, {"active": False})
            stats["introspections_active"] += 1
            username = CLIENTS[record["client_id"]]["username"]
        self.reply(200, {"active": True, "username": username})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:10080", help="host:port (port 0 picks a free one)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.verbose = args.verbose
    print(f"oauth_server listening on {host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
