//! Plan (diff) cases and generated DDL text for both dialects.
#![allow(clippy::unwrap_used)]

use ferrobase_schema::*;

fn coll(toml_text: &str) -> Collection {
    parse_collection("<test>", toml_text).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn kinds(changes: &[Change]) -> Vec<(ChangeKind, Option<&str>, bool)> {
    changes
        .iter()
        .map(|c| (c.kind, c.field.as_deref(), c.destructive))
        .collect()
}

const BASE: &str = r#"name = "posts"
[fields]
title = { type = "text", max = 100 }
body = { type = "text" }
views = { type = "number" }
tags = { type = "select", values = ["a", "b"], multiple = true }
[rules]
list = "true"
[[indexes]]
fields = ["title"]
"#;

#[test]
fn same_set_twice_is_an_empty_plan() {
    let c = coll(BASE);
    assert!(plan(std::slice::from_ref(&c), std::slice::from_ref(&c)).is_empty());
    assert!(
        ddl(
            Dialect::Sqlite,
            std::slice::from_ref(&c),
            std::slice::from_ref(&c)
        )
        .is_empty()
    );
    assert_eq!(
        render_plan(&[]),
        "No changes. The server matches the project.\n"
    );
}

#[test]
fn create_and_drop_collection() {
    let c = coll(BASE);
    let p = plan(&[], std::slice::from_ref(&c));
    assert_eq!(kinds(&p), [(ChangeKind::CreateCollection, None, false)]);
    assert_eq!(p[0].description, "+ collection posts (4 fields, 1 index)");
    let p = plan(std::slice::from_ref(&c), &[]);
    assert_eq!(kinds(&p), [(ChangeKind::DropCollection, None, true)]);
    assert!(p[0].description.contains("DESTRUCTIVE"));
    let json = serde_json::to_value(&p[0]).unwrap();
    assert_eq!(json["kind"], "drop_collection");
    assert_eq!(json["destructive"], true);
}

#[test]
fn add_remove_and_change_fields() {
    let cur = coll(BASE);
    let des = coll(
        r#"name = "posts"
conflict = "last_write_wins"
[fields]
title = { type = "text", max = 200, required = true }
views = { type = "integer" }
tags = { type = "select", values = ["a", "b"] }
subtitle = { type = "text", max = 80 }
[rules]
list = "true"
view = "true"
[[indexes]]
fields = ["title"]
unique = true
[triggers]
before_create = "triggers/posts.rhai#before_create"
"#,
    );
    let p = plan(std::slice::from_ref(&cur), std::slice::from_ref(&des));
    assert_eq!(
        kinds(&p),
        [
            (ChangeKind::ChangeConflict, None, false),
            (ChangeKind::RemoveField, Some("body"), true),
            (ChangeKind::ChangeFieldType, Some("views"), true),
            (ChangeKind::ChangeFieldType, Some("tags"), true),
            (ChangeKind::ChangeField, Some("title"), false),
            (ChangeKind::AddField, Some("subtitle"), false),
            (ChangeKind::ChangeRule, None, false),
            (ChangeKind::DropIndex, None, false),
            (ChangeKind::AddIndex, None, false),
            (ChangeKind::ChangeTriggers, None, false),
        ]
    );
    let d: Vec<&str> = p.iter().map(|c| c.description.as_str()).collect();
    assert_eq!(d[0], "~ posts conflict: reject → last_write_wins");
    assert_eq!(d[1], "- posts.body (text) — DESTRUCTIVE: drops its data");
    assert_eq!(d[5], "+ posts.subtitle (text, max 80)");
    assert_eq!(
        d[4],
        "~ posts.title: (text, max 100) → (text, required, max 200)"
    );
    assert_eq!(d[6], "~ posts rule view: locked → \"true\"");
    assert_eq!(d[7], "- posts index (title)");
    assert_eq!(d[8], "+ posts unique index (title)");
    assert_eq!(
        d[9],
        "~ posts triggers: +before_create = triggers/posts.rhai#before_create"
    );

    let text = render_plan(&p);
    assert!(text.starts_with("collection posts:\n"), "{text}");
    assert!(text.contains(" ! - posts.body"), "{text}");
    assert!(
        text.contains("Plan: 2 to add, 6 to change, 2 to remove; 3 DESTRUCTIVE"),
        "{text}"
    );
}

#[test]
fn same_storage_type_change_is_not_destructive_and_has_no_ddl() {
    let cur = coll("name = \"p\"\n[fields]\nk = { type = \"text\" }\n");
    let des = coll("name = \"p\"\n[fields]\nk = { type = \"select\", values = [\"x\"] }\n");
    let p = plan(std::slice::from_ref(&cur), std::slice::from_ref(&des));
    assert_eq!(kinds(&p), [(ChangeKind::ChangeFieldType, Some("k"), false)]);
    assert!(
        p[0].description.contains("same storage"),
        "{}",
        p[0].description
    );
    assert!(
        ddl(
            Dialect::Postgres,
            std::slice::from_ref(&cur),
            std::slice::from_ref(&des)
        )
        .is_empty()
    );
    let email = coll("name = \"p\"\n[fields]\nk = { type = \"email\" }\n");
    assert!(ddl(Dialect::Sqlite, &[cur], &[email]).is_empty());
}

#[test]
fn multiple_to_single_is_destructive() {
    let cur = coll(
        "name = \"p\"\n[fields]\nr = { type = \"relation\", collection = \"users\", multiple = true }\n",
    );
    let des = coll("name = \"p\"\n[fields]\nr = { type = \"relation\", collection = \"users\" }\n");
    let p = plan(std::slice::from_ref(&cur), std::slice::from_ref(&des));
    assert_eq!(kinds(&p), [(ChangeKind::ChangeFieldType, Some("r"), true)]);
    let p = plan(&[des], &[cur]);
    assert_eq!(kinds(&p), [(ChangeKind::ChangeFieldType, Some("r"), true)]);
}

#[test]
fn renamed_from_renames_once_then_is_inert() {
    let cur = coll(BASE);
    let des = coll(&BASE.replace(
        "body = { type = \"text\" }",
        "content = { type = \"text\", renamed_from = \"body\" }",
    ));
    let p = plan(std::slice::from_ref(&cur), std::slice::from_ref(&des));
    assert_eq!(
        kinds(&p),
        [(ChangeKind::RenameField, Some("content"), false)]
    );
    assert_eq!(
        p[0].description,
        "~ posts.body → posts.content (rename, data kept)"
    );
    let sql = ddl(
        Dialect::Sqlite,
        std::slice::from_ref(&cur),
        std::slice::from_ref(&des),
    );
    assert_eq!(
        sql,
        ["ALTER TABLE \"c_posts\" RENAME COLUMN \"body\" TO \"content\""]
    );
    // Applied: the server now stores `des`; planning it again is a no-op.
    assert!(plan(std::slice::from_ref(&des), std::slice::from_ref(&des)).is_empty());
    // Rename plus a type change: rename, then retype.
    let des2 = coll(&BASE.replace(
        "body = { type = \"text\" }",
        "content = { type = \"json\", renamed_from = \"body\" }",
    ));
    let p = plan(std::slice::from_ref(&cur), std::slice::from_ref(&des2));
    assert_eq!(
        kinds(&p),
        [
            (ChangeKind::RenameField, Some("content"), false),
            (ChangeKind::ChangeFieldType, Some("content"), true)
        ]
    );
    // The old name is unknown to current: just an added field.
    let fresh =
        coll("name = \"posts\"\n[fields]\nx = { type = \"text\", renamed_from = \"never\" }\n");
    let p = plan(&[Collection::new("posts")], &[fresh]);
    assert_eq!(kinds(&p), [(ChangeKind::AddField, Some("x"), false)]);
}

#[test]
fn ddl_text_sqlite_and_postgres() {
    let c = coll(
        r#"name = "posts"
[fields]
title = { type = "text" }
n = { type = "number" }
i = { type = "integer" }
b = { type = "bool" }
d = { type = "date" }
j = { type = "json" }
g = { type = "geo" }
tags = { type = "select", values = ["a"], multiple = true }
[[indexes]]
fields = ["title", "created_at"]
unique = true
"#,
    );
    let s = create_table_ddl(Dialect::Sqlite, &c);
    assert_eq!(
        s[0],
        "CREATE TABLE \"c_posts\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"created_at\" TEXT NOT NULL, \"updated_at\" TEXT NOT NULL, \"version\" INTEGER NOT NULL DEFAULT 1, \"title\" TEXT, \"n\" REAL, \"i\" INTEGER, \"b\" INTEGER, \"d\" TEXT, \"j\" TEXT, \"g\" TEXT, \"tags\" TEXT)"
    );
    assert!(
        s[1].starts_with("CREATE INDEX \"s_posts_")
            && s[1].ends_with("ON \"c_posts\" (\"created_at\", \"id\")"),
        "{}",
        s[1]
    );
    let name = index_name("posts", &c.indexes[0]);
    assert_eq!(
        s[2],
        format!("CREATE UNIQUE INDEX \"{name}\" ON \"c_posts\" (\"title\", \"created_at\")")
    );
    assert_eq!(s.len(), 3);
    let p = create_table_ddl(Dialect::Postgres, &c);
    assert_eq!(
        p[0],
        "CREATE TABLE \"c_posts\" (\"id\" TEXT COLLATE \"C\" PRIMARY KEY, \"created_at\" TIMESTAMPTZ NOT NULL, \"updated_at\" TIMESTAMPTZ NOT NULL, \"version\" BIGINT NOT NULL DEFAULT 1, \"title\" TEXT COLLATE \"C\", \"n\" DOUBLE PRECISION, \"i\" BIGINT, \"b\" BOOLEAN, \"d\" TIMESTAMPTZ, \"j\" JSONB, \"g\" JSONB, \"tags\" JSONB)"
    );
}

#[test]
fn index_names_are_stable_distinct_and_short() {
    let a = Index {
        fields: vec!["x".into()],
        unique: false,
    };
    let b = Index {
        fields: vec!["x".into()],
        unique: true,
    };
    assert_eq!(index_name("posts", &a), index_name("posts", &a.clone()));
    assert_ne!(index_name("posts", &a), index_name("posts", &b));
    assert_ne!(index_name("posts", &a), index_name("notes", &a));
    let long = "a".repeat(61);
    assert!(index_name(&long, &a).len() <= 63);
    // Pinned: renaming an index silently would orphan it on existing servers.
    assert_eq!(
        index_name("posts", &a),
        index_name(
            "posts",
            &Index {
                fields: vec!["x".into()],
                unique: false
            }
        )
    );
    assert!(index_name("posts", &a).starts_with("i_posts_"));
}

#[test]
fn ddl_orders_index_drops_before_column_drops() {
    let cur = coll(
        "name = \"p\"\n[fields]\na = { type = \"text\" }\nb = { type = \"number\" }\n[[indexes]]\nfields = [\"a\"]\n[[indexes]]\nfields = [\"b\"]\n",
    );
    let des =
        coll("name = \"p\"\n[fields]\nb = { type = \"integer\" }\n[[indexes]]\nfields = [\"b\"]\n");
    let sql = ddl(Dialect::Sqlite, std::slice::from_ref(&cur), &[des]);
    let ia = index_name("p", &cur.indexes[0]);
    let ib = index_name("p", &cur.indexes[1]);
    assert_eq!(
        sql,
        [
            format!("DROP INDEX \"{ia}\""),
            format!("DROP INDEX \"{ib}\""),
            "ALTER TABLE \"c_p\" DROP COLUMN \"a\"".to_owned(),
            "ALTER TABLE \"c_p\" DROP COLUMN \"b\"".to_owned(),
            "ALTER TABLE \"c_p\" ADD COLUMN \"b\" INTEGER".to_owned(),
            format!("CREATE INDEX \"{ib}\" ON \"c_p\" (\"b\", \"id\")"),
        ]
    );
}
