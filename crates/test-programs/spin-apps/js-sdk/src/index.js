// A Spin HTTP component in plain JavaScript: the Spin JS SDK's j2w turns this
// script into a wasi:http/incoming-handler component (no bundler, no imports).
addEventListener('fetch', (event) => {
  const request = event.request;
  const path = new URL(request.url).pathname;
  event.respondWith(
    new Response(`Hello from the Spin JS SDK: ${path}\n`, {
      status: 200,
      headers: {
        'content-type': 'text/plain',
        'x-path-info': request.headers.get('spin-path-info') ?? '',
      },
    }),
  );
});
