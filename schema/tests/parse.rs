//! Parsing, validation errors (with file, line, collection, field), round trips, projects.
#![allow(clippy::unwrap_used)]

use ferrobase_schema::*;
use proptest::prelude::*;

const FILE: &str = "collections/posts.toml";

fn parse(text: &str) -> Collection {
    match parse_collection(FILE, text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors: {e:#?}"),
    }
}

fn errors(text: &str) -> Vec<SchemaError> {
    match parse_collection(FILE, text) {
        Ok(c) => panic!("expected errors, parsed {c:#?}"),
        Err(e) => e,
    }
}

/// Asserts exactly one error and returns it.
fn one_error(text: &str) -> SchemaError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    errs.into_iter().next().unwrap()
}

fn assert_at(e: &SchemaError, line: usize, field: Option<&str>, needle: &str) {
    assert_eq!(e.file.as_deref(), Some(FILE), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.collection.as_deref(), Some("posts"), "{e}");
    assert_eq!(e.field.as_deref(), field, "{e}");
    assert!(
        e.message.contains(needle),
        "`{}` lacks `{needle}`",
        e.message
    );
}

const FULL: &str = r#"name = "posts"
conflict = "last_write_wins"
[fields]
title     = { type = "text", required = true, min = 1, max = 200, pattern = "^[A-Z]" }
body      = { type = "text" }
score     = { type = "number", min = -1.5, max = 10, default = 2.5 }
views     = { type = "integer", min = 0, max = 1000000, default = 0 }
published = { type = "bool", default = false }
due       = { type = "date", default = "2024-01-31T12:00:00Z" }
contact   = { type = "email" }
site      = { type = "url", default = "https://example.com" }
kind      = { type = "select", values = ["news", "howto"], default = "news" }
tags      = { type = "select", values = ["a", "b", "c"], multiple = true, default = ["a", "c"] }
meta      = { type = "json", default = { nested = [1, 2], ok = true } }
author    = { type = "relation", collection = "users", required = true }
related   = { type = "relation", collection = "posts", multiple = true }
cover     = { type = "file", max_size = "5MB", mime = ["image/png", "image/*"] }
photos    = { type = "file", multiple = true, max_files = 4, max_size = "5MiB" }
raw       = { type = "file", max_size = 1024 }
where     = { type = "geo", default = { lat = 48.85, lon = 2.35 } }
content   = { type = "text", renamed_from = "old_content" }
[rules]
list = "true"
view = "true"
create = "author = @auth.id"
[[indexes]]
fields = ["author", "created_at"]
[[indexes]]
fields = ["title"]
unique = true
[triggers]
before_create = "triggers/posts.rhai#before_create"
after_update = "triggers/posts.rhai#after_update"
"#;

#[test]
fn parses_every_field_type_and_option() {
    let c = parse(FULL);
    assert_eq!(c.name, "posts");
    assert_eq!(c.conflict, ConflictPolicy::LastWriteWins);
    let names: Vec<&str> = c.fields.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "title",
            "body",
            "score",
            "views",
            "published",
            "due",
            "contact",
            "site",
            "kind",
            "tags",
            "meta",
            "author",
            "related",
            "cover",
            "photos",
            "raw",
            "where",
            "content"
        ],
        "declaration order is kept"
    );
    let f = |n: &str| c.fields.get(n).unwrap();
    assert_eq!(
        f("title").ty,
        FieldType::Text {
            min: Some(1),
            max: Some(200),
            pattern: Some("^[A-Z]".into())
        }
    );
    assert!(f("title").required);
    assert_eq!(
        f("score").ty,
        FieldType::Number {
            min: Some(-1.5),
            max: Some(10.0)
        }
    );
    assert_eq!(f("score").default, Some(serde_json::json!(2.5)));
    assert_eq!(
        f("views").ty,
        FieldType::Integer {
            min: Some(0),
            max: Some(1_000_000)
        }
    );
    assert_eq!(f("published").ty, FieldType::Bool);
    assert_eq!(f("published").default, Some(serde_json::json!(false)));
    assert_eq!(f("due").ty, FieldType::Date);
    assert_eq!(f("contact").ty, FieldType::Email);
    assert_eq!(f("site").ty, FieldType::Url);
    assert_eq!(
        f("kind").ty,
        FieldType::Select {
            values: vec!["news".into(), "howto".into()],
            multiple: false
        }
    );
    assert_eq!(f("tags").default, Some(serde_json::json!(["a", "c"])));
    assert_eq!(f("meta").ty, FieldType::Json);
    assert_eq!(
        f("meta").default,
        Some(serde_json::json!({"nested": [1, 2], "ok": true}))
    );
    assert_eq!(
        f("related").ty,
        FieldType::Relation {
            collection: "posts".into(),
            multiple: true
        }
    );
    assert_eq!(
        f("cover").ty,
        FieldType::File {
            multiple: false,
            max_files: None,
            max_size: Some(5_000_000),
            mime: vec!["image/png".into(), "image/*".into()]
        }
    );
    assert_eq!(
        f("photos").ty,
        FieldType::File {
            multiple: true,
            max_files: Some(4),
            max_size: Some(5 << 20),
            mime: vec![]
        }
    );
    assert!(matches!(
        f("raw").ty,
        FieldType::File {
            max_size: Some(1024),
            ..
        }
    ));
    assert_eq!(f("where").ty, FieldType::Geo);
    assert_eq!(f("content").renamed_from.as_deref(), Some("old_content"));
    assert_eq!(c.rules.list.as_deref(), Some("true"));
    assert_eq!(c.rules.update, None);
    assert_eq!(
        c.indexes,
        vec![
            Index {
                fields: vec!["author".into(), "created_at".into()],
                unique: false
            },
            Index {
                fields: vec!["title".into()],
                unique: true
            }
        ]
    );
    assert_eq!(c.triggers.len(), 2);
    assert_eq!(c.table(), "c_posts");
}

