//! rtload: a load client for Ferrobase realtime (SSE) and delta sync.
//!
//! ```text
//! rtload --base http://127.0.0.1:8090 --pid PID idle   --subscribers 10000 --duration 60
//! rtload --base ... --pid PID fanout --subscribers 1000 --rate 100 --records 3000
//! rtload --base ... resume  --missed 10000
//! rtload --base ... --collection sync changes --rows 100000 --limit 5000
//! ```
//!
//! Every mode prints one JSON object on stdout (progress goes to stderr). Subscribers are
//! plain HTTP/1.1 connections (one each) read by one tokio runtime (`--threads`, default 1,
//! so the client leaves the other core to the server); an event is parsed only as far as
//! needed: the `data:` line of a `record` event, and in it `seq`, `record.i`, `record.t`.
//!
//! Records written by the client carry `i` (their index in the run) and `t` (microseconds on
//! this process's monotonic clock just before the request is sent). Latency is reported two
//! ways per delivery: `send_to_parsed` (from just before the POST; an upper bound of commit →
//! parsed, comparable to PocketBase's realtime_fanout.py) and `response_to_parsed` (from the
//! writer reading the 2xx response; a lower bound, 0 when the event beat the response).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};

static START: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process started (monotonic, shared by writers and subscribers).
fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Parser)]
#[command(about = "Load client for Ferrobase realtime (SSE) and /changes")]
struct Cli {
    /// Server base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    base: String,
    /// Collection to subscribe to and write into (open rules: list/view/create "true").
    #[arg(long, default_value = "rt")]
    collection: String,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Server PID: RSS (VmRSS) and CPU time are read from /proc/PID.
    #[arg(long)]
    pid: Option<u32>,
    /// Subscriber connections being opened at once (until their `ready`).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Hold N idle subscribers for D seconds; count heartbeats and drops.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// N subscribers, writers creating records; per-delivery latency, missing, duplicates.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Records per second over all writers (0 = as fast as the writers go).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 3000)]
        records: usize,
        /// Concurrent writer connections.
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// Seconds to wait for deliveries after the last write.
        #[arg(long, default_value_t = 30)]
        grace: u64,
    },
    /// One subscriber misses `missed` events (written by /v1/batch), then resumes with
    /// Last-Event-ID: time until all are replayed.
    Resume {
        #[arg(long, default_value_t = 10_000)]
        missed: usize,
    },
    /// Seed `rows` records by /v1/batch, then page /changes since before the seed, then an
    /// initial sync (no `since`) until has_more is false.
    Changes {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 5000)]
        limit: usize,
        /// Do not seed (the collection already holds the rows); only the initial sync runs.
        #[arg(long)]
        no_seed: bool,
    },
}

fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let cli = Cli::parse();
    let nofile = raise_nofile();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    let out = rt.block_on(run(cli, nofile))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// RLIMIT_NOFILE soft → hard; returns the resulting soft limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

struct Target {
    /// host:port, for connect and the Host header.
    addr: String,
    collection: String,
    pid: Option<u32>,
}

async fn run(cli: Cli, nofile: u64) -> Result<Value> {
    let addr = cli
        .base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--base must start with http://"))?
        .trim_end_matches('/')
        .to_owned();
    let t = Arc::new(Target {
        addr,
        collection: cli.collection.clone(),
        pid: cli.pid,
    });
    let mut out = match cli.mode {
        Mode::Idle {
            subscribers,
            duration,
        } => idle(&t, subscribers, duration, cli.connect_concurrency).await?,
        Mode::Fanout {
            subscribers,
            rate,
            records,
            writers,
            grace,
        } => {
            fanout(
                &t,
                subscribers,
                rate,
                records,
                writers.max(1),
                grace,
                cli.connect_concurrency,
            )
            .await?
        }
        Mode::Resume { missed } => resume(&t, missed).await?,
        Mode::Changes {
            rows,
            limit,
            no_seed,
        } => changes(&t, rows, limit, no_seed).await?,
    };
    if let Value::Object(m) = &mut out {
        m.insert("client_nofile_limit".into(), json!(nofile));
        m.insert("client_threads".into(), json!(cli.threads.max(1)));
        m.insert("client_cpu_s".into(), json!(round3(self_cpu_s())));
    }
    Ok(out)
}

// ---- /proc ---------------------------------------------------------------------------------

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn cpu_s(pid: Option<u32>) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, k): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((u + k) / tick)
}

