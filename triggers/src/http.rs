//! `ctx.http.request`: the request map is parsed and its URL checked against the allow-list
//! *before* the host is called; a refused URL never reaches the host.

use std::collections::BTreeMap;

use rhai::{Dynamic, EvalAltResult, Map as RhaiMap, NativeCallContext};

use crate::convert::to_json;
use crate::ctx::{Http, fail};
use crate::host::HttpRequest;

const WHAT: &str = "ctx.http.request";
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Normalises the allow-list of the server config (`[triggers] http_allow`): trimmed, lower
/// case, empty entries dropped. Entries are exact host names (no wildcards, no ports).
pub(crate) fn normalise_allow(hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Checks `url` against the allow-list; returns the normalised URL and its host.
///
/// Refused: anything `url` cannot parse, schemes other than `http`/`https`, URLs without a
/// host, and hosts not exactly on the list (case-insensitive). The host is the one the URL
/// really names: `https://api.example.com@evil.test/` is `evil.test`.
pub fn check_url(url: &str, allow: &[String]) -> Result<(String, String), String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("host not allowed: {url:?} is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "host not allowed: only http and https URLs, not {:?}",
            parsed.scheme()
        ));
    }
    let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
        return Err(format!("host not allowed: {url:?} has no host"));
    };
    if !allow.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        return Err(format!("host not allowed: {host}"));
    }
    Ok((parsed.to_string(), host))
}

pub(crate) fn request(
    nc: NativeCallContext,
    http: &mut Http,
    spec: RhaiMap,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let request = parse(spec, &http.0.http_allow).map_err(|e| fail(&nc, WHAT, e))?;
    let response = http
        .0
        .host
        .http_request(request)
        .map_err(|e| fail(&nc, WHAT, e))?;
    let headers: RhaiMap = response
        .headers
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect();
    let answer: RhaiMap = [
        (
            "status".into(),
            Dynamic::from_int(i64::from(response.status)),
        ),
        ("headers".into(), Dynamic::from_map(headers)),
        ("body".into(), Dynamic::from(response.body)),
    ]
    .into_iter()
    .collect();
    Ok(Dynamic::from_map(answer))
}

fn parse(spec: RhaiMap, allow: &[String]) -> Result<HttpRequest, String> {
    let mut method = "GET".to_string();
    let mut url = None;
    let mut headers = BTreeMap::new();
    let mut body = None;
    let mut json_body = false;
    for (key, value) in spec {
        match key.as_str() {
            "method" => {
                let m = value
                    .into_immutable_string()
                    .map_err(|t| format!("method must be a string, not {t}"))?;
                method = m.to_ascii_uppercase();
                if !METHODS.contains(&method.as_str()) {
                    return Err(format!("method {m:?} is not one of {}", METHODS.join(", ")));
                }
            }
            "url" => {
                url = Some(
                    value
                        .into_immutable_string()
                        .map_err(|t| format!("url must be a string, not {t}"))?,
                )
            }
            "headers" if value.is_unit() => {}
            "headers" => {
                let map = value
                    .try_cast::<RhaiMap>()
                    .ok_or("headers must be a map of strings")?;
                for (name, v) in map {
                    let v = if v.is_string() {
                        v.to_string()
                    } else {
                        format!("{v}")
                    };
                    headers.insert(name.to_string(), v);
                }
            }
            "body" if value.is_unit() => {}
            "body" if value.is_string() => body = Some(value.to_string()),
            "body" => {
                let json = to_json(&value, "body").map_err(|e| e.to_string())?;
                body = Some(json.to_string());
                json_body = true;
            }
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    let url = url.ok_or("url is required")?;
    // Checked last, but before anything reaches the host.
    let (url, host) = check_url(&url, allow)?;
    if json_body
        && !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        headers.insert("content-type".into(), "application/json".into());
    }
    Ok(HttpRequest {
        method,
        url,
        host,
        headers,
        body,
    })
}
