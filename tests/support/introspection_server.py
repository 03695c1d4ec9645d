"""A real OAuth 2.0 authorization server for the token introspection tests: authlib's
IntrospectionEndpoint (RFC 7662) on Flask, with opaque access tokens kept in memory.

One client may introspect: `bearer-guard`, by HTTP Basic (client_secret_basic) or by
form fields (client_secret_post). Routes:

    GET  /health                       200 "ok" once the server listens
    POST /introspect                   form token=...&token_type_hint=access_token
    POST /control/tokens               {"sub", "scope", "expires_in", "aud"?, "client_id"?,
                                        "claims"?} -> {"access_token", "jti"}
    POST /control/revoke               {"token"}: later introspections say inactive
    GET  /control/calls[?token=T]      {"calls": n} for T, or {"total": n}
    POST /control/reset                zero the call counters (tokens are kept)
    POST /control/delay                {"ms": N}: each later /introspect waits N ms first
    POST /fault/KIND                   a faulty introspection answer, no client auth:
                                       no-active, string-active, expired, huge (20 MiB),
                                       status500, status400, not-json, array, slow (3 s)

Every /introspect and /fault call counts, per presented `token` form value and in total,
whether or not the client authenticated. The `claims` given when minting are merged last
into the introspection answer, so they can add members or replace a standard one.

Usage: python introspection_server.py PORT   (binds 127.0.0.1:PORT)
"""

import logging
import os
import secrets
import sys
import threading
import time
import uuid

# Envoy calls this server over plain HTTP on loopback with its own Host (as.test): authlib
# refuses non-HTTPS requests to hosts other than localhost unless told otherwise.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

ISSUER = "https://as.test"
CLIENT_ID = "bearer-guard"
CLIENT_SECRET = "introspection-client-secret-0123456789"
# Defaults for a minted token that names no audience or client of its own.
DEFAULT_AUD = "bearer-guard-tests"
DEFAULT_TOKEN_CLIENT = "test-client"
HUGE_BYTES = 20 * 1024 * 1024

lock = threading.Lock()
tokens = {}  # access token -> Token
calls = {}  # presented token value -> number of calls
state = {"total": 0, "delay_ms": 0}


class Client(ClientMixin):
    def get_client_id(self):
        return CLIENT_ID

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret.encode(), CLIENT_SECRET.encode())

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")


class Token(TokenMixin):
    def __init__(self, claims, extra):
        self.claims, self.extra, self.revoked = claims, extra, False

    def get_scope(self):
        return self.claims["scope"]

    def get_expires_in(self):
        return self.claims["exp"] - self.claims["iat"]

    def is_expired(self):
        return self.claims["exp"] <= time.time()

    def is_revoked(self):
        return self.revoked


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with lock:
            return tokens.get(token_string)

    def check_permission(self, token, client, request):
        # The one client is the resource server: it may introspect every token.
        return True

    def introspect_token(self, token):
        return {**token.claims, **token.extra}


def query_client(client_id):
    return Client() if client_id == CLIENT_ID else None


app = Flask(__name__)
server = AuthorizationServer(app, query_client=query_client)
server.register_endpoint(Introspection)


def count():
    """Counts a call under the presented `token` form value and in the total."""
    presented = request.form.get("token")
    with lock:
        state["total"] += 1
        if presented is not None:
            calls[presented] = calls.get(presented, 0) + 1
        return state["delay_ms"]


@app.get("/health")
def health():
    return Response("ok", mimetype="text/plain")


@app.post("/introspect")
def introspect():
    delay_ms = count()
    if delay_ms:
        time.sleep(delay_ms / 1000)
    return server.create_endpoint_response(Introspection.ENDPOINT_NAME)


@app.post("/control/tokens")
def mint():
    body = request.get_json(force=True)
    now = int(time.time())
    access_token, jti = secrets.token_urlsafe(32), str(uuid.uuid4())
    claims = {
        "sub": body["sub"],
        "scope": body.get("scope", ""),
        "client_id": body.get("client_id", DEFAULT_TOKEN_CLIENT),
        "iss": ISSUER,
        "aud": body.get("aud", DEFAULT_AUD),
        "exp": now + int(body.get("expires_in", 3600)),
        "iat": now,
        "jti": jti,
        "token_type": "Bearer",
    }
    with lock:
        tokens[access_token] = Token(claims, body.get("claims") or {})
    return jsonify(access_token=access_token, jti=jti)


@app.post("/control/revoke")
def revoke():
    with lock:
        token = tokens.get(request.get_json(force=True)["token"])
        if token is not None:
            token.revoked = True
    return jsonify(revoked=token is not None)


@app.get("/control/calls")
def calls_made():
    presented = request.args.get("token")
    with lock:
        if presented is None:
            return jsonify(total=state["total"])
        return jsonify(calls=calls.get(presented, 0))


@app.post("/control/reset")
def reset():
    with lock:
        calls.clear()
        state["total"] = 0
    return jsonify(reset=True)


@app.post("/control/delay")
def delay():
    with lock:
        state["delay_ms"] = max(0, int(request.get_json(force=True)["ms"]))
    return jsonify(ms=state["delay_ms"])


def huge():
    head, tail = b'{"active": true, "pad": "', b'"}'
    pad = b"x" * (HUGE_BYTES - len(head) - len(tail))
    # A bytes body: the answer announces its Content-Length.
    return Response(head + pad + tail, mimetype="application/json")


def slow():
    time.sleep(3)
    return jsonify(active=True, sub="slow", exp=int(time.time()) + 3600)


def fault_answers(now):
    return {
        "no-active": lambda: jsonify(sub="mallory", scope="items:read", exp=now + 3600),
        "string-active": lambda: jsonify(
            active="true", sub="mallory", scope="items:read", exp=now + 3600
        ),
        "expired": lambda: jsonify(
            active=True, sub="mallory", scope="items:read", exp=now - 3600, iat=now - 7200
        ),
        "huge": huge,
        "status500": lambda: (jsonify(error="server_error"), 500),
        "status400": lambda: (jsonify(error="invalid_request"), 400),
        "not-json": lambda: Response("active=true", mimetype="text/plain"),
        "array": lambda: jsonify([{"active": True}]),
        "slow": slow,
    }


@app.post("/fault/<kind>")
def fault(kind):
    count()
    answer = fault_answers(int(time.time())).get(kind)
    if answer is None:
        return jsonify(error=f"no fault named {kind}"), 404
    return answer()


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