#[test]
fn value_types_for_expressions() {
    use ferrobase_schema::model::*;
    let c = parse(FULL);
    let vt = |n: &str| format!("{:?}", c.fields.get(n).unwrap().ty.value_type());
    assert_eq!(vt("title"), "Text");
    assert_eq!(vt("kind"), "Text");
    assert_eq!(vt("author"), "Text");
    assert_eq!(vt("cover"), "Text");
    assert_eq!(vt("tags"), "TextList");
    assert_eq!(vt("related"), "TextList");
    assert_eq!(vt("photos"), "TextList");
    assert_eq!(vt("score"), "Number");
    assert_eq!(vt("views"), "Integer");
    assert_eq!(vt("published"), "Bool");
    assert_eq!(vt("due"), "Date");
    assert_eq!(vt("meta"), "Json");
    assert_eq!(vt("where"), "Json");
    let _ = SYSTEM_FIELDS;
}

#[test]
fn name_defaults_to_the_file_stem_and_must_match_it() {
    let c = parse("[fields]\nt = { type = \"text\" }\n");
    assert_eq!(c.name, "posts");
    let e = one_error("\n\nname = \"articles\"\n");
    assert_eq!(e.line, Some(3));
    assert!(
        e.message.contains("must match the file name \"posts\""),
        "{e}"
    );
    // JSON-ish labels without a .toml file name require `name`.
    assert!(parse_collection("<request>", "[fields]\n").is_err());
    assert!(parse_collection("<request>", "name = \"x\"\n").is_ok());
}

#[test]
fn malformed_toml_has_file_and_line() {
    let e = one_error("name = \"posts\"\n[fields]\ntitle = { type = \"text\"\n");
    assert_eq!(e.file.as_deref(), Some(FILE));
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.collection.as_deref(), Some("posts"));
    assert!(e.message.starts_with("invalid TOML"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("collections/posts.toml:3: posts: invalid TOML"),
        "{shown}"
    );
}

#[test]
fn unknown_type() {
    let e = one_error("name = \"posts\"\n[fields]\nbody = { type = \"txt\" }\n");
    assert_at(&e, 3, Some("body"), "unknown type \"txt\"");
    assert!(e.message.contains("text, number"), "lists valid types: {e}");
}

