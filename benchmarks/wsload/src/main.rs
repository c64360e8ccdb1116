//! wsload: the WebSocket load generator of ferrule's benchmarks.
//!
//!   wsload echo --url ws://127.0.0.1:PORT/ --conns 64 --size 64 --duration 10
//!   wsload idle --url ws://127.0.0.1:PORT/ --conns 10000 --hold 10
//!
//! `echo`: every connection sends a message, waits for its echo and sends the
//! next (`--pipeline N` keeps N in flight). Prints JSON: messages/s and the
//! latency percentiles of the round trips completed in the measured window.
//!
//! `idle`: opens N WebSockets (each echoes one message, so the app is in its
//! receive loop), holds them `--hold` seconds and reports how many stayed open.
//! The harness reads the server's RSS while they are held.
//!
//! Both print JSON lines on stdout: `{"event": ...}` lines as phases start
//! (so a harness can sample the server's CPU time and memory at those points)
//! and one summary line last. No compression extension is offered.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

const USAGE: &str = "\
usage: wsload echo --url ws://HOST:PORT/PATH [--conns 64] [--size 64] [--duration 10]
                   [--warmup 1] [--pipeline 1] [--binary|--text] [--threads 1]
       wsload idle --url ws://HOST:PORT/PATH [--conns 10000] [--hold 10] [--size 64]
common: [--connect-concurrency 64] [--timeout 10] (seconds, per connect/handshake/read)";

#[derive(Clone, Debug)]
struct Opts {
    mode: String,
    host: String,
    port: u16,
    path: String,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    pipeline: usize,
    text: bool,
    hold: f64,
    threads: usize,
    connect_concurrency: usize,
    timeout: Duration,
}

fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("--url must start with ws:// (got {url})"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mode = args.first().cloned().ok_or("no mode given")?;
    if mode != "echo" && mode != "idle" {
        return Err(format!("unknown mode {mode:?}"));
    }
    let idle = mode == "idle";
    let mut o = Opts {
        mode,
        host: String::new(),
        port: 0,
        path: String::new(),
        conns: if idle { 10_000 } else { 64 },
        size: 64,
        duration: 10.0,
        warmup: 1.0,
        pipeline: 1,
        text: false,
        hold: 10.0,
        threads: 1,
        connect_concurrency: 64,
        timeout: Duration::from_secs(10),
    };
    let mut url = None;
    let mut i = 1;
    while i < args.len() {
        let (key, inline) = match args[i].split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        match key.as_str() {
            "--text" => o.text = true,
            "--binary" => o.text = false,
            "-h" | "--help" => return Err(String::new()),
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i).cloned().ok_or(format!("{key} needs a value"))?
                    }
                };
                let num = |v: &str| {
                    v.parse::<f64>()
                        .map_err(|_| format!("{key}: not a number: {v}"))
                };
                let int = |v: &str| {
                    v.parse::<usize>()
                        .map_err(|_| format!("{key}: not an integer: {v}"))
                };
                match key.as_str() {
                    "--url" => url = Some(value),
                    "--conns" => o.conns = int(&value)?,
                    "--size" => o.size = int(&value)?,
                    "--duration" => o.duration = num(&value)?,
                    "--warmup" => o.warmup = num(&value)?,
                    "--pipeline" => o.pipeline = int(&value)?.max(1),
                    "--hold" => o.hold = num(&value)?,
                    "--threads" => o.threads = int(&value)?.max(1),
                    "--connect-concurrency" => o.connect_concurrency = int(&value)?.max(1),
                    "--timeout" => o.timeout = Duration::from_secs_f64(num(&value)?),
                    _ => return Err(format!("unknown option {key}")),
                }
            }
        }
        i += 1;
    }
    let (host, port, path) = parse_url(&url.ok_or("--url is required")?)?;
    o.host = host;
    o.port = port;
    o.path = path;
    if o.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    Ok(o)
}

/// Raises the soft open-file limit to the hard one (10,000 idle sockets need it).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            if r.rlim_cur < r.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: r.rlim_max,
                    rlim_max: r.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    r.rlim_cur = r.rlim_max;
                }
            }
            return r.rlim_cur as u64;
        }
    }
    0
}

type Ws = FragmentCollector<TcpStream>;

