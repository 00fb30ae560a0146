"""Counts visits in the default key-value store, atomically, with
wasi:keyvalue's `increment`: the Rust component of this app increments the
same key."""

from spin_sdk import http
from spin_sdk.http import Request, Response
from spin_sdk.wit.imports import wasi_keyvalue_atomics_0_2_0_draft2 as atomics
from spin_sdk.wit.imports import wasi_keyvalue_store_0_2_0_draft2 as store


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        bucket = store.open("default")
        visits = atomics.increment(bucket, "visits", 1)
        return Response(
            200,
            {"content-type": "text/plain"},
            f"Python counted visit {visits}\n".encode(),
        )
