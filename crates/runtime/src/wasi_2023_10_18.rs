//! `wasi:http` and `wasi:io` as of the 2023-10-18 release candidate of WASI
//! 0.2, which spin-sdk 2.x components export and import.
//!
//! Nothing here is a second HTTP implementation. The candidate's WIT
//! (`wit/wasi-http-2023-10-18`) is bound with every resource mapped to the
//! type wasmtime-wasi-http and wasmtime-wasi-io use for WASI 0.2, and every
//! function calls the WASI 0.2 implementation, converting the few records
//! and variants whose shape changed. So an `input-stream` the candidate's
//! `incoming-body.stream` returns is the same table entry WASI 0.2 would
//! return, and the request and response-outparam handed to the candidate's
//! `incoming-handler` are made by the same code as for a 0.2 guest. Outbound
//! requests go through the same hooks, so `allowed_outbound_hosts` applies
//! unchanged.
//!
//! Where the candidate has no way to report an error that 0.2 reports (a
//! forbidden header, a body longer than its `content-length`), the guest
//! traps with the reason, which Ferry logs.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_http::p2::bindings::http as latest_http;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest,
    HostOutgoingResponse, HostResponseOutparam,
};
use wasmtime_wasi_http::{FieldMap, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_io::bindings::wasi::io as latest_io;
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, StreamError};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/wasi-http-2023-10-18",
        world: "wasi:http/proxy@0.2.0-rc-2023-10-18",
        imports: {
            "wasi:io/poll.poll-list": async | trappable,
            "wasi:io/poll.poll-one": async | trappable,
            "wasi:io/streams.[drop]input-stream": async | trappable,
            "wasi:io/streams.[drop]output-stream": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-read": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-skip": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-zeroes-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-splice": async | trappable,
            "wasi:io/streams.[method]output-stream.forward": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:io/poll.pollable": wasmtime_wasi_io::poll::DynPollable,
            "wasi:io/streams.input-stream": wasmtime_wasi_io::streams::DynInputStream,
            "wasi:io/streams.output-stream": wasmtime_wasi_io::streams::DynOutputStream,
            "wasi:io/streams.error": wasmtime_wasi_io::streams::Error,
            "wasi:http/types.fields": wasmtime_wasi_http::FieldMap,
            "wasi:http/types.incoming-request": wasmtime_wasi_http::p2::types::HostIncomingRequest,
            "wasi:http/types.outgoing-request": wasmtime_wasi_http::p2::types::HostOutgoingRequest,
            "wasi:http/types.response-outparam": wasmtime_wasi_http::p2::types::HostResponseOutparam,
            "wasi:http/types.incoming-response": wasmtime_wasi_http::p2::types::HostIncomingResponse,
            "wasi:http/types.outgoing-response": wasmtime_wasi_http::p2::types::HostOutgoingResponse,
            "wasi:http/types.future-incoming-response": wasmtime_wasi_http::p2::types::HostFutureIncomingResponse,
            "wasi:http/types.incoming-body": wasmtime_wasi_http::p2::body::HostIncomingBody,
            "wasi:http/types.outgoing-body": wasmtime_wasi_http::p2::body::HostOutgoingBody,
            "wasi:http/types.future-trailers": wasmtime_wasi_http::p2::body::HostFutureTrailers,
        },
        trappable_error_type: {
            "wasi:io/streams.stream-error" => wasmtime_wasi_io::streams::StreamError,
        },
    });
}

use generated::wasi::http::{outgoing_handler, types};
use generated::wasi::io::{poll, streams};
pub(crate) use generated::{Proxy, ProxyPre};

/// The export a component serves through this module.
pub(crate) const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2.0-rc-2023-10-18";

/// The candidate's `wasi:io` functions work on the store's resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

struct Http;

impl HasData for Http {
    type Data<'a> = WasiHttpCtxView<'a>;
}

