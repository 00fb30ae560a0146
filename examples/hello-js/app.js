// A wasi:http component in JavaScript: the service-worker style `fetch` event.
addEventListener("fetch", (event) =>
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      const body = event.request.method === "POST" ? await event.request.text() : "";
      return new Response(
        `Hello from JavaScript on Ferry! You asked for ${url.pathname}${url.search}${body ? `, sent ${body.length} bytes` : ""}\n`,
        { headers: { "content-type": "text/plain" } },
      );
    })(),
  ),
);
