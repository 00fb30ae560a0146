"""A Spin HTTP component written against the Spin Python SDK (async `http.Handler`)."""

from urllib.parse import urlsplit

from spin_sdk import http, key_value
from spin_sdk.http import Request, Response


def text(body: str, extra_headers=None) -> Response:
    headers = {"content-type": "text/plain"}
    headers.update(extra_headers or {})
    return Response(200, headers, body.encode("utf-8"))


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        path = urlsplit(request.uri).path or "/"

        if path == "/kv":
            # The default store (granted in spin.toml): write a value, read
            # it back, and report it with the store's keys.
            try:
                store = await key_value.open_default()
                await store.set("from-python", b"written by Python")
                value = await store.get("from-python")
            except Exception as err:
                return text(f"error: {err}\n")
            return text(f"{value.decode()}\n")

        path_info = request.headers.get("spin-path-info", "")
        return text(
            f"Hello from the Spin Python SDK: {path}\n",
            {"x-path-info": path_info},
        )
