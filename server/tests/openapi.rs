//! The OpenAPI contract stays true to the code:
//! - `sdk-spec/openapi.json` equals the generated document (regenerate with
//!   `cargo run -p ferrobase -- openapi > sdk-spec/openapi.json`, or run this test with
//!   `UPDATE_OPENAPI=1`);
//! - every route the router answers is in the document and every documented operation is
//!   answered (routes are found by scanning `server/src` for `.route("…")`, then probing the
//!   live router, whose 405 `Allow` header lists the methods);
//! - every operation has an error table entry, every `$ref` resolves;
//! - a deployment's `GET /v1/openapi.json` has typed schemas and concrete paths.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Backend, TestServer};
use ferrobase_server::openapi;
use reqwest::Method;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn checked_in_document_matches_the_code() {
    let path = repo_root().join("sdk-spec/openapi.json");
    let generated = openapi::generic_json();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "sdk-spec/openapi.json is out of date with the code. Regenerate it with\n  \
         cargo run -p ferrobase -- openapi > sdk-spec/openapi.json\n\
         (or UPDATE_OPENAPI=1 cargo test -p ferrobase-server --test openapi) and commit it \
         together with the change (see docs/api-versioning.md for what may change in /v1)."
    );
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[test]
fn every_operation_documents_its_errors() {
    let doc = openapi::generic();
    assert_eq!(doc["openapi"], "3.1.0");
    let table: BTreeSet<&str> = openapi::ERRORS.iter().map(|(id, _)| *id).collect();
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        assert!(
            table.contains(id.as_str()),
            "{method} {path} ({id}) has no entry in openapi::ERRORS: list the error codes it can answer with"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success response"
        );
        assert!(responses.contains_key("500"), "{method} {path}: no 500");
        assert!(op["summary"].is_string(), "{method} {path}: no doc comment");
    }
    for id in table {
        assert!(
            ids.contains(id),
            "openapi::ERRORS lists {id}, which is no operation"
        );
    }
}

/// Every code in `error.rs`'s `Code::parts` is in `openapi::CODE_TABLE` with the same status
/// (the table may already hold codes of routes still being built).
#[test]
fn the_code_table_covers_error_rs() {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/error.rs"))
        .unwrap();
    let by_name: BTreeMap<String, u16> = (100..600)
        .filter_map(|n| {
            let s = reqwest::StatusCode::from_u16(n).ok()?;
            let name = s
                .canonical_reason()?
                .to_uppercase()
                .replace([' ', '-'], "_");
            Some((name.replace('\'', ""), n))
        })
        .collect();
    let mut found = 0;
    let mut rest = src.as_str();
    while let Some(i) = rest.find("StatusCode::") {
        rest = &rest[i + "StatusCode::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        let Some(status) = by_name.get(&name) else {
            continue;
        };
        let after = &rest[name.len()..];
        let Some(q) = after.find('"') else { continue };
        // Only `(StatusCode::X, "code", …)` tuples: a comma and whitespace before the quote.
        if after[..q].trim() != "," {
            continue;
        }
        let code: String = after[q + 1..].chars().take_while(|c| *c != '"').collect();
        found += 1;
        let entry = openapi::CODE_TABLE.iter().find(|(c, _, _)| *c == code);
        assert!(
            entry.is_some(),
            "error code `{code}` is missing from openapi::CODE_TABLE (server/src/openapi.rs)"
        );
        assert_eq!(entry.unwrap().1, *status, "status of `{code}` differs");
    }
    assert!(found >= 15, "parsed only {found} codes from error.rs");
}

fn check_refs(doc: &Value, node: &Value, at: &str) {
    match node {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("external $ref {r}"));
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r} at {at}");
            }
            for (k, v) in m {
                check_refs(doc, v, &format!("{at}/{k}"));
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_refs(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

fn photoshare() -> Vec<ferrobase_schema::Collection> {
    ferrobase_schema::load_project(&repo_root().join("examples/photoshare"))
        .unwrap_or_else(|e| panic!("examples/photoshare is invalid: {e:?}"))
        .collections
}

#[test]
fn every_ref_resolves() {
    let generic = openapi::generic();
    check_refs(&generic, &generic, "");
    let typed = openapi::for_collections(&photoshare());
    check_refs(&typed, &typed, "");
}

/// `.route("…")` and `.nest("…")` literals in the server's source.
fn scan_routes() -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let (mut routes, mut nests) = (BTreeSet::new(), BTreeSet::new());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (marker, set) in [(".route(", &mut routes), (".nest(", &mut nests)] {
            let mut rest = code.as_str();
            while let Some(i) = rest.find(marker) {
                rest = &rest[i + marker.len()..];
                let lit = rest.trim_start();
                if let Some(lit) = lit.strip_prefix('"')
                    && let Some(end) = lit.find('"')
                {
                    set.insert(lit[..end].to_owned());
                }
            }
        }
    }
    (routes, nests)
}

fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for ch in path.chars() {
        match ch {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("x1");
            }
            _ if in_param => {}
            _ => out.push(ch),
        }
    }
    out
}

/// The methods the router serves at `path`, from the `Allow` of a 405 (None: no such route).
async fn served_methods(server: &TestServer, path: &str) -> Option<BTreeSet<String>> {
    let resp = server
        .client
        .request(
            Method::from_bytes(b"TRACE").unwrap(),
            format!("{}{}", server.base, concrete(path)),
        )
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() != 405 {
        return None;
    }
    let allow = resp.headers().get("allow")?.to_str().ok()?.to_owned();
    Some(
        allow
            .split(',')
            .map(|m| m.trim().to_uppercase())
            .filter(|m| !m.is_empty() && m != "HEAD" && m != "OPTIONS")
            .collect(),
    )
}

/// Routes served but not yet in the contract: the identity and admin-support routes landed
/// while the contract was being built. This list may only shrink; the test fails when an entry
/// is documented (remove it) or no longer served. Never add to it: document new routes instead.
const PENDING: &[&str] = &[];

#[tokio::test]
async fn the_router_and_the_document_agree() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let (routes, nests) = scan_routes();
    assert!(
        routes.len() >= 8,
        "the route scanner found only {routes:?}: has the router moved? Update scan_routes"
    );
    // Candidate prefixes: none, each nest, each nest inside another.
    let mut prefixes: BTreeSet<String> = BTreeSet::from([String::new()]);
    for a in &nests {
        prefixes.insert(a.clone());
        for b in &nests {
            prefixes.insert(format!("{a}{b}"));
        }
    }
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unlocated = Vec::new();
    for route in &routes {
        let mut found = false;
        for prefix in &prefixes {
            let full = format!("{prefix}{route}");
            if let Some(methods) = served_methods(&server, &full).await {
                served.entry(full).or_default().extend(methods);
                found = true;
            }
        }
        if !found {
            unlocated.push(route.clone());
        }
    }
    assert!(
        unlocated.is_empty(),
        "routes in the source that no probe reached (prefixes tried: {prefixes:?}): {unlocated:?}"
    );

    let doc = openapi::generic();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path, _) in operations(&doc) {
        // The Allow header of a probe leaves HEAD and OPTIONS out (axum serves HEAD for every
        // GET): the documented ones (tus) are compared by their other methods.
        if method != "HEAD" && method != "OPTIONS" {
            documented.entry(path).or_default().insert(method);
        }
    }
    let mut missing = Vec::new();
    let mut still_pending = BTreeSet::new();
    for (path, methods) in &served {
        for m in methods {
            let op = format!("{m} {path}");
            if documented.get(path).is_some_and(|d| d.contains(m)) {
                assert!(
                    !PENDING.contains(&op.as_str()),
                    "{op} is documented now: remove it from PENDING in server/tests/openapi.rs"
                );
            } else if PENDING.contains(&op.as_str()) {
                still_pending.insert(op);
            } else {
                missing.push(op);
            }
        }
    }
    let gone: Vec<&&str> = PENDING
        .iter()
        .filter(|op| !still_pending.contains(**op))
        .collect();
    assert!(
        gone.is_empty(),
        "PENDING lists routes the server no longer serves: {gone:?}"
    );
    if !still_pending.is_empty() {
        eprintln!(
            "NOTE: {} routes are served but not yet in the OpenAPI document (PENDING)",
            still_pending.len()
        );
    }
    assert!(
        missing.is_empty(),
        "served but not in the OpenAPI document: {missing:?}\n\
         Add #[utoipa::path] to the handler, list it in `paths(...)` and `ERRORS` in \
         server/src/openapi.rs, then regenerate sdk-spec/openapi.json."
    );
    let mut phantom = Vec::new();
    for (path, methods) in &documented {
        for m in methods {
            if !served.get(path).is_some_and(|s| s.contains(m)) {
                phantom.push(format!("{m} {path}"));
            }
        }
    }
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_deployment_serves_typed_schemas_and_concrete_paths() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let token = server.admin().await;
    let collections = serde_json::to_value(photoshare()).unwrap();
    server
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({ "collections": collections }),
        )
        .await
        .expect(200);

    // Public, and the same document the CLI prints for the project.
    let doc = server
        .get("/v1/openapi.json", None)
        .await
        .expect(200)
        .clone();
    assert_eq!(doc, openapi::for_collections(&photoshare()));
    assert_eq!(doc["openapi"], "3.1.0");
    check_refs(&doc, &doc, "");

    let schemas = &doc["components"]["schemas"];
    for name in ["Profiles", "Posts", "Comments", "Follows"] {
        for suffix in ["Record", "Create", "Update", "List"] {
            assert!(
                schemas[format!("{name}{suffix}")].is_object(),
                "missing {name}{suffix}"
            );
        }
    }
    let post = &schemas["PostsRecord"]["properties"];
    assert_eq!(post["id"]["format"], "uuid");
    assert_eq!(post["created_at"]["format"], "date-time");
    assert_eq!(post["version"]["type"], "integer");
    assert_eq!(post["owner"]["type"], "string", "required → not nullable");
    assert_eq!(post["caption"]["type"], json!(["string", "null"]));
    assert_eq!(post["likes"]["type"], json!(["integer", "null"]));
    assert_eq!(post["author"]["format"], "uuid");
    assert_eq!(post["tags"]["type"], json!(["array", "null"]));
    assert_eq!(
        post["tags"]["items"]["enum"],
        json!(["travel", "food", "nature", "people", "pets", "art"])
    );
    assert_eq!(
        post["visibility"]["anyOf"],
        json!([{"type": "string", "enum": ["public", "followers", "private"]}, {"type": "null"}])
    );
    assert_eq!(post["location"]["type"], json!(["object", "null"]));
    assert_eq!(post["taken_at"]["format"], "date-time");
    let create = &schemas["PostsCreate"];
    assert_eq!(create["required"], json!(["owner", "author"]));
    assert_eq!(create["additionalProperties"], false);
    assert!(schemas["PostsUpdate"].get("required").is_none());

    let paths = &doc["paths"];
    let list = &paths["/v1/collections/posts/records"];
    assert_eq!(list["get"]["operationId"], "list_posts");
    assert_eq!(
        list["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PostsList"
    );
    assert_eq!(
        list["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PostsCreate"
    );
    let item = &paths["/v1/collections/posts/records/{id}"];
    assert_eq!(
        item["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PostsUpdate"
    );
    assert!(item["delete"]["responses"]["204"].is_object());

    // A record as served has every property of its typed schema, with the declared types.
    let profile = server
        .post(
            "/v1/collections/profiles/records",
            Some(&token),
            json!({"owner": "u1", "username": "ada"}),
        )
        .await
        .expect(201)
        .clone();
    let rec_schema = &schemas["ProfilesRecord"];
    for key in rec_schema["required"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            profile.get(key).is_some(),
            "record lacks `{key}`: {profile}"
        );
        let ty = &rec_schema["properties"][key]["type"];
        let value = &profile[key];
        let kind = match value {
            Value::Null => "null",
            Value::String(_) => "string",
            Value::Number(n) if n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        assert!(
            allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number")),
            "`{key}` is {kind}, schema says {ty}"
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Defects found by generating TypeScript clients (openapi-typescript, @hey-api/openapi-ts)
// from a deployment's document; tests/e2e/ts_client.sh type-checks such clients.

/// A partial update has no defaults (openapi-typescript makes a property with `default`
/// required, so an app obeying its types would overwrite the field). A create states its
/// defaults without the `default` keyword, and a field with a default is optional.
#[test]
fn update_bodies_have_no_defaults_and_create_defaults_stay_optional() {
    let doc = openapi::for_collections(&photoshare());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut updates = 0;
    for (name, schema) in schemas {
        if !(name.ends_with("Update") || name.ends_with("Create")) {
            continue;
        }
        for (field, prop) in schema["properties"].as_object().unwrap() {
            assert!(
                prop.get("default").is_none(),
                "{name}.{field} has a `default`: {prop}"
            );
        }
        updates += usize::from(name.ends_with("Update"));
    }
    assert!(updates >= 4, "only {updates} Update schemas");
    let create = &schemas["PostsCreate"];
    let required: Vec<&str> = create["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (field, default) in [("visibility", json!("public")), ("likes", json!(0))] {
        let prop = &create["properties"][field];
        assert!(!required.contains(&field), "{field} has a default");
        assert_eq!(prop["x-default"], default, "{field}: {prop}");
        assert!(
            prop["description"]
                .as_str()
                .unwrap()
                .contains("Default when omitted"),
            "{field}: {prop}"
        );
        let update = &schemas["PostsUpdate"]["properties"][field];
        assert!(update.get("x-default").is_none(), "{field}: {update}");
    }
}

/// `{"type": "object"}` alone is an object with no properties to generators: the batch body and
/// the document itself must allow any member.
#[test]
fn free_form_objects_allow_any_member() {
    for doc in [openapi::generic(), openapi::for_collections(&photoshare())] {
        assert_eq!(
            doc["components"]["schemas"]["BatchOperation"]["properties"]["body"],
            json!({"type": "object", "description": "The record body (create and update).",
                   "additionalProperties": true})
        );
        assert_eq!(
            doc["paths"]["/v1/openapi.json"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"],
            json!({"type": "object", "additionalProperties": true})
        );
    }
}

/// Both documents name a server: relative, the origin they are served from (paths carry `/v1`).
#[test]
fn documents_name_a_server() {
    for doc in [openapi::generic(), openapi::for_collections(&photoshare())] {
        assert_eq!(doc["servers"][0]["url"], "/", "{}", doc["servers"]);
        assert_eq!(doc["servers"].as_array().unwrap().len(), 1);
    }
}

/// Every mutating operation but sign-in and refresh documents `Idempotency-Key`, its two
/// problems and `Idempotent-Replayed`, in the generic and the typed document alike.
#[test]
fn mutating_operations_take_an_idempotency_key() {
    for doc in [openapi::generic(), openapi::for_collections(&photoshare())] {
        let mut with_key = 0;
        for (method, path, op) in operations(&doc) {
            let key = param(&op, "Idempotency-Key");
            let exempt = [
                "/v1/auth/login",
                "/v1/admin/auth/login",
                "/v1/auth/refresh",
                "/v1/files/token",
            ]
            .contains(&path.as_str())
                // tus resumes by Upload-Offset, its own idempotency.
                || path.starts_with("/v1/uploads");
            if method == "GET" || method == "HEAD" || exempt {
                assert!(key.is_none(), "{method} {path} documents Idempotency-Key");
                continue;
            }
            let key = key.unwrap_or_else(|| panic!("{method} {path}: no Idempotency-Key"));
            with_key += 1;
            assert_eq!(key["in"], "header");
            assert_eq!(key["schema"]["maxLength"], 255);
            let codes = |status: &str| op["responses"][status]["x-error-codes"].clone();
            assert!(
                codes("409")
                    .as_array()
                    .unwrap()
                    .contains(&json!("idempotency_in_progress")),
                "{method} {path}"
            );
            assert!(
                codes("422")
                    .as_array()
                    .unwrap()
                    .contains(&json!("idempotency_key_reused")),
                "{method} {path}"
            );
            let (_, success) = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(s, _)| s.starts_with('2'))
                .unwrap();
            assert!(
                success["headers"]["Idempotent-Replayed"].is_object(),
                "{method} {path}"
            );
        }
        assert!(with_key >= 20, "only {with_key} operations take a key");
    }
}

fn param<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// Resolves `{"$ref": "#/…"}` once.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc.pointer(&r[1..]).unwrap(),
        None => schema,
    }
}

/// A JSON value's type as JSON Schema names it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `value` has every required member of `schema` (an object schema) and no member it does not
/// list, each of a declared type (`type`, or the branches of `anyOf`).
fn conforms(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let obj = value.as_object().ok_or("not an object")?;
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        if !obj.contains_key(key) {
            return Err(format!("lacks required `{key}`"));
        }
    }
    for (key, v) in obj {
        let Some(prop) = schema["properties"].get(key) else {
            if schema["additionalProperties"] == true {
                continue;
            }
            return Err(format!("`{key}` is not in the schema"));
        };
        let mut types: Vec<&str> = match &prop["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for branch in prop["anyOf"].as_array().into_iter().flatten() {
            types.extend(branch["type"].as_str());
        }
        let k = kind(v);
        // An integer also satisfies `number`.
        let integer_as_number = k == "integer" && types.contains(&"number");
        if !types.is_empty() && !types.contains(&k) && !integer_as_number {
            return Err(format!("`{key}` is {k}, schema says {prop}"));
        }
    }
    Ok(())
}

/// The typed list and view operations take `fields`, and what they answer with it conforms to
/// one of their documented response schemas (a partial record), as does a full record.
async fn typed_operations_take_fields(s: &TestServer) {
    let token = s.admin().await;
    let collections = serde_json::to_value(photoshare()).unwrap();
    s.post(
        "/v1/admin/schema/apply",
        Some(&token),
        json!({ "collections": collections }),
    )
    .await
    .expect(200);
    let doc = s.get("/v1/openapi.json", None).await.expect(200).clone();
    let list = &doc["paths"]["/v1/collections/posts/records"]["get"];
    let view = &doc["paths"]["/v1/collections/posts/records/{id}"]["get"];
    for op in [list, view] {
        let fields = param(op, "fields").unwrap_or_else(|| panic!("no `fields`: {op}"));
        assert_eq!(fields["in"], "query");
        assert_eq!(fields["schema"]["type"], "string");
        assert!(
            fields["description"]
                .as_str()
                .unwrap()
                .contains("`caption`")
        );
    }
    let view_schemas: Vec<Value> =
        view["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
            .as_array()
            .unwrap_or_else(|| panic!("view answers one schema: {view}"))
            .clone();
    let list_schema = &doc["components"]["schemas"]["PostsList"];
    let item_schemas: Vec<Value> = list_schema["properties"]["items"]["items"]["anyOf"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(view_schemas, item_schemas);

    let profile = s
        .post(
            "/v1/collections/profiles/records",
            Some(&token),
            json!({"owner": "u1", "username": "ada"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = s
        .post(
            "/v1/collections/posts/records",
            Some(&token),
            json!({"owner": "u1", "author": profile, "caption": "hi"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let matches = |value: &Value| -> Vec<String> {
        view_schemas
            .iter()
            .filter(|sch| conforms(&doc, sch, value).is_ok())
            .map(|sch| sch["$ref"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let full = s
        .get(&format!("/v1/collections/posts/records/{post}"), None)
        .await
        .expect(200)
        .clone();
    assert!(
        matches(&full).contains(&"#/components/schemas/PostsRecord".to_owned()),
        "{full}"
    );
    let partial = s
        .get(
            &format!("/v1/collections/posts/records/{post}?fields=caption"),
            None,
        )
        .await
        .expect(200)
        .clone();
    assert_eq!(partial, json!({"id": post, "caption": "hi"}));
    assert_eq!(
        matches(&partial),
        ["#/components/schemas/PostsPartial"],
        "{partial}"
    );
    let page = s
        .get("/v1/collections/posts/records?fields=caption,likes", None)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        page["items"],
        json!([{"id": post, "caption": "hi", "likes": 0}])
    );
    conforms(&doc, list_schema, &page).unwrap();
    for item in page["items"].as_array().unwrap() {
        assert_eq!(matches(item), ["#/components/schemas/PostsPartial"]);
    }
}

/// The problem members clients read are typed in the Problem schema, and problems as served
/// carry them with those types.
async fn problem_members_are_typed(s: &TestServer) {
    let doc = openapi::generic();
    let problem = &doc["components"]["schemas"]["Problem"];
    let props = &problem["properties"];
    for (member, ty) in [
        ("parameter", "string"),
        ("position", "integer"),
        ("operation", "integer"),
        ("line", "integer"),
        ("column", "integer"),
        ("changes", "array"),
    ] {
        assert_eq!(props[member]["type"], ty, "{member}: {}", props[member]);
    }
    assert_eq!(props["current"]["$ref"], "#/components/schemas/Record");
    let required: Vec<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["type", "status", "code", "title", "detail"]);

    let (token, id) = s.blog_post("hello").await;
    let schema = json!({"$ref": "#/components/schemas/Problem"});
    let check = |body: &Value, member: &str| {
        assert!(body.get(member).is_some(), "no `{member}`: {body}");
        conforms(&doc, &schema, body).unwrap_or_else(|e| panic!("{e}: {body}"));
    };
    let bad = s
        .get("/v1/collections/posts/records?limit=0", Some(&token))
        .await;
    check(bad.problem(400, "bad_request"), "parameter");
    let filter = s
        .get(
            "/v1/collections/posts/records?filter=title%20%3D%3D",
            Some(&token),
        )
        .await;
    check(filter.problem(400, "invalid_filter"), "position");
    let stale = s
        .request_with(
            Method::PATCH,
            &format!("/v1/collections/posts/records/{id}"),
            Some(&token),
            Some(json!({"title": "new"})),
            &[("If-Match", "\"7\"")],
        )
        .await;
    let body = stale.problem(412, "version_mismatch");
    check(body, "current");
    conforms(&doc, &props["current"], &body["current"]).unwrap();
    assert_eq!(body["current"]["id"], id.as_str());
    let batch = s
        .post(
            "/v1/batch",
            Some(&token),
            json!({"operations": [
                {"method": "POST", "path": "/v1/collections/posts/records", "body": {"title": "a"}},
                {"method": "POST", "path": "/v1/collections/posts/records", "body": {"nope": 1}},
            ]}),
        )
        .await;
    let body = batch.problem(422, "validation_failed");
    check(body, "operation");
    assert_eq!(body["operation"], 1);
}

on_both!(typed_operations_take_fields, problem_members_are_typed);