fn self_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---- plain HTTP/1.1 requests ---------------------------------------------------------------

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// One keep-alive connection, reopened when the server closes it.
struct Conn {
    addr: String,
    tx: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: &str) -> Self {
        Conn {
            addr: addr.to_owned(),
            tx: None,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let tx = match self.tx.take() {
            Some(tx) if !tx.is_closed() => tx,
            _ => connect(&self.addr).await?,
        };
        let tx = self.tx.insert(tx);
        tx.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = tx.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn json(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }
}

const PAD: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
                   incididunt ut labore et dolore magna aliqua.";

fn record_body(i: u64, t: u64) -> Value {
    json!({"i": i, "t": t, "body": PAD})
}

/// Creates records `from..to` with /v1/batch (100 per request, one connection).
async fn seed(t: &Target, from: usize, to: usize) -> Result<f64> {
    let mut c = Conn::new(&t.addr);
    let path = format!("/v1/collections/{}/records", t.collection);
    let started = Instant::now();
    let mut i = from;
    while i < to {
        let end = (i + 100).min(to);
        let ops: Vec<Value> = (i..end)
            .map(|k| json!({"method": "POST", "path": path, "body": record_body(k as u64, 0)}))
            .collect();
        let body = serde_json::to_vec(&json!({ "operations": ops }))?;
        c.json(Method::POST, "/v1/batch", Some(body)).await?;
        i = end;
    }
    Ok(started.elapsed().as_secs_f64())
}

// ---- SSE -----------------------------------------------------------------------------------

async fn open_sse(t: &Target, last_event_id: Option<u64>) -> Result<Incoming> {
    let mut tx = connect(&t.addr).await?;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/realtime?collections={}", t.collection))
        .header("host", &t.addr)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    tx.ready().await?;
    let resp = tx.send_request(req.body(Full::new(Bytes::new()))?).await?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        bail!(
            "realtime: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(resp.into_body())
}

enum Item<'a> {
    Comment,
    Event {
        name: &'a [u8],
        id: Option<&'a [u8]>,
        data: &'a [u8],
    },
}

/// Splits the byte stream into SSE blocks (separated by a blank line).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(Item<'_>)) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(rel) = find_blank(&self.buf[start..]) {
            let block = &self.buf[start..start + rel];
            start += rel + 2;
            parse_block(block, &mut f);
        }
        self.buf.drain(..start);
    }
}