/// Adds the candidate's `wasi:io/{poll,streams}` and
/// `wasi:http/{types,outgoing-handler}` to a linker that has WASI 0.2 HTTP.
pub(crate) fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: WasiHttpView + Send + 'static,
{
    poll::add_to_linker::<T, Io>(linker, |state| state.http().table)?;
    streams::add_to_linker::<T, Io>(linker, |state| state.http().table)?;
    types::add_to_linker::<T, Http>(linker, T::http)?;
    outgoing_handler::add_to_linker::<T, Http>(linker, T::http)?;
    Ok(())
}

// ---- wasi:io ----

impl poll::Host for ResourceTable {
    async fn poll_list(&mut self, list: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        latest_io::poll::Host::poll(self, list).await
    }

    async fn poll_one(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        latest_io::poll::HostPollable::block(self, pollable).await
    }
}

impl poll::HostPollable for ResourceTable {
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        latest_io::poll::HostPollable::drop(self, pollable)
    }
}

impl streams::Host for ResourceTable {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(
            match latest_io::streams::Host::convert_stream_error(self, err)? {
                latest_io::streams::StreamError::Closed => streams::StreamError::Closed,
                latest_io::streams::StreamError::LastOperationFailed(error) => {
                    streams::StreamError::LastOperationFailed(error)
                }
            },
        )
    }
}

impl streams::HostError for ResourceTable {
    fn to_debug_string(
        &mut self,
        error: Resource<wasmtime_wasi_io::streams::Error>,
    ) -> wasmtime::Result<String> {
        latest_io::error::HostError::to_debug_string(self, error)
    }

    fn drop(&mut self, error: Resource<wasmtime_wasi_io::streams::Error>) -> wasmtime::Result<()> {
        latest_io::error::HostError::drop(self, error)
    }
}

impl streams::HostInputStream for ResourceTable {
    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> Result<Vec<u8>, StreamError> {
        latest_io::streams::HostInputStream::read(self, stream, len)
    }

    async fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> Result<Vec<u8>, StreamError> {
        latest_io::streams::HostInputStream::blocking_read(self, stream, len).await
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> Result<u64, StreamError> {
        latest_io::streams::HostInputStream::skip(self, stream, len)
    }

    async fn blocking_skip(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> Result<u64, StreamError> {
        latest_io::streams::HostInputStream::blocking_skip(self, stream, len).await
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        latest_io::streams::HostInputStream::subscribe(self, stream)
    }

    async fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        latest_io::streams::HostInputStream::drop(self, stream).await
    }
}

impl streams::HostOutputStream for ResourceTable {
    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> Result<u64, StreamError> {
        latest_io::streams::HostOutputStream::check_write(self, stream)
    }

    fn write(
        &mut self,
        stream: Resource<DynOutputStream>,
        contents: Vec<u8>,
    ) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::write(self, stream, contents)
    }

    async fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        contents: Vec<u8>,
    ) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::blocking_write_and_flush(self, stream, contents).await
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::flush(self, stream)
    }

    async fn blocking_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::blocking_flush(self, stream).await
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        latest_io::streams::HostOutputStream::subscribe(self, stream)
    }

    fn write_zeroes(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::write_zeroes(self, stream, len)
    }

    async fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> Result<(), StreamError> {
        latest_io::streams::HostOutputStream::blocking_write_zeroes_and_flush(self, stream, len)
            .await
    }

    // The candidate passes the source stream by value (0.2 borrows it): the
    // guest gives it up, so the host drops it once the call is done.

    fn splice(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> Result<u64, StreamError> {
        let borrowed = Resource::new_borrow(src.rep());
        let result = latest_io::streams::HostOutputStream::splice(self, stream, borrowed, len);
        self.delete(src)?;
        result
    }

    async fn blocking_splice(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> Result<u64, StreamError> {
        let borrowed = Resource::new_borrow(src.rep());
        let result =
            latest_io::streams::HostOutputStream::blocking_splice(self, stream, borrowed, len)
                .await;
        self.delete(src)?;
        result
    }

    /// Copies the whole of `src` into the stream, until `src` ends.
    async fn forward(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
    ) -> Result<u64, StreamError> {
        let mut total = 0u64;
        let result = loop {
            let (to, from) = (
                Resource::new_borrow(stream.rep()),
                Resource::new_borrow(src.rep()),
            );
            match latest_io::streams::HostOutputStream::blocking_splice(self, to, from, u64::MAX)
                .await
            {
                Ok(n) => total += n,
                Err(StreamError::Closed) => break Ok(total),
                Err(error) => break Err(error),
            }
        };
        self.delete(src)?;
        result
    }

    async fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        latest_io::streams::HostOutputStream::drop(self, stream).await
    }
}