#[test]
fn unknown_key_and_key_of_another_type() {
    let e = one_error("name = \"posts\"\n[fields]\nbody = { type = \"text\", maxx = 3 }\n");
    assert_at(&e, 3, Some("body"), "unknown key `maxx`");
    let e = one_error("name = \"posts\"\n[fields.body]\ntype = \"text\"\n\nmax_size = \"5MB\"\n");
    assert_at(
        &e,
        5,
        Some("body"),
        "key `max_size` is not valid for a text field",
    );
    let e = one_error("name = \"posts\"\ncolour = \"red\"\n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("unknown key `colour`"), "{e}");
    let e = one_error("name = \"posts\"\n[rules]\nlist = \"true\"\nread = \"true\"\n");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("unknown rule `read`"), "{e}");
    let e = one_error("name = \"posts\"\n[[indexes]]\nfields = [\"id\"]\nuniq = true\n");
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn invalid_identifiers_and_reserved_names() {
    let e = one_error("name = \"posts\"\n[fields]\n\"Title\" = { type = \"text\" }\n");
    assert_at(&e, 3, Some("Title"), "invalid field name");
    let e = one_error("name = \"posts\"\n[fields]\nid = { type = \"text\" }\n");
    assert_at(&e, 3, Some("id"), "reserved");
    let e =
        one_error("name = \"posts\"\n[fields]\nx = { type = \"text\", renamed_from = \"Old\" }\n");
    assert_at(&e, 3, Some("x"), "not a valid field name");
    let errs = parse_collection("collections/Bad-Name.toml", "name = \"Bad-Name\"\n").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.message.contains("invalid collection name")),
        "{errs:?}"
    );
    let errs = parse_collection("collections/_sys.toml", "").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.message.contains("invalid collection name")),
        "{errs:?}"
    );
    let long = "a".repeat(62);
    let errs = parse_collection(&format!("{long}.toml"), "").unwrap_err();
    assert!(errs[0].message.contains("longer than 61"), "{errs:?}");
}

#[test]
fn users_toml_declares_only_extra_fields() {
    let ok = parse_collection(
        "collections/users.toml",
        "[fields]\nbio = { type = \"text\" }\n",
    );
    assert!(ok.is_ok());
    let ok = parse_collection(
        "collections/users.toml",
        "[fields]\nbio = { type = \"text\" }\n[rules]\nview = \"id = @auth.id || (email_verified = true && bio != '')\"\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Other collections do not see the built-in user fields.
    assert!(parse_collection(FILE, "[rules]\nview = \"email_verified = true\"\n").is_err());
    let errs = parse_collection(
        "collections/users.toml",
        "[fields]\nemail = { type = \"email\" }\n",
    )
    .unwrap_err();
    assert!(
        errs[0].message.contains("built-in field of users"),
        "{errs:?}"
    );
}

#[test]
fn empty_rule_has_the_hint() {
    let e = one_error("name = \"posts\"\n[rules]\nlist = \"true\"\nview = \"\"\n");
    assert_at(&e, 4, None, "write \"true\" to make it public");
}

#[test]
fn bad_rule_reports_line_and_expression_position() {
    let e = one_error(
        "name = \"posts\"\n[fields]\ntitle = { type = \"text\" }\n[rules]\nlist = \"title = \"\n",
    );
    assert_at(&e, 5, None, "rule `list`");
    assert!(e.message.contains("position 8"), "{e}");
    // Unknown field in a rule (type check against the collection's scope).
    let e = one_error("name = \"posts\"\n[rules]\nview = \"nope = 1\"\n");
    assert_at(&e, 3, None, "position 0");
}

#[test]
fn overlong_rule_rejected() {
    let rule = format!("title = '{}'", "x".repeat(MAX_RULE_LEN));
    let e = one_error(&format!(
        "name = \"posts\"\n[fields]\ntitle = {{ type = \"text\" }}\n[rules]\nlist = \"{rule}\"\n"
    ));
    assert_at(&e, 5, None, "longer than 4096");
}

#[test]
fn bad_max_size() {
    let e =
        one_error("name = \"posts\"\n[fields]\ncover = { type = \"file\", max_size = \"5XB\" }\n");
    assert_at(&e, 3, Some("cover"), "max_size \"5XB\" is not a size");
    let e = one_error("name = \"posts\"\n[fields]\ncover = { type = \"file\", max_size = 0 }\n");
    assert_at(&e, 3, Some("cover"), "greater than 0");
    let e = one_error("name = \"posts\"\n[fields]\ncover = { type = \"file\", max_size = true }\n");
    assert_at(&e, 3, Some("cover"), "max_size must be a size");
}

#[test]
fn option_and_default_errors() {
    let e =
        one_error("name = \"posts\"\n[fields]\n\ntitle = { type = \"text\", min = 5, max = 3 }\n");
    assert_at(
        &e,
        4,
        Some("title"),
        "max (3) must not be less than min (5)",
    );
    assert_eq!(
        e.to_string(),
        "collections/posts.toml:4: posts.title: max (3) must not be less than min (5)"
    );
    let e = one_error("name = \"posts\"\n[fields]\nt = { type = \"text\", pattern = \"(\" }\n");
    assert_at(&e, 3, Some("t"), "pattern does not compile");
    let e = one_error("name = \"posts\"\n[fields]\nk = { type = \"select\", values = [] }\n");
    assert_at(&e, 3, Some("k"), "values must not be empty");
    let e = one_error(
        "name = \"posts\"\n[fields]\nk = { type = \"select\", values = [\"a\", \"a\"] }\n",
    );
    assert_at(&e, 3, Some("k"), "listed twice");
    let e = one_error(
        "name = \"posts\"\n[fields]\nk = { type = \"select\", values = [\"a\"], default = \"b\" }\n",
    );
    assert_at(&e, 3, Some("k"), "not one of the select values");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"integer\", default = 1.5 }\n");
    assert_at(&e, 3, Some("n"), "default must be an integer");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"bool\", default = \"yes\" }\n");
    assert_at(&e, 3, Some("n"), "default must be true or false");
    let e =
        one_error("name = \"posts\"\n[fields]\nn = { type = \"number\", min = 0, default = -1 }\n");
    assert_at(&e, 3, Some("n"), "outside min/max");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"text\", max = -1 }\n");
    assert_at(&e, 3, Some("n"), "max must be a non-negative integer");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"file\", max_files = 2 }\n");
    assert_at(&e, 3, Some("n"), "max_files needs multiple = true");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"relation\" }\n");
    assert_at(&e, 3, Some("n"), "needs `collection");
    let e = one_error(
        "name = \"posts\"\n[fields]\nn = { type = \"geo\", default = { lat = 100, lon = 0 } }\n",
    );
    assert_at(&e, 3, Some("n"), "default must be a point");
    let e = one_error("name = \"posts\"\n[fields]\nn = { type = \"number\", min = inf }\n");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn index_and_trigger_errors() {
    let e = one_error("name = \"posts\"\n[[indexes]]\nfields = [\"nope\"]\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("unknown field \"nope\""), "{e}");
    let e = one_error("name = \"posts\"\n[triggers]\nbefore_create = \"../evil.rhai#x\"\n");
    assert_eq!(e.line, Some(3), "{e}");
    let e = one_error("name = \"posts\"\n[triggers]\non_create = \"triggers/p.rhai#x\"\n");
    assert!(e.message.contains("unknown trigger"), "{e}");
}