fn find_blank(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = b[from..].iter().position(|&c| c == b'\n') {
        let at = from + p;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn parse_block(block: &[u8], f: &mut impl FnMut(Item<'_>)) {
    let (mut name, mut id, mut data): (&[u8], Option<&[u8]>, &[u8]) = (b"message", None, b"");
    let mut any = false;
    for line in block.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b':') {
            f(Item::Comment);
        } else if let Some(v) = line.strip_prefix(b"data:") {
            data = v.strip_prefix(b" ").unwrap_or(v);
            any = true;
        } else if let Some(v) = line.strip_prefix(b"event:") {
            name = v.strip_prefix(b" ").unwrap_or(v);
            any = true;
        } else if let Some(v) = line.strip_prefix(b"id:") {
            id = Some(v.strip_prefix(b" ").unwrap_or(v));
            any = true;
        }
    }
    if any {
        f(Item::Event { name, id, data });
    }
}

#[derive(Deserialize)]
struct RecordEvent {
    seq: u64,
    record: RecordFields,
}

#[derive(Deserialize)]
struct RecordFields {
    i: Option<u64>,
    t: Option<u64>,
}

/// State shared by all subscribers of a run.
struct Shared {
    settled: AtomicUsize,
    settled_notify: Notify,
    complete: AtomicUsize,
    complete_notify: Notify,
    /// Subscribers whose stream ended before the stop signal.
    ended: AtomicUsize,
    /// Per record index: when its writer read the 2xx response (µs), 0 before that.
    resp_us: Vec<AtomicU64>,
    hist_send: Vec<Mutex<Histogram<u64>>>,
    hist_resp: Vec<Mutex<Histogram<u64>>>,
    connect: Semaphore,
}

const SHARDS: usize = 16;

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

impl Shared {
    fn new(records: usize, hist: bool, connect_concurrency: usize) -> Result<Arc<Self>> {
        let shards = if hist { SHARDS } else { 0 };
        Ok(Arc::new(Shared {
            settled: AtomicUsize::new(0),
            settled_notify: Notify::new(),
            complete: AtomicUsize::new(0),
            complete_notify: Notify::new(),
            ended: AtomicUsize::new(0),
            resp_us: (0..records).map(|_| AtomicU64::new(0)).collect(),
            hist_send: (0..shards)
                .map(|_| histogram().map(Mutex::new))
                .collect::<Result<_>>()?,
            hist_resp: (0..shards)
                .map(|_| histogram().map(Mutex::new))
                .collect::<Result<_>>()?,
            connect: Semaphore::new(connect_concurrency.max(1)),
        }))
    }

    async fn wait(&self, counter: &AtomicUsize, notify: &Notify, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while counter.load(Ordering::Acquire) < n {
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn merged(&self, h: &[Mutex<Histogram<u64>>]) -> Result<Histogram<u64>> {
        let mut all = histogram()?;
        for s in h {
            let s = s.lock().map_err(|_| anyhow!("histogram lock poisoned"))?;
            all.add(&*s)?;
        }
        Ok(all)
    }
}

#[derive(Default, Debug)]
struct SubStats {
    ready: bool,
    ready_id: Option<u64>,
    ready_at_us: u64,
    heartbeats: u64,
    records: u64,
    duplicates: u64,
    out_of_order: u64,
    resets: u64,
    unparsed: u64,
    early: u64,
    last_seq: u64,
    last_at_us: u64,
    /// Bit per record index (fan-out, resume).
    seen: Vec<u64>,
    end: String,
}

struct SubSpec {
    idx: usize,
    last_event_id: Option<u64>,
    /// Records expected (0: none, idle).
    expect: usize,
    hist: bool,
}

async fn subscriber(
    t: Arc<Target>,
    sh: Arc<Shared>,
    spec: SubSpec,
    mut stop: watch::Receiver<bool>,
) -> SubStats {
    let mut st = SubStats {
        seen: vec![0; spec.expect.div_ceil(64)],
        ..Default::default()
    };
    let permit = sh.connect.acquire().await.ok();
    let body = match open_sse(&t, spec.last_event_id).await {
        Ok(b) => b,
        Err(e) => {
            st.end = format!("open: {e:#}");
            sh.settled.fetch_add(1, Ordering::AcqRel);
            sh.settled_notify.notify_one();
            sh.ended.fetch_add(1, Ordering::AcqRel);
            return st;
        }
    };
    let mut permit = permit;
    let mut body = body;
    let mut parser = SseParser::default();
    let shard = spec.idx % SHARDS;
    let mut stopped = *stop.borrow();
    while !stopped {
        tokio::select! {
            biased;
            r = stop.changed() => { stopped = r.is_err() || *stop.borrow(); if stopped { st.end = "stopped".into(); } }
            f = body.frame() => match f {
                None => { st.end = "eof".into(); break; }
                Some(Err(e)) => { st.end = format!("error: {e}"); break; }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let was_ready = st.ready;
                    let before = st.records;
                    parser.feed(&data, |item| on_item(&mut st, &sh, &spec, shard, item));
                    if st.ready && !was_ready {
                        permit.take();
                        sh.settled.fetch_add(1, Ordering::AcqRel);
                        sh.settled_notify.notify_one();
                    }
                    if spec.expect > 0 && before < spec.expect as u64 && st.records >= spec.expect as u64 {
                        sh.complete.fetch_add(1, Ordering::AcqRel);
                        sh.complete_notify.notify_one();
                    }
                }
            }
        }
    }
    if !stopped {
        if !st.ready {
            sh.settled.fetch_add(1, Ordering::AcqRel);
            sh.settled_notify.notify_one();
        }
        sh.ended.fetch_add(1, Ordering::AcqRel);
    }
    st
}

fn on_item(st: &mut SubStats, sh: &Shared, spec: &SubSpec, shard: usize, item: Item<'_>) {
    let (name, id, data) = match item {
        Item::Comment => {
            st.heartbeats += 1;
            return;
        }
        Item::Event { name, id, data } => (name, id, data),
    };
    match name {
        b"record" => {}
        b"ready" => {
            st.ready = true;
            st.ready_at_us = now_us();
            st.ready_id = id.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
            return;
        }
        b"reset" => {
            st.resets += 1;
            return;
        }
        _ => return,
    }
    let now = now_us();
    let Ok(ev) = serde_json::from_slice::<RecordEvent>(data) else {
        st.unparsed += 1;
        return;
    };
    if ev.seq <= st.last_seq {
        st.out_of_order += 1;
    }
    st.last_seq = st.last_seq.max(ev.seq);
    st.last_at_us = now;
    let Some(i) = ev.record.i.map(|i| i as usize) else {
        st.unparsed += 1;
        return;
    };
    if i >= spec.expect {
        st.unparsed += 1;
        return;
    }
    let (w, b) = (i / 64, 1u64 << (i % 64));
    if st.seen[w] & b != 0 {
        st.duplicates += 1;
        return;
    }
    st.seen[w] |= b;
    st.records += 1;
    if spec.hist {
        if let (Some(t), Ok(mut h)) = (ev.record.t, sh.hist_send[shard].lock()) {
            h.saturating_record(now.saturating_sub(t).max(1));
        }
        let r = sh.resp_us.get(i).map_or(0, |r| r.load(Ordering::Acquire));
        let lat = if r == 0 || r > now {
            st.early += 1;
            1
        } else {
            (now - r).max(1)
        };
        if let Ok(mut h) = sh.hist_resp[shard].lock() {
            h.saturating_record(lat);
        }
    }
}

fn spawn_subscribers(
    t: &Arc<Target>,
    sh: &Arc<Shared>,
    n: usize,
    expect: usize,
    hist: bool,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<SubStats>> {
    (0..n)
        .map(|idx| {
            let spec = SubSpec {
                idx,
                last_event_id: None,
                expect,
                hist,
            };
            tokio::spawn(subscriber(t.clone(), sh.clone(), spec, stop.clone()))
        })
        .collect()
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<SubStats>>) -> Result<Vec<SubStats>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await?);
    }
    Ok(out)
}