// ---- wasi:http ----

/// The candidate's four-way error, from 0.2's error code.
fn candidate_error(code: ErrorCode) -> types::Error {
    let message = match &code {
        ErrorCode::HttpRequestDenied => {
            "the destination is not in the component's allowed_outbound_hosts".to_owned()
        }
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    };
    match code {
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestUriTooLong => {
            types::Error::InvalidUrl(message)
        }
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout => types::Error::TimeoutError(message),
        ErrorCode::HttpProtocolError
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::HttpResponseHeaderSectionSize(_)
        | ErrorCode::HttpResponseHeaderSize(_)
        | ErrorCode::HttpResponseBodySize(_)
        | ErrorCode::HttpResponseTrailerSectionSize(_)
        | ErrorCode::HttpResponseTrailerSize(_)
        | ErrorCode::HttpResponseTransferCoding(_)
        | ErrorCode::HttpResponseContentCoding(_)
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => types::Error::ProtocolError(message),
        _ => types::Error::UnexpectedError(message),
    }
}

/// 0.2's error code for a guest that answers with the candidate's error.
fn latest_error(error: types::Error) -> ErrorCode {
    let message = match error {
        types::Error::InvalidUrl(m) => format!("invalid URL: {m}"),
        types::Error::TimeoutError(m) => format!("timeout: {m}"),
        types::Error::ProtocolError(m) => format!("protocol error: {m}"),
        types::Error::UnexpectedError(m) => m,
    };
    ErrorCode::InternalError(Some(message))
}

fn latest_method(method: types::Method) -> latest_http::types::Method {
    use latest_http::types::Method as M;
    match method {
        types::Method::Get => M::Get,
        types::Method::Head => M::Head,
        types::Method::Post => M::Post,
        types::Method::Put => M::Put,
        types::Method::Delete => M::Delete,
        types::Method::Connect => M::Connect,
        types::Method::Options => M::Options,
        types::Method::Trace => M::Trace,
        types::Method::Patch => M::Patch,
        types::Method::Other(other) => M::Other(other),
    }
}

fn candidate_method(method: latest_http::types::Method) -> types::Method {
    use latest_http::types::Method as M;
    match method {
        M::Get => types::Method::Get,
        M::Head => types::Method::Head,
        M::Post => types::Method::Post,
        M::Put => types::Method::Put,
        M::Delete => types::Method::Delete,
        M::Connect => types::Method::Connect,
        M::Options => types::Method::Options,
        M::Trace => types::Method::Trace,
        M::Patch => types::Method::Patch,
        M::Other(other) => types::Method::Other(other),
    }
}

fn latest_scheme(scheme: types::Scheme) -> latest_http::types::Scheme {
    match scheme {
        types::Scheme::Http => latest_http::types::Scheme::Http,
        types::Scheme::Https => latest_http::types::Scheme::Https,
        types::Scheme::Other(other) => latest_http::types::Scheme::Other(other),
    }
}

fn candidate_scheme(scheme: latest_http::types::Scheme) -> types::Scheme {
    match scheme {
        latest_http::types::Scheme::Http => types::Scheme::Http,
        latest_http::types::Scheme::Https => types::Scheme::Https,
        latest_http::types::Scheme::Other(other) => types::Scheme::Other(other),
    }
}

/// A header error the candidate cannot report: the guest traps with it.
fn header_trap(
    view: &mut WasiHttpCtxView<'_>,
    error: wasmtime_wasi_http::p2::HeaderError,
    name: &str,
) -> wasmtime::Error {
    match latest_http::types::Host::convert_header_error(view, error) {
        Ok(error) => wasmtime::format_err!("header `{name}` refused: {error:?}"),
        Err(trap) => trap,
    }
}