#[test]
fn several_errors_are_reported_at_once() {
    let errs = errors(
        "name = \"posts\"\n[fields]\na = { type = \"txt\" }\nb = { type = \"text\", min = 3, max = 1 }\n[rules]\nlist = \"\"\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(3), Some(4), Some(6)]);
}

#[test]
fn relation_to_missing_collection_is_located_by_load_project() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("collections")).unwrap();
    std::fs::write(root.join("ferrobase.toml"), "[project]\nname = \"app\"\n").unwrap();
    std::fs::write(
        root.join("collections/posts.toml"),
        "name = \"posts\"\n[fields]\ntitle = { type = \"text\" }\nauthor = { type = \"relation\", collection = \"users\" }\ntopic = { type = \"relation\",\n  collection = \"topics\" }\n",
    )
    .unwrap();
    let errs = load_project(root).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_at(
        &errs[0],
        6,
        Some("topic"),
        "relation to unknown collection \"topics\"",
    );

    // validate() on the same set reports it without file/line.
    let c = parse_collection(
        FILE,
        "[fields]\ntopic = { type = \"relation\", collection = \"topics\" }\n",
    )
    .unwrap();
    let errs = validate(std::slice::from_ref(&c)).unwrap_err();
    assert_eq!(errs[0].collection.as_deref(), Some("posts"));
    assert_eq!(errs[0].field.as_deref(), Some("topic"));
    let mut topics = Collection::new("topics");
    topics.rules.list = Some("true".into());
    assert!(validate(&[c.clone(), topics]).is_ok());
    let errs = validate(&[c.clone(), c]).unwrap_err();
    assert!(
        errs.iter().any(|e| e.message.contains("more than once")),
        "{errs:?}"
    );
}