fn end_reasons(subs: &[SubStats]) -> Value {
    let mut m = std::collections::BTreeMap::<String, usize>::new();
    for s in subs {
        let key = if s.end.len() > 120 {
            s.end[..120].to_owned()
        } else {
            s.end.clone()
        };
        *m.entry(key).or_default() += 1;
    }
    json!(m)
}

fn hist_json(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| round3(v as f64 / 1000.0);
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": round3(h.mean() / 1000.0),
    })
}

/// Server VmRSS before any subscriber connects, after a moment of quiet.
async fn baseline_rss(t: &Target) -> Option<u64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    rss_kib(t.pid)
}

async fn connect_all(
    sh: &Shared,
    n: usize,
    t: &Target,
    rss_before: Option<u64>,
) -> (f64, usize, Option<u64>, Option<u64>, Option<u64>) {
    let started = Instant::now();
    sh.wait(&sh.settled, &sh.settled_notify, n, Duration::from_secs(300))
        .await;
    let secs = started.elapsed().as_secs_f64();
    let failed = sh.ended.load(Ordering::Acquire);
    eprintln!(
        "[rtload] {} of {n} subscribers ready in {secs:.2} s ({failed} failed)",
        sh.settled.load(Ordering::Acquire) - failed
    );
    // Let the server settle (allocations from the connection storm) before reading RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(t.pid);
    let per = match (rss_before, rss_connected) {
        (Some(a), Some(b)) if n > failed => {
            Some((b.saturating_sub(a) * 1000) / (n - failed) as u64)
        }
        _ => None,
    };
    (secs, failed, rss_before, rss_connected, per)
}

// ---- modes ---------------------------------------------------------------------------------