/// TCP connect + the RFC 6455 opening handshake, then the frame layer.
async fn connect(o: &Opts) -> Result<Ws, String> {
    let tcp = tokio::time::timeout(o.timeout, TcpStream::connect((o.host.as_str(), o.port)))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut tcp = tcp;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    // A fixed key is fine: the accept value is not what is measured here
    // (the Autobahn runner checks conformance).
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.path, o.host, o.port
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(o.timeout, tcp.read(&mut chunk))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(pos) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            // The echo app sends nothing before the client does, so bytes past
            // the response head would be a server bug worth reporting.
            if pos + 4 != head.len() {
                return Err("unexpected bytes after the 101 response".into());
            }
            break;
        }
        if head.len() > 16 * 1024 {
            return Err("handshake response head over 16 KiB".into());
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
        return Err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(line)
        ));
    }
    let mut ws = WebSocket::after_handshake(tcp, Role::Client);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_max_message_size(256 << 20);
    Ok(FragmentCollector::new(ws))
}

/// Opens `o.conns` WebSockets, at most `connect_concurrency` handshakes at once.
async fn connect_all(o: &Arc<Opts>, errors: &Arc<Errors>) -> Vec<Ws> {
    let sem = Arc::new(Semaphore::new(o.connect_concurrency));
    let mut handles = Vec::with_capacity(o.conns);
    for _ in 0..o.conns {
        let (o, sem) = (o.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore closed");
            connect(&o).await
        }));
    }
    let mut out = Vec::with_capacity(o.conns);
    for h in handles {
        match h.await {
            Ok(Ok(ws)) => out.push(ws),
            Ok(Err(e)) => errors.add("connect", e),
            Err(e) => errors.add("connect", format!("task: {e}")),
        }
    }
    out
}

/// Error counts by phase, with the first few messages kept for the report.
#[derive(Default)]
struct Errors {
    inner: Mutex<(usize, usize, Vec<String>)>, // (connect errors, other errors, samples)
}