/// An HTTP error the candidate cannot report: the guest traps with it.
fn http_trap(
    view: &mut WasiHttpCtxView<'_>,
    error: wasmtime_wasi_http::p2::HttpError,
    doing: &str,
) -> wasmtime::Error {
    match latest_http::types::Host::convert_error_code(view, error) {
        Ok(code) => wasmtime::format_err!("{doing}: {code:?}"),
        Err(trap) => trap,
    }
}

/// A borrowed handle to the same resource: 0.2 takes some arguments by
/// value that the candidate lends, and the reverse.
fn borrow<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

impl types::Host for WasiHttpCtxView<'_> {}

impl types::HostFields for WasiHttpCtxView<'_> {
    fn new(&mut self, entries: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Resource<FieldMap>> {
        let names: Vec<String> = entries.iter().map(|(name, _)| name.clone()).collect();
        latest_http::types::HostFields::from_list(self, entries)
            .map_err(|e| header_trap(self, e, &names.join(", ")))
    }

    fn get(&mut self, fields: Resource<FieldMap>, name: String) -> wasmtime::Result<Vec<Vec<u8>>> {
        latest_http::types::HostFields::get(self, fields, name)
    }

    fn set(
        &mut self,
        fields: Resource<FieldMap>,
        name: String,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        latest_http::types::HostFields::set(self, fields, name.clone(), values)
            .map_err(|e| header_trap(self, e, &name))
    }

    fn delete(&mut self, fields: Resource<FieldMap>, name: String) -> wasmtime::Result<()> {
        latest_http::types::HostFields::delete(self, fields, name.clone())
            .map_err(|e| header_trap(self, e, &name))
    }

    fn append(
        &mut self,
        fields: Resource<FieldMap>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        latest_http::types::HostFields::append(self, fields, name.clone(), value)
            .map_err(|e| header_trap(self, e, &name))
    }

    fn entries(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        latest_http::types::HostFields::entries(self, fields)
    }

    fn clone(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<Resource<FieldMap>> {
        latest_http::types::HostFields::clone(self, fields)
    }

    fn drop(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<()> {
        latest_http::types::HostFields::drop(self, fields)
    }
}

impl types::HostIncomingRequest for WasiHttpCtxView<'_> {
    fn method(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<types::Method> {
        latest_http::types::HostIncomingRequest::method(self, request).map(candidate_method)
    }

    fn path_with_query(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<String>> {
        latest_http::types::HostIncomingRequest::path_with_query(self, request)
    }

    fn scheme(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<types::Scheme>> {
        Ok(latest_http::types::HostIncomingRequest::scheme(self, request)?.map(candidate_scheme))
    }

    fn authority(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<String>> {
        latest_http::types::HostIncomingRequest::authority(self, request)
    }

    fn headers(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Resource<FieldMap>> {
        latest_http::types::HostIncomingRequest::headers(self, request)
    }

    fn consume(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Result<Resource<HostIncomingBody>, ()>> {
        latest_http::types::HostIncomingRequest::consume(self, request)
    }

    fn drop(&mut self, request: Resource<HostIncomingRequest>) -> wasmtime::Result<()> {
        latest_http::types::HostIncomingRequest::drop(self, request)
    }
}

impl types::HostOutgoingRequest for WasiHttpCtxView<'_> {
    fn new(
        &mut self,
        method: types::Method,
        path_with_query: Option<String>,
        scheme: Option<types::Scheme>,
        authority: Option<String>,
        headers: Resource<FieldMap>,
    ) -> wasmtime::Result<Resource<HostOutgoingRequest>> {
        use latest_http::types::HostOutgoingRequest as Latest;
        // 0.2 takes the headers by value; the candidate only lends them.
        let headers = latest_http::types::HostFields::clone(self, headers)?;
        let request = Latest::new(self, headers)?;
        let set = [
            Latest::set_method(self, borrow(&request), latest_method(method))?,
            Latest::set_path_with_query(self, borrow(&request), path_with_query)?,
            Latest::set_scheme(self, borrow(&request), scheme.map(latest_scheme))?,
            Latest::set_authority(self, borrow(&request), authority)?,
        ];
        if set.iter().any(Result::is_err) {
            Latest::drop(self, request)?;
            wasmtime::bail!("outgoing-request: invalid method, path, scheme or authority");
        }
        Ok(request)
    }

    fn write(
        &mut self,
        request: Resource<HostOutgoingRequest>,
    ) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
        latest_http::types::HostOutgoingRequest::body(self, request)
    }

    fn drop(&mut self, request: Resource<HostOutgoingRequest>) -> wasmtime::Result<()> {
        latest_http::types::HostOutgoingRequest::drop(self, request)
    }
}

impl types::HostResponseOutparam for WasiHttpCtxView<'_> {
    fn set(
        &mut self,
        param: Resource<HostResponseOutparam>,
        response: Result<Resource<HostOutgoingResponse>, types::Error>,
    ) -> wasmtime::Result<()> {
        latest_http::types::HostResponseOutparam::set(self, param, response.map_err(latest_error))
    }

    fn drop(&mut self, param: Resource<HostResponseOutparam>) -> wasmtime::Result<()> {
        latest_http::types::HostResponseOutparam::drop(self, param)
    }
}

impl types::HostIncomingResponse for WasiHttpCtxView<'_> {
    fn status(&mut self, response: Resource<HostIncomingResponse>) -> wasmtime::Result<u16> {
        latest_http::types::HostIncomingResponse::status(self, response)
    }

    fn headers(
        &mut self,
        response: Resource<HostIncomingResponse>,
    ) -> wasmtime::Result<Resource<FieldMap>> {
        latest_http::types::HostIncomingResponse::headers(self, response)
    }

    fn consume(
        &mut self,
        response: Resource<HostIncomingResponse>,
    ) -> wasmtime::Result<Result<Resource<HostIncomingBody>, ()>> {
        latest_http::types::HostIncomingResponse::consume(self, response)
    }

    fn drop(&mut self, response: Resource<HostIncomingResponse>) -> wasmtime::Result<()> {
        latest_http::types::HostIncomingResponse::drop(self, response)
    }
}

impl types::HostIncomingBody for WasiHttpCtxView<'_> {
    fn stream(
        &mut self,
        body: Resource<HostIncomingBody>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, ()>> {
        latest_http::types::HostIncomingBody::stream(self, body)
    }

    fn finish(
        &mut self,
        body: Resource<HostIncomingBody>,
    ) -> wasmtime::Result<Resource<HostFutureTrailers>> {
        latest_http::types::HostIncomingBody::finish(self, body)
    }

    fn drop(&mut self, body: Resource<HostIncomingBody>) -> wasmtime::Result<()> {
        latest_http::types::HostIncomingBody::drop(self, body)
    }
}

impl types::HostFutureTrailers for WasiHttpCtxView<'_> {
    fn subscribe(
        &mut self,
        trailers: Resource<HostFutureTrailers>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        latest_http::types::HostFutureTrailers::subscribe(self, trailers)
    }

    fn get(
        &mut self,
        trailers: Resource<HostFutureTrailers>,
    ) -> wasmtime::Result<Option<Result<Resource<FieldMap>, types::Error>>> {
        Ok(
            match latest_http::types::HostFutureTrailers::get(self, trailers)? {
                None => None,
                // The candidate always has trailers: none is an empty set.
                Some(Ok(Ok(Some(trailers)))) => Some(Ok(trailers)),
                Some(Ok(Ok(None))) => Some(Ok(latest_http::types::HostFields::new(self)?)),
                Some(Ok(Err(code))) => Some(Err(candidate_error(code))),
                Some(Err(())) => wasmtime::bail!("future-trailers.get: trailers already taken"),
            },
        )
    }

    fn drop(&mut self, trailers: Resource<HostFutureTrailers>) -> wasmtime::Result<()> {
        latest_http::types::HostFutureTrailers::drop(self, trailers)
    }
}

impl types::HostOutgoingResponse for WasiHttpCtxView<'_> {
    fn new(
        &mut self,
        status: u16,
        headers: Resource<FieldMap>,
    ) -> wasmtime::Result<Resource<HostOutgoingResponse>> {
        use latest_http::types::HostOutgoingResponse as Latest;
        let headers = latest_http::types::HostFields::clone(self, headers)?;
        let response = Latest::new(self, headers)?;
        if Latest::set_status_code(self, borrow(&response), status)?.is_err() {
            Latest::drop(self, response)?;
            wasmtime::bail!("outgoing-response: {status} is not a valid status code");
        }
        Ok(response)
    }

    fn write(
        &mut self,
        response: Resource<HostOutgoingResponse>,
    ) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
        latest_http::types::HostOutgoingResponse::body(self, response)
    }

    fn drop(&mut self, response: Resource<HostOutgoingResponse>) -> wasmtime::Result<()> {
        latest_http::types::HostOutgoingResponse::drop(self, response)
    }
}

