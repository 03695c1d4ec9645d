//! Small loopback HTTP servers for tests and the dev IdP: a generic handler server,
//! a controllable JWKS server and an echo upstream.
#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A response: status, headers, body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// What a handler sees of a request.
pub struct Seen {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Answers a request; status 0 means "close the connection without replying".
pub type Handler = Arc<dyn Fn(&Seen) -> Response + Send + Sync>;

/// A small HTTP/1.1 server on 127.0.0.1: one thread per connection, keep-alive,
/// `content-length` framing. Stopped (listener closed, connections shut down) on drop.
pub struct HttpServer {
    pub port: u16,
    ip: [u8; 4],
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts on `port` (0 = any free port); every connection gets its own thread.
    pub fn start(port: u16, handler: Handler) -> std::io::Result<HttpServer> {
        HttpServer::start_on([127, 0, 0, 1], port, handler)
    }

    /// Starts on a given IPv4 address (the dev IdP in a container binds 0.0.0.0).
    pub fn start_on(ip: [u8; 4], port: u16, handler: Handler) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(SocketAddr::from((ip, port)))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let (Ok(clone), Ok(mut list)) = (stream.try_clone(), conns2.lock()) {
                    list.push(clone);
                }
                let handler = handler.clone();
                std::thread::spawn(move || serve_connection(stream, handler));
            }
        });
        Ok(HttpServer {
            port,
            ip,
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// Stops accepting, closes open connections and joins the accept loop.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let ip = if self.ip == [0, 0, 0, 0] {
            [127, 0, 0, 1]
        } else {
            self.ip
        };
        let _ = TcpStream::connect(SocketAddr::from((ip, self.port))); // wake the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Ok(mut list) = self.conns.lock() {
            for c in list.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(stream: TcpStream, handler: Handler) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(url)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, url) = (method.to_string(), url.to_string());
        let mut headers = Vec::new();
        loop {
            // Header values may carry bytes that are not UTF-8 (obs-text).
            let mut raw = Vec::new();
            if reader.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                return;
            }
            let h = String::from_utf8_lossy(&raw);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let (status, resp_headers, resp_body) = handler(&Seen {
            method,
            url,
            headers,
            body,
        });
        if status == 0 {
            // The handler asked for no reply: close as a crashed server would.
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let mut out = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n",
            resp_body.len()
        );
        for (k, v) in resp_headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp_body);
        if writer.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

/// How the JWKS server answers.
#[derive(Clone, Debug)]
pub enum JwksMode {
    /// 200 with this JWKS document.
    Serve(String),
    /// This status with an empty body.
    Status(u16),
    /// 200 with a body that is not a JWKS.
    Garbage,
    /// Sleep, then serve the document.
    Slow(Duration, String),
    /// Close every connection without a reply: the server is down. (Tests never free a
    /// port to simulate this: a parallel test could take it before it is bound again.)
    Down,
}

/// A JWKS server whose answers tests can change, counting the fetches it serves.
pub struct JwksServer {
    pub server: HttpServer,
    pub mode: Arc<Mutex<JwksMode>>,
    pub hits: Arc<AtomicUsize>,
    /// The request paths it was asked for, in order.
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl JwksServer {
    /// Starts serving `mode` on `port` (0 = any).
    pub fn start(port: u16, mode: JwksMode) -> std::io::Result<JwksServer> {
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (m, h, p) = (mode.clone(), hits.clone(), paths.clone());
        let server = HttpServer::start(
            port,
            Arc::new(move |seen: &Seen| {
                h.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut list) = p.lock() {
                    list.push(seen.url.clone());
                }
                let current = m.lock().map(|g| g.clone()).unwrap_or(JwksMode::Status(500));
                let json = vec![("content-type".to_string(), "application/json".to_string())];
                match current {
                    JwksMode::Serve(doc) => (200, json, doc.into_bytes()),
                    JwksMode::Status(code) => (code, vec![], vec![]),
                    JwksMode::Garbage => (200, json, b"<html>not a jwks</html>".to_vec()),
                    JwksMode::Down => (0, vec![], vec![]),
                    JwksMode::Slow(delay, doc) => {
                        std::thread::sleep(delay);
                        (200, json, doc.into_bytes())
                    }
                }
            }),
        )?;
        Ok(JwksServer {
            server,
            mode,
            hits,
            paths,
        })
    }

    /// Changes how it answers.
    pub fn set(&self, mode: JwksMode) {
        if let Ok(mut g) = self.mode.lock() {
            *g = mode;
        }
    }

    /// Fetches served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The paths asked for so far.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// An upstream that answers 200 with the request it received as JSON:
/// `{"method","path","headers":{name: value},"body"}` (repeated headers comma-joined).
pub fn echo(port: u16) -> std::io::Result<HttpServer> {
    echo_on([127, 0, 0, 1], port)
}

/// The echo upstream on a given IPv4 address.
pub fn echo_on(ip: [u8; 4], port: u16) -> std::io::Result<HttpServer> {
    HttpServer::start_on(ip, port, echo_handler())
}

/// The echo upstream's answer: the request as JSON.
pub fn echo_handler() -> Handler {
    Arc::new(|seen: &Seen| {
        let mut headers = Map::new();
        for (k, v) in &seen.headers {
            let joined = match headers.get(k).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.clone(),
            };
            headers.insert(k.clone(), Value::String(joined));
        }
        let body = json!({"method": seen.method, "path": seen.url, "headers": headers,
                              "body": String::from_utf8_lossy(&seen.body)});
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        )
    })
}

/// An upstream that answers `200 {"upstream":"head"}` as soon as it has read a request's
/// head — before, and without, its body, as a health check, an echo of the head or a
/// streaming proxy would — and counts the heads it received. A request whose head reaches
/// it is answered by it, whatever bearer-guard decides about the body later.
pub struct HeadCounter {
    pub port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HeadCounter {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<HeadCounter> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (heads.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let h = h.clone();
                std::thread::spawn(move || answer_from_head(stream, &h));
            }
        });
        Ok(HeadCounter {
            port,
            heads,
            stop,
            accept: Some(accept),
        })
    }

    /// The request lines of the heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

fn answer_from_head(mut stream: TcpStream, heads: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&raw);
    if let Ok(mut h) = heads.lock() {
        h.push(line.lines().next().unwrap_or_default().to_string());
    }
    let body = br#"{"upstream":"head"}"#;
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    let _ = stream.write_all(&reply);
    // Read what else comes for a moment, then close.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    let _ = stream.shutdown(Shutdown::Both);
}

impl Drop for HeadCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
