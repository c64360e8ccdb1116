//! The `http` scope, built from a request head with the GIL held. The
//! constant part is a template dict copied per request.

use std::borrow::Cow;
use std::net::SocketAddr;

use ferrule_engine::net::tls::TlsInfo;
use ferrule_engine::proto::h1::{RequestHead, Version};
use ferrule_engine::server::exchange::Forwarded;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// The scope's constant part, and what every request's scope copies.
pub struct ScopeTemplate {
    scope: Py<PyDict>,
    asgi: Py<PyDict>,
    root_path: Py<PyString>,
    /// The lifespan state, copied into each request's scope.
    state: Option<Py<PyAny>>,
    /// `extensions`, copied per request; the values are empty dicts that
    /// say "supported" and are shared (a shallow copy is one allocation).
    extensions: Py<PyDict>,
}

/// The ASGI extensions ferrule serves on HTTP.
const HTTP_EXTENSIONS: [&str; 3] = [
    "http.response.trailers",
    "http.response.pathsend",
    "http.response.early_hint",
];

pub(super) fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn method_str<'py>(py: Python<'py>, m: &[u8]) -> Bound<'py, PyString> {
    match m {
        b"GET" => intern!(py, "GET").clone(),
        b"POST" => intern!(py, "POST").clone(),
        b"HEAD" => intern!(py, "HEAD").clone(),
        b"PUT" => intern!(py, "PUT").clone(),
        b"DELETE" => intern!(py, "DELETE").clone(),
        b"PATCH" => intern!(py, "PATCH").clone(),
        b"OPTIONS" => intern!(py, "OPTIONS").clone(),
        // The parser only admits token characters: ASCII.
        _ => PyString::new(py, &String::from_utf8_lossy(m)),
    }
}

/// `(host, port)` for the scope; `None` on a Unix domain socket, as uvicorn.
pub fn addr_tuple(py: Python<'_>, a: Option<&SocketAddr>) -> PyResult<Py<PyAny>> {
    let Some(a) = a else {
        return Ok(py.None());
    };
    let ip = match a.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        ip => ip.to_string(),
    };
    Ok(PyTuple::new(
        py,
        [
            ip.into_pyobject(py)?.into_any(),
            a.port().into_pyobject(py)?.into_any(),
        ],
    )?
    .into_any()
    .unbind())
}

/// The scope of one request. `client` and `server` are the connection's
/// address tuples (built once per connection by the caller).
pub fn build_scope<'py>(
    py: Python<'py>,
    t: &ScopeTemplate,
    head: &RequestHead,
    forwarded: Forwarded<'_>,
    client: &Py<PyAny>,
    server: &Py<PyAny>,
    tls: Option<&Py<PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    // Copying a template that already holds every key (constants filled
    // in) is a memcpy of its table; setting the rest then never resizes.
    let d = t.scope.bind(py).copy()?;
    d.set_item(intern!(py, "asgi"), t.asgi.bind(py).copy()?)?;
    let version = match head.version {
        Version::Http11 => intern!(py, "1.1"),
        Version::Http10 => intern!(py, "1.0"),
        Version::Http2 => intern!(py, "2"),
    };
    d.set_item(intern!(py, "http_version"), version)?;
    d.set_item(intern!(py, "method"), method_str(py, head.method()))?;
    // --proxy-headers: a trusted proxy's X-Forwarded-Proto/-For win.
    let scheme = match forwarded.scheme {
        Some(s) => PyString::intern(py, s),
        None if tls.is_some() => intern!(py, "https").clone(),
        None => intern!(py, "http").clone(),
    };
    d.set_item(intern!(py, "scheme"), scheme)?;
    let root_str = t.root_path.bind(py).to_cow()?;
    let raw_path = head.bytes(head.path);
    let decoded = percent_decode(raw_path);
    let path = String::from_utf8_lossy(&decoded);
    if root_str.is_empty() {
        d.set_item(intern!(py, "path"), PyString::new(py, &path))?;
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    } else {
        // Like uvicorn: path and raw_path are the full path, root_path
        // included, so frameworks can strip it themselves.
        d.set_item(
            intern!(py, "path"),
            PyString::new(py, &format!("{root_str}{path}")),
        )?;
        let mut rp = root_str.as_bytes().to_vec();
        rp.extend_from_slice(raw_path);
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, &rp))?;
    }
    d.set_item(
        intern!(py, "query_string"),
        PyBytes::new(py, head.bytes(head.query)),
    )?;
    let headers = PyList::empty(py);
    for (n, v) in &head.headers {
        let t = PyTuple::new(
            py,
            [
                PyBytes::new(py, head.name_as_sent(*n)),
                PyBytes::new(py, head.bytes(*v)),
            ],
        )?;
        headers.append(t)?;
    }
    d.set_item(intern!(py, "headers"), headers)?;
    match forwarded.client {
        Some(host) => {
            let c = PyTuple::new(
                py,
                [
                    host.into_pyobject(py)?.into_any(),
                    0u16.into_pyobject(py)?.into_any(),
                ],
            )?;
            d.set_item(intern!(py, "client"), c)?
        }
        None => d.set_item(intern!(py, "client"), client.bind(py))?,
    }
    d.set_item(intern!(py, "server"), server.bind(py))?;
    if let Some(state) = &t.state {
        let state = state.bind(py);
        let copy = match state.cast::<PyDict>() {
            Ok(dict) => dict.copy()?.into_any(),
            Err(_) => state.call_method0(intern!(py, "copy"))?,
        };
        d.set_item(intern!(py, "state"), copy)?;
    }
    let extensions = t.extensions.bind(py).copy()?;
    if let Some(tls) = tls {
        // The connection's dict, copied: an app may change its own.
        extensions.set_item(intern!(py, "tls"), tls.bind(py).copy()?)?;
    }
    d.set_item(intern!(py, "extensions"), extensions)?;
    Ok(d)
}