impl types::HostOutgoingBody for WasiHttpCtxView<'_> {
    fn write(
        &mut self,
        body: Resource<HostOutgoingBody>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        latest_http::types::HostOutgoingBody::write(self, body)
    }

    fn finish(
        &mut self,
        body: Resource<HostOutgoingBody>,
        trailers: Option<Resource<FieldMap>>,
    ) -> wasmtime::Result<()> {
        latest_http::types::HostOutgoingBody::finish(self, body, trailers)
            .map_err(|e| http_trap(self, e, "outgoing-body.finish"))
    }

    fn drop(&mut self, body: Resource<HostOutgoingBody>) -> wasmtime::Result<()> {
        latest_http::types::HostOutgoingBody::drop(self, body)
    }
}

impl types::HostFutureIncomingResponse for WasiHttpCtxView<'_> {
    fn get(
        &mut self,
        response: Resource<HostFutureIncomingResponse>,
    ) -> wasmtime::Result<Option<Result<Result<Resource<HostIncomingResponse>, types::Error>, ()>>>
    {
        Ok(
            latest_http::types::HostFutureIncomingResponse::get(self, response)?
                .map(|taken| taken.map(|response| response.map_err(candidate_error))),
        )
    }

    fn subscribe(
        &mut self,
        response: Resource<HostFutureIncomingResponse>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        latest_http::types::HostFutureIncomingResponse::subscribe(self, response)
    }

    fn drop(&mut self, response: Resource<HostFutureIncomingResponse>) -> wasmtime::Result<()> {
        latest_http::types::HostFutureIncomingResponse::drop(self, response)
    }
}

impl outgoing_handler::Host for WasiHttpCtxView<'_> {
    fn handle(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<types::RequestOptions>,
    ) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, types::Error>> {
        use latest_http::types::HostRequestOptions as Options;
        let options = match options {
            None => None,
            Some(given) => {
                let latest = Options::new(self)?;
                let millis = |ms: Option<u32>| ms.map(|ms| u64::from(ms) * 1_000_000);
                // Setting a timeout on a fresh options resource cannot fail.
                let _ = Options::set_connect_timeout(
                    self,
                    borrow(&latest),
                    millis(given.connect_timeout_ms),
                )?;
                let _ = Options::set_first_byte_timeout(
                    self,
                    borrow(&latest),
                    millis(given.first_byte_timeout_ms),
                )?;
                let _ = Options::set_between_bytes_timeout(
                    self,
                    borrow(&latest),
                    millis(given.between_bytes_timeout_ms),
                )?;
                Some(latest)
            }
        };
        match latest_http::outgoing_handler::Host::handle(self, request, options) {
            Ok(future) => Ok(Ok(future)),
            Err(error) => {
                let code = latest_http::types::Host::convert_error_code(self, error)?;
                Ok(Err(candidate_error(code)))
            }
        }
    }
}