async fn idle(t: &Arc<Target>, n: usize, duration: u64, cc: usize) -> Result<Value> {
    let sh = Shared::new(0, false, cc)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss0 = baseline_rss(t).await;
    let handles = spawn_subscribers(t, &sh, n, 0, false, &stop_rx);
    let (connect_s, failed, rss_before, rss_connected, per_milli) =
        connect_all(&sh, n, t, rss0).await;
    let cpu0 = cpu_s(t.pid);
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(duration) {
        let left = Duration::from_secs(duration).saturating_sub(hold.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        eprintln!(
            "[rtload] idle {:.0} s: {} alive, server RSS {:?} KiB",
            hold.elapsed().as_secs_f64(),
            n - sh.ended.load(Ordering::Acquire),
            rss_kib(t.pid)
        );
    }
    let alive = n - sh.ended.load(Ordering::Acquire);
    let rss_end = rss_kib(t.pid);
    let server_cpu = match (cpu0, cpu_s(t.pid)) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    stop_tx.send(true)?;
    let subs = join_all(handles).await?;
    let hb: Vec<u64> = subs
        .iter()
        .filter(|s| s.ready)
        .map(|s| s.heartbeats)
        .collect();
    Ok(json!({
        "mode": "idle",
        "subscribers": n,
        "duration_s": duration,
        "connect_all_s": round3(connect_s),
        "failed_to_open": failed,
        "alive_at_end": alive,
        "dropped_while_held": n - alive - failed,
        "ends": end_reasons(&subs),
        "heartbeats_total": hb.iter().sum::<u64>(),
        "heartbeats_per_subscriber_min": hb.iter().min(),
        "heartbeats_per_subscriber_max": hb.iter().max(),
        "server_rss_kib": {"before": rss_before, "connected": rss_connected, "end": rss_end},
        "server_kib_per_subscriber": per_milli.map(|p| p as f64 / 1000.0),
        "server_kib_per_subscriber_end": match (rss_before, rss_end) {
            (Some(a), Some(b)) if alive > 0 => Some(round3(b.saturating_sub(a) as f64 / alive as f64)),
            _ => None,
        },
        "server_cpu_s_while_held": server_cpu,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn fanout(
    t: &Arc<Target>,
    n: usize,
    rate: f64,
    records: usize,
    writers: usize,
    grace: u64,
    cc: usize,
) -> Result<Value> {
    let sh = Shared::new(records, true, cc)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss0 = baseline_rss(t).await;
    let handles = spawn_subscribers(t, &sh, n, records, true, &stop_rx);
    let (connect_s, failed, rss_before, rss_connected, per_milli) =
        connect_all(&sh, n, t, rss0).await;
    if failed > 0 {
        eprintln!("[rtload] warning: {failed} subscribers failed to open");
    }

    let next = Arc::new(AtomicUsize::new(0));
    let path = Arc::new(format!("/v1/collections/{}/records", t.collection));
    let cpu0 = cpu_s(t.pid);
    let self0 = self_cpu_s();
    let first_send = now_us();
    let begin = tokio::time::Instant::now();
    let mut ws = Vec::new();
    for _ in 0..writers {
        let (t, sh, next, path) = (t.clone(), sh.clone(), next.clone(), path.clone());
        ws.push(tokio::spawn(async move {
            let mut c = Conn::new(&t.addr);
            let mut h = histogram()?;
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut last_error = String::new();
            loop {
                let i = next.fetch_add(1, Ordering::AcqRel);
                if i >= records {
                    break;
                }
                if rate > 0.0 {
                    tokio::time::sleep_until(begin + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
                let sent = now_us();
                let body = serde_json::to_vec(&record_body(i as u64, sent))?;
                match c.send(Method::POST, &path, Some(body)).await {
                    Ok((s, _)) if s.is_success() => {
                        let now = now_us();
                        sh.resp_us[i].store(now, Ordering::Release);
                        h.saturating_record((now - sent).max(1));
                        ok += 1;
                    }
                    Ok((s, b)) => {
                        errors += 1;
                        last_error = format!("HTTP {s}: {}", String::from_utf8_lossy(&b));
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = format!("{e:#}");
                    }
                }
            }
            anyhow::Ok((h, ok, errors, last_error))
        }));
    }
    let mut write_h = histogram()?;
    let (mut written, mut write_errors, mut last_error) = (0u64, 0u64, String::new());
    for w in ws {
        let (h, ok, errors, le) = w.await??;
        write_h.add(&h)?;
        written += ok;
        write_errors += errors;
        if !le.is_empty() {
            last_error = le;
        }
    }
    let writes_done = now_us();
    eprintln!(
        "[rtload] {written} records written in {:.2} s ({write_errors} errors{})",
        (writes_done - first_send) as f64 / 1e6,
        if last_error.is_empty() {
            String::new()
        } else {
            format!(", last: {last_error}")
        }
    );
    sh.wait(
        &sh.complete,
        &sh.complete_notify,
        n - failed,
        Duration::from_secs(grace),
    )
    .await;
    let server_cpu = match (cpu0, cpu_s(t.pid)) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    let client_cpu = round3(self_cpu_s() - self0);
    let rss_end = rss_kib(t.pid);
    stop_tx.send(true)?;
    let subs = join_all(handles).await?;

    let ready: Vec<&SubStats> = subs.iter().filter(|s| s.ready).collect();
    let delivered: u64 = ready.iter().map(|s| s.records).sum();
    let expected = written * ready.len() as u64;
    let last = ready
        .iter()
        .map(|s| s.last_at_us)
        .max()
        .unwrap_or(first_send);
    let window_s = (last.saturating_sub(first_send)) as f64 / 1e6;
    let complete = ready
        .iter()
        .filter(|s| s.records >= written && written > 0)
        .count();
    Ok(json!({
        "mode": "fanout",
        "subscribers": n,
        "failed_to_open": failed,
        "connect_all_s": round3(connect_s),
        "writers": writers,
        "rate_target_per_s": rate,
        "records_written": written,
        "write_errors": write_errors,
        "last_write_error": last_error,
        "write_s": round3((writes_done - first_send) as f64 / 1e6),
        "write_rate_per_s": round3(written as f64 / ((writes_done - first_send) as f64 / 1e6)),
        "write_latency": hist_json(&write_h),
        "deliveries": delivered,
        "deliveries_expected": expected,
        "missing": expected.saturating_sub(delivered),
        "duplicates": ready.iter().map(|s| s.duplicates).sum::<u64>(),
        "out_of_order": ready.iter().map(|s| s.out_of_order).sum::<u64>(),
        "resets": ready.iter().map(|s| s.resets).sum::<u64>(),
        "unparsed": ready.iter().map(|s| s.unparsed).sum::<u64>(),
        "subscribers_complete": complete,
        "window_s": round3(window_s),
        "deliveries_per_s": round3(delivered as f64 / window_s.max(1e-9)),
        "send_to_parsed": hist_json(&sh.merged(&sh.hist_send)?),
        "response_to_parsed": hist_json(&sh.merged(&sh.hist_resp)?),
        "events_before_response": ready.iter().map(|s| s.early).sum::<u64>(),
        "ends": end_reasons(&subs),
        "server_rss_kib": {"before": rss_before, "connected": rss_connected, "end": rss_end},
        "server_kib_per_subscriber": per_milli.map(|p| p as f64 / 1000.0),
        "server_cpu_s": server_cpu,
        "client_cpu_s_window": client_cpu,
    }))
}

async fn resume(t: &Arc<Target>, missed: usize) -> Result<Value> {
    // 1. A subscriber takes its position from `ready`, then goes away.
    let mut body = open_sse(t, None).await?;
    let mut parser = SseParser::default();
    let mut cursor = None;
    while cursor.is_none() {
        let frame = body
            .frame()
            .await
            .ok_or_else(|| anyhow!("stream ended before ready"))??;
        if let Ok(data) = frame.into_data() {
            parser.feed(&data, |item| {
                if let Item::Event {
                    name: b"ready",
                    id: Some(id),
                    ..
                } = item
                {
                    cursor = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok());
                }
            });
        }
    }
    drop(body);
    let cursor: u64 = cursor.ok_or_else(|| anyhow!("ready without an id"))?;

    // 2. What it misses.
    let seed_s = seed(t, 0, missed).await?;
    eprintln!("[rtload] {missed} records written by batch in {seed_s:.2} s while away");

    // 3. Back with Last-Event-ID.
    let sh = Shared::new(0, false, 1)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let spec = SubSpec {
        idx: 0,
        last_event_id: Some(cursor),
        expect: missed,
        hist: false,
    };
    let started = now_us();
    let h = tokio::spawn(subscriber(t.clone(), sh.clone(), spec, stop_rx));
    sh.wait(
        &sh.complete,
        &sh.complete_notify,
        1,
        Duration::from_secs(120),
    )
    .await;
    let done = now_us();
    // Anything past the last missed event would be a duplicate: listen a moment longer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true)?;
    let st = h.await?;
    let replay_s = (st.last_at_us.max(started) - started) as f64 / 1e6;
    Ok(json!({
        "mode": "resume",
        "last_event_id": cursor,
        "missed": missed,
        "seed_batch_s": round3(seed_s),
        "replayed": st.records,
        "missing": missed as u64 - st.records.min(missed as u64),
        "duplicates": st.duplicates,
        "out_of_order": st.out_of_order,
        "resets": st.resets,
        "complete": st.records >= missed as u64,
        "reconnect_to_ready_ms": round3(st.ready_at_us.saturating_sub(started) as f64 / 1000.0),
        "reconnect_to_all_replayed_s": round3(replay_s),
        "replayed_per_s": round3(st.records as f64 / replay_s.max(1e-9)),
        "waited_s": round3((done - started) as f64 / 1e6),
        "end": st.end,
    }))
}

#[derive(Deserialize)]
struct Page {
    changes: Vec<serde::de::IgnoredAny>,
    cursor: String,
    has_more: bool,
    #[serde(default)]
    reset: bool,
}

struct Paged {
    changes: u64,
    pages: u64,
    bytes: u64,
    secs: f64,
    max_page_ms: f64,
    resets: u64,
}

async fn page_through(c: &mut Conn, base: &str, since: Option<String>) -> Result<Paged> {
    let started = Instant::now();
    let mut p = Paged {
        changes: 0,
        pages: 0,
        bytes: 0,
        secs: 0.0,
        max_page_ms: 0.0,
        resets: 0,
    };
    let mut cursor = since;
    loop {
        let url = match &cursor {
            Some(cur) => format!("{base}&since={cur}"),
            None => base.to_owned(),
        };
        let t0 = Instant::now();
        let bytes = c.json(Method::GET, &url, None).await?;
        let page: Page = serde_json::from_slice(&bytes).context("changes page")?;
        p.max_page_ms = p.max_page_ms.max(t0.elapsed().as_secs_f64() * 1000.0);
        p.changes += page.changes.len() as u64;
        p.pages += 1;
        p.bytes += bytes.len() as u64;
        p.resets += page.reset as u64;
        cursor = Some(page.cursor);
        if !page.has_more {
            break;
        }
    }
    p.secs = started.elapsed().as_secs_f64();
    Ok(p)
}

fn paged_json(p: &Paged) -> Value {
    json!({
        "changes": p.changes,
        "pages": p.pages,
        "mib": round3(p.bytes as f64 / 1048576.0),
        "s": round3(p.secs),
        "changes_per_s": round3(p.changes as f64 / p.secs.max(1e-9)),
        "max_page_ms": round3(p.max_page_ms),
        "resets": p.resets,
    })
}

async fn changes(t: &Arc<Target>, rows: usize, limit: usize, no_seed: bool) -> Result<Value> {
    let mut c = Conn::new(&t.addr);
    let base = format!("/v1/collections/{}/changes?limit={limit}", t.collection);
    let mut out = json!({"mode": "changes", "rows": rows, "limit": limit});
    if !no_seed {
        let now: Page = serde_json::from_slice(
            &c.json(Method::GET, &format!("{base}&since=now"), None)
                .await?,
        )?;
        let seed_s = seed(t, 0, rows).await?;
        eprintln!("[rtload] seeded {rows} rows by batch in {seed_s:.2} s");
        out["seed_batch_s"] = json!(round3(seed_s));
        out["seed_rows_per_s"] = json!(round3(rows as f64 / seed_s));
        let cpu0 = cpu_s(t.pid);
        let inc = page_through(&mut c, &base, Some(now.cursor)).await?;
        out["incremental"] = paged_json(&inc);
        if let (Some(a), Some(b)) = (cpu0, cpu_s(t.pid)) {
            out["incremental"]["server_cpu_s"] = json!(round3(b - a));
        }
    }
    let cpu0 = cpu_s(t.pid);
    let init = page_through(&mut c, &base, None).await?;
    out["initial_sync"] = paged_json(&init);
    if let (Some(a), Some(b)) = (cpu0, cpu_s(t.pid)) {
        out["initial_sync"]["server_cpu_s"] = json!(round3(b - a));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_blocks() {
        let mut p = SseParser::default();
        let mut seen = Vec::new();
        let mut push = |item: Item<'_>| match item {
            Item::Comment => seen.push("comment".to_owned()),
            Item::Event { name, id, data } => seen.push(format!(
                "{}|{}|{}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(id.unwrap_or(b"-")),
                String::from_utf8_lossy(data)
            )),
        };
        p.feed(
            b"event: ready\nid: 5\ndata: {}\n\n: hb\n\nevent: rec",
            &mut push,
        );
        p.feed(b"ord\nid: 6\ndata: {\"seq\":6}\n", &mut push);
        p.feed(b"\n", &mut push);
        assert_eq!(seen, ["ready|5|{}", "comment", "record|6|{\"seq\":6}"]);
        assert!(p.buf.is_empty());
    }
}
