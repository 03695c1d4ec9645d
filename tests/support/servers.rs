//! Small loopback HTTP servers for tests and the dev IdP: a generic handler server,
//! a controllable JWKS server and an echo upstream.
#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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

type Handler = Arc<dyn Fn(&Seen) -> Response + Send + Sync>;

/// A tiny_http server on 127.0.0.1, stopped on drop.
pub struct HttpServer {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts on `port` (0 = any free port) with `workers` handler threads.
    pub fn start(port: u16, workers: usize, handler: Handler) -> std::io::Result<HttpServer> {
        let server = tiny_http::Server::http(SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let threads = (0..workers.max(1))
            .map(|_| {
                let server = server.clone();
                let handler = handler.clone();
                std::thread::spawn(move || {
                    while let Ok(mut req) = server.recv() {
                        let mut body = Vec::new();
                        let _ = req.as_reader().take(1 << 20).read_to_end(&mut body);
                        let seen = Seen {
                            method: req.method().to_string(),
                            url: req.url().to_string(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|h| {
                                    (
                                        h.field.as_str().as_str().to_ascii_lowercase(),
                                        h.value.as_str().to_string(),
                                    )
                                })
                                .collect(),
                            body,
                        };
                        let (status, headers, body) = handler(&seen);
                        let mut resp =
                            tiny_http::Response::from_data(body).with_status_code(status);
                        for (k, v) in headers {
                            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes())
                            {
                                resp.add_header(h);
                            }
                        }
                        let _ = req.respond(resp);
                    }
                })
            })
            .collect();
        Ok(HttpServer {
            port,
            server,
            threads,
        })
    }

    /// Stops accepting and joins the workers.
    pub fn stop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
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
}

/// A JWKS server whose answers tests can change, counting the fetches it serves.
pub struct JwksServer {
    pub server: HttpServer,
    pub mode: Arc<Mutex<JwksMode>>,
    pub hits: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Starts serving `mode` on `port` (0 = any).
    pub fn start(port: u16, mode: JwksMode) -> std::io::Result<JwksServer> {
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let (m, h) = (mode.clone(), hits.clone());
        let server = HttpServer::start(
            port,
            4,
            Arc::new(move |_seen: &Seen| {
                h.fetch_add(1, Ordering::SeqCst);
                let current = m.lock().map(|g| g.clone()).unwrap_or(JwksMode::Status(500));
                let json = vec![("content-type".to_string(), "application/json".to_string())];
                match current {
                    JwksMode::Serve(doc) => (200, json, doc.into_bytes()),
                    JwksMode::Status(code) => (code, vec![], vec![]),
                    JwksMode::Garbage => (200, json, b"<html>not a jwks</html>".to_vec()),
                    JwksMode::Slow(delay, doc) => {
                        std::thread::sleep(delay);
                        (200, json, doc.into_bytes())
                    }
                }
            }),
        )?;
        Ok(JwksServer { server, mode, hits })
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
}

/// An upstream that answers 200 with the request it received as JSON:
/// `{"method","path","headers":{name: value}}` (repeated headers comma-joined).
pub fn echo(port: u16) -> std::io::Result<HttpServer> {
    HttpServer::start(
        port,
        4,
        Arc::new(|seen: &Seen| {
            let mut headers = Map::new();
            for (k, v) in &seen.headers {
                let joined = match headers.get(k).and_then(Value::as_str) {
                    Some(prev) => format!("{prev},{v}"),
                    None => v.clone(),
                };
                headers.insert(k.clone(), Value::String(joined));
            }
            let body = json!({"method": seen.method, "path": seen.url, "headers": headers});
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                body.to_string().into_bytes(),
            )
        }),
    )
}