#[test]
fn validate_checks_collections_built_in_code() {
    let mut c = Collection::new("posts");
    c.fields.insert(
        "t".into(),
        Field::new(FieldType::Text {
            min: Some(5),
            max: Some(1),
            pattern: None,
        }),
    );
    c.rules.delete = Some(String::new());
    let errs = validate(&[c]).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(
        errs[0].to_string(),
        "posts.t: max (1) must not be less than min (5)"
    );

    let mut many = Collection::new("many");
    for i in 0..=MAX_FIELDS {
        many.fields
            .insert(format!("f{i}"), Field::new(FieldType::Bool));
    }
    let errs = validate(&[many]).unwrap_err();
    assert!(errs[0].message.contains("too many fields"), "{errs:?}");

    let set: Vec<Collection> = (0..=MAX_COLLECTIONS)
        .map(|i| Collection::new(format!("c{i}")))
        .collect();
    let errs = validate(&set).unwrap_err();
    assert!(errs[0].message.contains("too many collections"), "{errs:?}");
}

#[test]
fn toml_round_trip() {
    let c = parse(FULL);
    let text = collection_to_toml(&c);
    let back = parse(&text);
    assert_eq!(
        back, c,
        "round trip changed the collection; TOML was:\n{text}"
    );
    assert!(
        text.contains("title = { type = \"text\", required = true, min = 1, max = 200"),
        "{text}"
    );
    assert!(text.contains("max_size = 5000000"), "{text}");

    // Awkward strings survive too.
    let mut odd = Collection::new("posts");
    odd.fields.insert(
        "t".into(),
        Field {
            ty: FieldType::Text {
                min: None,
                max: None,
                pattern: Some(r#"^"\w+\\\n$"#.into()),
            },
            required: false,
            default: Some(serde_json::json!("tab\there \"quoted\" \u{1} ünï")),
            renamed_from: None,
        },
    );
    odd.rules.list = Some("t = 'it''s' || t ~ \"\\\"\"".into());
    let text = collection_to_toml(&odd);
    let back = parse_collection_unchecked(&text);
    assert_eq!(back, odd, "{text}");
}

/// Round trips for values a rule checker might reject: go through serde instead.
fn parse_collection_unchecked(text: &str) -> Collection {
    let v: toml::Value = toml::from_str(text).unwrap();
    let json = serde_json::to_value(v).unwrap();
    serde_json::from_value(json).unwrap()
}

#[test]
fn json_form_equals_toml_form() {
    let c = parse(FULL);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["fields"]["cover"]["max_size"],
        serde_json::json!(5_000_000)
    );
    assert_eq!(json["fields"]["body"], serde_json::json!({"type": "text"}));
    assert_eq!(json["conflict"], "last_write_wins");
    assert_eq!(
        json["indexes"][1],
        serde_json::json!({"fields": ["title"], "unique": true})
    );
    let back: Collection = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);
    // Same strictness as TOML.
    let err = serde_json::from_value::<Collection>(serde_json::json!({
        "name": "x", "fields": {"a": {"type": "text", "max_files": 3}}
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("not valid for a text field"),
        "{err}"
    );
    let f: Field =
        serde_json::from_value(serde_json::json!({"type": "file", "max_size": "1MiB"})).unwrap();
    assert!(matches!(
        f.ty,
        FieldType::File {
            max_size: Some(1_048_576),
            ..
        }
    ));
}

#[test]
fn init_then_load_project() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("app");
    init_project(&root, "my\"app").unwrap();
    for f in [
        "ferrobase.toml",
        "collections/posts.toml",
        "flags.toml",
        ".gitignore",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let p = load_project(&root).unwrap();
    assert_eq!(p.name, "my\"app");
    assert_eq!(p.environments["local"].server, "http://127.0.0.1:8090");
    assert_eq!(p.collections.len(), 1);
    assert_eq!(p.collections[0].rules.list.as_deref(), Some("true"));
    assert_eq!(p.collections[0].rules.view.as_deref(), Some("true"));
    assert!(p.flags.is_some());
    // Refuses to overwrite, and writes nothing when it refuses.
    std::fs::remove_file(root.join("flags.toml")).unwrap();
    let err = init_project(&root, "again").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(!root.join("flags.toml").exists());
}

#[test]
fn load_project_sorts_and_reports_manifest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("collections")).unwrap();
    std::fs::write(root.join("collections/zeta.toml"), "").unwrap();
    std::fs::write(
        root.join("collections/alpha.toml"),
        "[fields]\nz = { type = \"relation\", collection = \"zeta\" }\n",
    )
    .unwrap();
    std::fs::write(root.join("collections/notes.txt"), "ignored").unwrap();
    let errs = load_project(root).unwrap_err();
    assert_eq!(errs[0].file.as_deref(), Some("ferrobase.toml"));
    std::fs::write(root.join("ferrobase.toml"), "[project]\nname = 3\n").unwrap();
    let errs = load_project(root).unwrap_err();
    assert_eq!(
        (errs[0].file.as_deref(), errs[0].line),
        (Some("ferrobase.toml"), Some(2))
    );
    std::fs::write(
        root.join("ferrobase.toml"),
        "[project]\nname = \"app\"\n[environments.prod]\nserver = \"https://api.example.com\"\n[auth]\nanything = 1\n",
    )
    .unwrap();
    std::fs::write(root.join("flags.toml"), "[flags\n").unwrap();
    let errs = load_project(root).unwrap_err();
    assert_eq!(
        (errs[0].file.as_deref(), errs[0].line),
        (Some("flags.toml"), Some(1))
    );
    std::fs::remove_file(root.join("flags.toml")).unwrap();
    let p = load_project(root).unwrap();
    let names: Vec<&str> = p.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(p.environments["prod"].server, "https://api.example.com");
    assert!(p.flags.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_collection_never_panics(text in "\\PC{0,300}") {
        let _ = parse_collection(FILE, &text);
    }

    #[test]
    fn parse_collection_never_panics_on_toml_like_text(
        text in "(name = \"posts\"\n|\\[fields\\]\n|\\[rules\\]\n|\\[\\[indexes\\]\\]\n|[a-z_]{1,8} = |\\{ type = \"(text|file|select|number|integer|geo|relation)\"|, [a-z_]{1,9} = |\"[a-zA-Z0-9 =@.'#/]{0,12}\"|-?[0-9]{1,20}|[0-9.e+-]{1,8}|\\[|\\]|\\}|\n|true|inf|nan){0,40}"
    ) {
        let _ = parse_collection(FILE, &text);
        if let Ok(c) = parse_collection(FILE, &text) {
            // Anything accepted must round-trip.
            let again = parse_collection(FILE, &collection_to_toml(&c));
            prop_assert_eq!(again.ok(), Some(c));
        }
    }
}