impl Errors {
    fn add(&self, phase: &str, msg: String) {
        let mut g = self.inner.lock().unwrap();
        if phase == "connect" {
            g.0 += 1;
        } else {
            g.1 += 1;
        }
        let line = format!("{phase}: {msg}");
        if g.2.len() < 5 && !g.2.contains(&line) {
            g.2.push(line);
        }
    }
    fn snapshot(&self) -> (usize, usize, Vec<String>) {
        self.inner.lock().unwrap().clone()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn make_payload(size: usize, text: bool) -> Vec<u8> {
    // ASCII either way, so text and binary carry the same bytes.
    let alphabet = if text {
        &b"abcdefghijklmnopqrstuvwxyz0123456789"[..]
    } else {
        &b"0123456789abcdef"[..]
    };
    (0..size).map(|i| alphabet[i % alphabet.len()]).collect()
}

struct ConnResult {
    latencies_ns: Vec<u64>,
}

async fn send(ws: &mut Ws, payload: &[u8], scratch: &mut [u8], text: bool) -> Result<(), String> {
    // Masking is done in place: mask a copy, keep the original to compare.
    scratch.copy_from_slice(payload);
    let body = Payload::BorrowedMut(scratch);
    let frame = if text {
        Frame::text(body)
    } else {
        Frame::binary(body)
    };
    ws.write_frame(frame)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// One connection of `echo`: send, wait for the echo, repeat until `end`.
async fn echo_conn(
    mut ws: Ws,
    o: Arc<Opts>,
    payload: Arc<Vec<u8>>,
    start: Instant,
    end: Instant,
    errors: Arc<Errors>,
) -> ConnResult {
    let mut lat = Vec::with_capacity(1 << 14);
    let mut scratch = vec![0u8; payload.len()];
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(o.pipeline);
    let want = if o.text { OpCode::Text } else { OpCode::Binary };
    for _ in 0..o.pipeline {
        if let Err(e) = send(&mut ws, &payload, &mut scratch, o.text).await {
            errors.add("echo", e);
            return ConnResult { latencies_ns: lat };
        }
        in_flight.push_back(Instant::now());
    }
    while let Some(sent) = in_flight.front().copied() {
        let frame = match tokio::time::timeout(o.timeout, ws.read_frame()).await {
            Err(_) => {
                errors.add("echo", "no echo within the timeout".into());
                return ConnResult { latencies_ns: lat };
            }
            Ok(Err(e)) => {
                errors.add("echo", format!("read: {e}"));
                return ConnResult { latencies_ns: lat };
            }
            Ok(Ok(f)) => f,
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {}
            OpCode::Close => {
                errors.add("echo", "closed by the server".into());
                return ConnResult { latencies_ns: lat };
            }
            _ => continue, // pong / ping (answered by the frame layer)
        }
        let now = Instant::now();
        in_flight.pop_front();
        if frame.opcode != want
            || frame.payload.len() != payload.len()
            || *frame.payload != payload[..]
        {
            errors.add("echo", "echo differs from the message sent".into());
        } else if now >= start && now < end {
            lat.push(now.duration_since(sent).as_nanos() as u64);
        }
        if now < end {
            if let Err(e) = send(&mut ws, &payload, &mut scratch, o.text).await {
                errors.add("echo", e);
                return ConnResult { latencies_ns: lat };
            }
            in_flight.push_back(Instant::now());
        }
    }
    // Close handshake, briefly: the server's close reply is not measured.
    if ws.write_frame(Frame::close(1000, b"")).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(f) = ws.read_frame().await {
                if f.opcode == OpCode::Close {
                    break;
                }
            }
        })
        .await;
    }
    ConnResult { latencies_ns: lat }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1e6
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

async fn run_echo(o: Arc<Opts>, fd_limit: u64) -> i32 {
    let errors = Arc::new(Errors::default());
    let t0 = Instant::now();
    let conns = connect_all(&o, &errors).await;
    let connect_s = t0.elapsed().as_secs_f64();
    if conns.is_empty() {
        let (_, _, samples) = errors.snapshot();
        emit(&format!(
            "{{\"mode\":\"echo\",\"error\":\"no connection opened\",\"error_samples\":[{}]}}",
            samples
                .iter()
                .map(|s| json_str(s))
                .collect::<Vec<_>>()
                .join(",")
        ));
        return 1;
    }
    let opened = conns.len();
    let payload = Arc::new(make_payload(o.size, o.text));
    let start = Instant::now() + Duration::from_secs_f64(o.warmup);
    let end = start + Duration::from_secs_f64(o.duration);
    let mut tasks = Vec::with_capacity(opened);
    for ws in conns {
        tasks.push(tokio::spawn(echo_conn(
            ws,
            o.clone(),
            payload.clone(),
            start,
            end,
            errors.clone(),
        )));
    }
    tokio::time::sleep_until(start.into()).await;
    emit("{\"event\":\"start\"}");
    tokio::time::sleep_until(end.into()).await;
    emit("{\"event\":\"end\"}");
    let mut lat: Vec<u64> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => lat.extend_from_slice(&r.latencies_ns),
            Err(e) => errors.add("echo", format!("task: {e}")),
        }
    }
    lat.sort_unstable();
    let n = lat.len();
    let secs = o.duration;
    let mean = if n > 0 {
        lat.iter().sum::<u64>() as f64 / n as f64 / 1e6
    } else {
        f64::NAN
    };
    let (connect_errors, echo_errors, samples) = errors.snapshot();
    emit(&format!(
        concat!(
            "{{\"mode\":\"echo\",\"url\":{},\"conns\":{},\"opened\":{},\"size\":{},\"kind\":\"{}\",",
            "\"pipeline\":{},\"duration_s\":{},\"warmup_s\":{},\"connect_s\":{:.3},\"messages\":{},",
            "\"messages_per_s\":{:.1},\"bytes_per_s\":{:.1},\"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{},",
            "\"p999_ms\":{},\"max_ms\":{},\"mean_ms\":{},\"connect_errors\":{},\"errors\":{},",
            "\"error_samples\":[{}],\"fd_limit\":{}}}"
        ),
        json_str(&format!("ws://{}:{}{}", o.host, o.port, o.path)),
        o.conns,
        opened,
        o.size,
        if o.text { "text" } else { "binary" },
        o.pipeline,
        secs,
        o.warmup,
        connect_s,
        n,
        n as f64 / secs,
        (n * o.size) as f64 / secs,
        ms(pct(&lat, 50.0)),
        ms(pct(&lat, 90.0)),
        ms(pct(&lat, 99.0)),
        ms(pct(&lat, 99.9)),
        ms(lat.last().map(|&v| v as f64 / 1e6).unwrap_or(f64::NAN)),
        ms(mean),
        connect_errors,
        echo_errors,
        samples.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(","),
        fd_limit,
    ));
    i32::from(connect_errors + echo_errors > 0)
}

