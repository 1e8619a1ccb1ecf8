"""Hostile request bytes for ``benchmarks/hostile_clients.py``: oversized heads and bodies, and
malformed HTTP/1.1 (bad request lines, headers, lengths, chunking, other protocols' preambles)."""

from __future__ import annotations

FUZZ_KEYS = [f"fuzz-key-{i:02d}-" + "f" * 16 for i in range(8)]  # role write


def encode(method: str, path: str, key: str | None, body: bytes | None = None,
           extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}"
    if key:
        head += f"authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")



def oversized_cases() -> dict[str, bytes]:
    key = f"authorization: Bearer {FUZZ_KEYS[1]}\r\n"
    big = b"x" * (10 * 2**20)
    return {
        "header 32 MiB": encode("GET", "/healthz", None, extra="x-big: " + "a" * 2**25 + "\r\n"),
        "1 MiB of small headers": encode("GET", "/healthz", None,
                                         extra="".join(f"x-h{i}: v\r\n" for i in range(80000))),
        "headers over the app cap": encode("GET", "/metrics", FUZZ_KEYS[1],
                                           extra="x-pad: " + "p" * 17000 + "\r\n"),
        "body 10 MiB (length)": encode("POST", "/events", FUZZ_KEYS[1], big),
        "body 10 MiB (chunked)": (f"POST /events HTTP/1.1\r\nhost: x\r\n{key}"
                                  "transfer-encoding: chunked\r\ncontent-type: application/json"
                                  "\r\n\r\n").encode() + b"".join(
            b"%x\r\n" % len(big[i:i + 2**20]) + big[i:i + 2**20] + b"\r\n"
            for i in range(0, len(big), 2**20)) + b"0\r\n\r\n",
    }


def malformed_cases() -> list[bytes]:
    k = f"authorization: Bearer {FUZZ_KEYS[2]}\r\n".encode()
    ok = b'{"user_id": "u1"}'
    return [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /\r\n\r\n",
            b"\x00\x01\x02\x03\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
            b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-nul: a\x00b\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\n x-fold: y\r\n\r\n",
            b"GET /he\x7fz HTTP/1.1\r\nhost: x\r\n\r\n", b"GET " + b"/" * 70000 + b" HTTP/1.1\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-length: -1\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-length: abc\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-length: 5\r\n"
            b"content-length: 7\r\n\r\n12345",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-length: 17\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + ok,
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"transfer-encoding: chunked\r\n"
            b"\r\nzz\r\n" + ok + b"\r\n0\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"transfer-encoding: gzip\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-length: 99999999999999999"
            b"9999\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json\r\n"
            b"content-length: 17\r\n\r\n" + ok + b"GARBAGE AFTER\r\n\r\n",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: text/plain\r\n"
            b"content-length: 17\r\n\r\n" + ok,
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json\r\n"
            b"content-length: 4\r\n\r\n\xff\xfe\x00\x01",
            b"POST /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json;"
            b" charset=utf-16\r\ncontent-length: 17\r\n\r\n" + ok,
            b"POST /events HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json\r\n"
            b"content-length: 21\r\n\r\n" + b"[" * 10 + b"]" * 11,
            b"POST /events HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json\r\n"
            b"content-length: 40000\r\n\r\n" + b"[" * 20000 + b"]" * 20000,
            b"POST /events HTTP/1.1\r\nhost: x\r\n" + k + b"content-type: application/json\r\n"
            b"content-length: 16\r\n\r\n" + b'{"events": NaN}',
            b"GET /recommend HTTP/1.1\r\nhost: x\r\n" + k + b"\r\n",
            b"DELETE /events HTTP/1.1\r\nhost: x\r\n" + k + b"\r\n",
            b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n", b"CONNECT x:443 HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET http://evil/healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /%zz%00%ff HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /healthz?" + b"a=1&" * 5000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"\xff" * 40
            + b"\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-api-key: " + b"k" * 9000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.0\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade"
            b"\r\n\r\n"]