/// The ASGI TLS extension's dict for a connection (built once per
/// connection: the PEM strings are its cost).
pub fn tls_extension<'py>(py: Python<'py>, tls: &TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "server_cert"), &*tls.server_cert)?;
    d.set_item(
        intern!(py, "client_cert_chain"),
        PyList::new(py, &tls.client_cert_chain)?,
    )?;
    d.set_item(
        intern!(py, "client_cert_name"),
        tls.client_cert_name.as_deref(),
    )?;
    // rustls ends the handshake on a certificate that does not verify, so
    // a request never sees one.
    d.set_item(intern!(py, "client_cert_error"), py.None())?;
    d.set_item(intern!(py, "tls_version"), tls.tls_version)?;
    d.set_item(intern!(py, "cipher_suite"), tls.cipher_suite)?;
    Ok(d)
}

/// The `http` scope with its constant values, copied for each request; the
/// `None`s are filled per request, in this key order.
impl ScopeTemplate {
    pub fn new(py: Python<'_>, root_path: &str, state: Option<Py<PyAny>>) -> PyResult<Self> {
        let with_state = state.is_some();
        let root_path = PyString::new(py, root_path);
        let none = py.None().into_bound(py);
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), intern!(py, "http"))?;
        d.set_item(intern!(py, "asgi"), &none)?;
        d.set_item(intern!(py, "http_version"), &none)?;
        d.set_item(intern!(py, "method"), &none)?;
        d.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
        d.set_item(intern!(py, "path"), &none)?;
        d.set_item(intern!(py, "raw_path"), &none)?;
        d.set_item(intern!(py, "query_string"), &none)?;
        d.set_item(intern!(py, "root_path"), &root_path)?;
        d.set_item(intern!(py, "headers"), &none)?;
        d.set_item(intern!(py, "client"), &none)?;
        d.set_item(intern!(py, "server"), &none)?;
        if with_state {
            d.set_item(intern!(py, "state"), &none)?;
        }
        d.set_item(intern!(py, "extensions"), &none)?;
        let asgi = PyDict::new(py);
        asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
        asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
        let extensions = PyDict::new(py);
        for name in HTTP_EXTENSIONS {
            extensions.set_item(name, PyDict::new(py))?;
        }
        Ok(Self {
            scope: d.unbind(),
            asgi: asgi.unbind(),
            root_path: root_path.unbind(),
            state,
            extensions: extensions.unbind(),
        })
    }
}

/// The `websocket` scope of an upgrade request (ASGI 2.4): built afresh
/// (WebSockets are long-lived; the template's speed is not needed), with
/// the same path, headers and address rules as the `http` scope.
// The http scope's arguments plus the subprotocols: a struct for one call
// site would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn build_ws_scope<'py>(
    py: Python<'py>,
    t: &ScopeTemplate,
    head: &RequestHead,
    forwarded: Forwarded<'_>,
    client: &Py<PyAny>,
    server: &Py<PyAny>,
    tls: Option<&Py<PyDict>>,
    subprotocols: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let http = build_scope(py, t, head, forwarded, client, server, tls)?;
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
    for key in [
        "asgi",
        "http_version",
        "scheme",
        "path",
        "raw_path",
        "query_string",
        "root_path",
        "headers",
        "client",
        "server",
    ] {
        if let Some(v) = http.get_item(key)? {
            d.set_item(key, v)?;
        }
    }
    // http/https become ws/wss (a trusted proxy's X-Forwarded-Proto too).
    let scheme = match http.get_item("scheme")? {
        Some(s)
            if s.extract::<&str>()
                .is_ok_and(|s| s == "https" || s == "wss") =>
        {
            "wss"
        }
        _ => "ws",
    };
    d.set_item(intern!(py, "scheme"), scheme)?;
    d.set_item(intern!(py, "subprotocols"), PyList::new(py, subprotocols)?)?;
    if let Some(state) = http.get_item("state")? {
        d.set_item(intern!(py, "state"), state)?;
    }
    let ext = PyDict::new(py);
    ext.set_item("websocket.http.response", PyDict::new(py))?;
    if let Some(tls) = tls {
        ext.set_item(intern!(py, "tls"), tls.bind(py).copy()?)?;
    }
    d.set_item(intern!(py, "extensions"), ext)?;
    Ok(d)
}