async fn run_idle(o: Arc<Opts>, fd_limit: u64) -> i32 {
    let errors = Arc::new(Errors::default());
    let closed = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let payload = Arc::new(make_payload(o.size, true));
    let sem = Arc::new(Semaphore::new(o.connect_concurrency));
    let opened = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut ready = Vec::with_capacity(o.conns);
    let mut holders = Vec::with_capacity(o.conns);
    for _ in 0..o.conns {
        let (o, sem, errors, closed, opened, payload) = (
            o.clone(),
            sem.clone(),
            errors.clone(),
            closed.clone(),
            opened.clone(),
            payload.clone(),
        );
        let mut stop_rx = stop_rx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(ready_rx);
        holders.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.expect("semaphore closed");
            let mut ws = match connect(&o).await {
                Ok(ws) => ws,
                Err(e) => {
                    errors.add("connect", e);
                    return;
                }
            };
            // One echo, so every server has run its app up to its receive loop.
            let mut scratch = vec![0u8; payload.len()];
            if o.size > 0 {
                let echoed = async {
                    send(&mut ws, &payload, &mut scratch, true).await?;
                    loop {
                        let f = ws.read_frame().await.map_err(|e| format!("read: {e}"))?;
                        match f.opcode {
                            OpCode::Text | OpCode::Binary => return Ok(()),
                            OpCode::Close => return Err("closed by the server".to_string()),
                            _ => {}
                        }
                    }
                };
                match tokio::time::timeout(o.timeout, echoed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return errors.add("connect", e),
                    Err(_) => return errors.add("connect", "first echo timed out".into()),
                }
            }
            drop(permit);
            opened.fetch_add(1, Ordering::Relaxed);
            let _ = ready_tx.send(());
            // Hold: a read that returns means the server closed or failed it.
            tokio::select! {
                r = ws.read_frame() => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    let why = match r {
                        Ok(f) if f.opcode == OpCode::Close => "closed by the server".to_string(),
                        Ok(_) => "unexpected frame while idle".to_string(),
                        Err(e) => format!("read: {e}"),
                    };
                    errors.add("idle", why);
                }
                _ = stop_rx.changed() => {}
            }
        }));
    }
    for r in ready {
        let _ = r.await; // Err: that connection failed (counted already)
    }
    let open_s = t0.elapsed().as_secs_f64();
    let n_open = opened.load(Ordering::Relaxed);
    emit(&format!(
        "{{\"event\":\"open\",\"opened\":{n_open},\"seconds\":{open_s:.3}}}"
    ));
    tokio::time::sleep(Duration::from_secs_f64(o.hold)).await;
    let alive = n_open - closed.load(Ordering::Relaxed);
    emit(&format!("{{\"event\":\"hold-end\",\"alive\":{alive}}}"));
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    let (connect_errors, idle_errors, samples) = errors.snapshot();
    emit(&format!(
        concat!(
            "{{\"mode\":\"idle\",\"url\":{},\"conns\":{},\"opened\":{},\"alive\":{},\"open_s\":{:.3},",
            "\"hold_s\":{},\"connect_errors\":{},\"errors\":{},\"error_samples\":[{}],\"fd_limit\":{}}}"
        ),
        json_str(&format!("ws://{}:{}{}", o.host, o.port, o.path)),
        o.conns,
        n_open,
        alive,
        open_s,
        o.hold,
        connect_errors,
        idle_errors,
        samples.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(","),
        fd_limit,
    ));
    i32::from(alive < o.conns)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("wsload: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let fd_limit = raise_fd_limit();
    if (o.conns as u64) + 64 > fd_limit && fd_limit > 0 {
        eprintln!(
            "wsload: fd limit {fd_limit} is below --conns {} (+64)",
            o.conns
        );
    }
    let rt = if o.threads <= 1 {
        // One thread: the harness pins the load generator to one core.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let o = Arc::new(o);
    let code = rt.block_on(async move {
        if o.mode == "echo" {
            run_echo(o, fd_limit).await
        } else {
            run_idle(o, fd_limit).await
        }
    });
    std::process::exit(code);
}
