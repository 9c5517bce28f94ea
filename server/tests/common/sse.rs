//! A small Server-Sent Events client for tests: reads a stream in the background and hands
//! out parsed events.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

pub struct SseClient {
    rx: mpsc::UnboundedReceiver<SseEvent>,
    task: tokio::task::JoinHandle<()>,
    pub status: u16,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses complete events out of `buf` (leaving a partial one), per the SSE format:
/// `field: value` lines, comments start with `:`, an empty line ends an event.
pub fn parse(buf: &mut String) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
        for line in block.lines() {
            if line.starts_with(':') || line.is_empty() {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "id" => id = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
        if data.is_empty() {
            continue;
        }
        let text = data.join("\n");
        out.push(SseEvent {
            event,
            id,
            data: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        });
    }
    out
}

impl SseClient {
    /// Opens `GET {base}{path}`; on a non-200 answer the status is kept and no events come.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> (SseClient, Value) {
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let (tx, rx) = mpsc::unbounded_channel();
        if status != 200 {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return (
                SseClient {
                    rx,
                    task: tokio::spawn(async {}),
                    status,
                },
                body,
            );
        }
        let task = tokio::spawn(async move {
            let mut resp = resp;
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                for e in parse(&mut buf) {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
        });
        (SseClient { rx, task, status }, Value::Null)
    }

    /// The next event within `within`, or None.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event, which must come within 5 s.
    pub async fn expect(&mut self) -> SseEvent {
        match self.next(Duration::from_secs(5)).await {
            Some(e) => e,
            None => panic!("no event within 5 s"),
        }
    }

    /// Asserts nothing but heartbeats arrives for `d`.
    pub async fn quiet(&mut self, d: Duration) {
        if let Some(e) = self.next(d).await {
            panic!("unexpected event: {e:?}");
        }
    }

    /// Whether the server closed the stream within `within`.
    pub async fn closed(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