#[test]
fn load_project_ships_the_scripts_triggers_name_and_the_push_toml() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("collections")).unwrap();
    std::fs::create_dir_all(root.join("triggers")).unwrap();
    std::fs::write(root.join("ferrobase.toml"), "[project]\nname = \"app\"\n").unwrap();
    std::fs::write(
        root.join("collections/posts.toml"),
        "name = \"posts\"\n[fields]\ntitle = { type = \"text\" }\n[triggers]\nbefore_create = \"triggers/posts.rhai#before_create\"\nafter_create = \"triggers/posts.rhai#after_create\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("triggers/posts.rhai"),
        "fn before_create(r, ctx) { r }",
    )
    .unwrap();
    std::fs::write(root.join("triggers/unused.rhai"), "fn x() {}").unwrap();
    std::fs::write(
        root.join("push.toml"),
        "[categories.marketing]\ndefault = true\n",
    )
    .unwrap();
    let p = load_project(root).unwrap();
    assert_eq!(
        p.scripts.keys().collect::<Vec<_>>(),
        ["triggers/posts.rhai"],
        "only named scripts, once"
    );
    assert!(p.push.categories["marketing"].default);

    std::fs::remove_file(root.join("triggers/posts.rhai")).unwrap();
    std::fs::write(root.join("push.toml"), "[categories.Bad]\ndefault = true\n").unwrap();
    let errs = load_project(root).unwrap_err();
    let text: Vec<String> = errs
        .iter()
        .map(|e| format!("{:?}:{:?} {}", e.file, e.line, e.message))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("push.toml") && t.contains("Some(1)")),
        "{text:?}"
    );
    // The missing script is reported once the rest is valid.
    std::fs::write(root.join("push.toml"), "").unwrap();
    let errs = load_project(root).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.file.as_deref() == Some("collections/posts.toml")
                && e.message
                    .contains("triggers/posts.rhai, which does not exist")),
        "{errs:#?}"
    );
}
