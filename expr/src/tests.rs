#![allow(clippy::unwrap_used)]

use super::*;
use crate::ast::{CmpOp, Literal, Node, Operand, OperandKind};
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;

struct TestScope(HashMap<&'static str, ValueType>);

impl Scope for TestScope {
    fn field(&self, name: &str) -> Option<FieldRef> {
        self.0.get(name).map(|ty| FieldRef {
            ty: *ty,
            column: format!("\"{name}\""),
        })
    }
}

fn scope() -> TestScope {
    TestScope(HashMap::from([
        ("id", ValueType::Text),
        ("title", ValueType::Text),
        ("views", ValueType::Integer),
        ("score", ValueType::Number),
        ("published", ValueType::Bool),
        ("created_at", ValueType::Date),
        ("tags", ValueType::TextList),
        ("meta", ValueType::Json),
        ("author", ValueType::Text),
    ]))
}

fn err_at(src: &str) -> usize {
    match parse(src) {
        Ok(e) => match check(&e, &scope()) {
            Ok(()) => panic!("expected an error for {src:?}"),
            Err(e) => e.position,
        },
        Err(e) => e.position,
    }
}

fn p(src: &str) -> Expr {
    parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
}

fn shape(src: &str) -> String {
    p(src).to_string()
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    let e = p("a = 1 || b = 2 && c = 3");
    match &e.root {
        Node::Or(v) => {
            assert_eq!(v.len(), 2);
            assert!(matches!(&v[1], Node::And(x) if x.len() == 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shape("(a = 1 || b = 2) && c = 3"),
        "(a = 1.0 || b = 2.0) && c = 3.0"
    );
}

#[test]
fn not_binds_to_a_single_operand() {
    let e = p("!published && x");
    match &e.root {
        Node::And(v) => assert!(matches!(&v[0], Node::Not(b) if matches!(**b, Node::Bare(_)))),
        other => panic!("{other:?}"),
    }
    // `!a = b` would mean `(!a) = b`; we reject it rather than guess.
    assert_eq!(err_at("!published = true"), 11);
    assert!(matches!(p("!(a = 1)").root, Node::Not(_)));
    assert!(matches!(p("!!a").root, Node::Not(ref b) if matches!(**b, Node::Not(_))));
}

#[test]
fn comparison_operators_lex() {
    for (src, op) in [
        ("a = 1", CmpOp::Eq),
        ("a != 1", CmpOp::Ne),
        ("a > 1", CmpOp::Gt),
        ("a >= 1", CmpOp::Ge),
        ("a < 1", CmpOp::Lt),
        ("a <= 1", CmpOp::Le),
        ("a ~ 1", CmpOp::Like),
        ("a !~ 1", CmpOp::NotLike),
        ("a!~1", CmpOp::NotLike),
    ] {
        match p(src).root {
            Node::Cmp { op: o, .. } => assert_eq!(o, op, "{src}"),
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn string_escapes() {
    let e = p(r#"a = 'it\'s \"q\" \\ x' && b = "d\"q""#);
    let Node::And(v) = &e.root else { panic!() };
    let lit = |n: &Node| match n {
        Node::Cmp { rhs, .. } => rhs.kind.clone(),
        _ => panic!(),
    };
    assert_eq!(
        lit(&v[0]),
        OperandKind::Lit(Literal::Text("it's \"q\" \\ x".into()))
    );
    assert_eq!(lit(&v[1]), OperandKind::Lit(Literal::Text("d\"q".into())));
    assert_eq!(parse(r"a = 'x\n'").unwrap_err().position, 6);
}

#[test]
fn numbers() {
    let num = |s: &str| match p(&format!("a = {s}")).root {
        Node::Cmp { rhs, .. } => rhs.kind,
        _ => panic!(),
    };
    assert_eq!(num("-1.5e2"), OperandKind::Lit(Literal::Number(-150.0)));
    assert_eq!(num("42"), OperandKind::Lit(Literal::Number(42.0)));
    assert_eq!(num("1E-2"), OperandKind::Lit(Literal::Number(0.01)));
    assert_eq!(parse("a = 1e999").unwrap_err().position, 4);
    assert_eq!(parse("a = 1.").unwrap_err().position, 4);
    assert_eq!(parse("a = -").unwrap_err().position, 4);
    assert_eq!(parse("a = 12abc").unwrap_err().position, 4);
}

#[test]
fn error_positions_are_characters() {
    // 'é' is two bytes but one character.
    assert_eq!(parse("title = 'é' &&& x").unwrap_err().position, 14);
    assert_eq!(parse("title = 'ééé").unwrap_err().position, 8); // unterminated
    assert_eq!(parse("").unwrap_err().position, 0);
    assert_eq!(parse("   ").unwrap_err().position, 0);
    assert_eq!(parse("a = 1 b").unwrap_err().position, 6); // trailing input
    assert_eq!(parse("a = ").unwrap_err().position, 4);
    assert_eq!(parse("(a = 1").unwrap_err().position, 6);
    assert_eq!(parse("a = 1)").unwrap_err().position, 5);
    assert_eq!(parse("@foo = 1").unwrap_err().position, 0);
    assert_eq!(parse("a = @auth.nope").unwrap_err().position, 4);
    assert_eq!(parse("a in 'x'").unwrap_err().position, 5);
    assert_eq!(parse("['a'] = a").unwrap_err().position, 0);
    assert_eq!(parse("a = 1 = 2").unwrap_err().position, 6);
    assert_eq!(parse("Title = 1").unwrap_err().position, 0);
    assert_eq!(parse("a = 1 & b").unwrap_err().position, 6);
}

#[test]
fn check_errors_have_positions() {
    assert_eq!(err_at("nope = 1"), 0);
    assert_eq!(err_at("title = 'a' && nope = 1"), 15);
    assert_eq!(err_at("views > 'abc'"), 8);
    assert_eq!(err_at("title > 3"), 8);
    assert_eq!(err_at("created_at > 'yesterday'"), 13);
    assert_eq!(err_at("created_at in ['2024-01-01', 'bad']"), 29);
    assert_eq!(err_at("meta = 'x'"), 7);
    assert_eq!(err_at("views > null"), 6);
    assert_eq!(err_at("published > true"), 10);
    assert_eq!(err_at("tags = 'x'"), 5);
    assert_eq!(err_at("views ~ 1"), 6);
    assert_eq!(err_at("title ~ 1"), 8);
    assert_eq!(err_at("title"), 0); // not a condition
    assert_eq!(err_at("@data.nope = 1"), 0);
    assert_eq!(err_at("title in ['a', 1]"), 15);
    assert_eq!(err_at("tags in ['a']"), 5);
}

#[test]
fn valid_checks() {
    for src in [
        "true",
        "published",
        "!published",
        "published && views > 3",
        "title ~ 'x' || tags ~ 'a' || tags !~ 'b'",
        "created_at > '2024-01-01' && created_at < @now",
        "created_at >= '2024-01-01 10:00:00.5Z'",
        "author = @auth.id && @auth.verified",
        "meta = null || meta != null",
        "views = score && 1 < views",
        "views in [1, 2.5, null] && title in [] && created_at in ['2020-01-01']",
        "@data.title = title && @data.views > 2",
        "null = null",
        "'a' < 'b'",
    ] {
        check(&p(src), &scope()).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
}

#[test]
fn limits() {
    assert!(parse(&"(".repeat(64).to_string().add_close(64, "a = 1")).is_ok());
    let deep = "(".repeat(65) + "a = 1" + &")".repeat(65);
    assert!(parse(&deep).unwrap_err().message.contains("nested"));
    let nots = "!".repeat(65) + "a";
    assert!(parse(&nots).unwrap_err().message.contains("nested"));
    assert!(parse(&("!".repeat(64) + "a")).is_ok());
    // A huge input is rejected before lexing, at the limit.
    let long = "a = 1 && ".repeat(1000) + "a = 1";
    assert_eq!(parse(&long).unwrap_err().position, 4096);
    // Deep nesting cannot overflow the stack even within the length limit.
    let parens = "(".repeat(4000);
    assert!(parse(&parens).is_err());
    let list = format!("a in [{}]", vec!["1"; 501].join(","));
    assert!(parse(&list).unwrap_err().message.contains("list"));
    let list = format!("a in [{}]", vec!["1"; 500].join(","));
    assert!(parse(&list).is_ok());
    let terms = vec!["a"; 201].join(" && ");
    assert!(parse(&terms).unwrap_err().message.contains("too many"));
    let terms = vec!["a"; 200].join(" && ");
    assert!(parse(&terms).is_ok());
}

trait AddClose {
    fn add_close(self, n: usize, inner: &str) -> String;
}
impl AddClose for String {
    fn add_close(self, n: usize, inner: &str) -> String {
        self + inner + &")".repeat(n)
    }
}

#[test]
fn fields_and_literal_true() {
    let e = p("title = 'a' && (views > 1 || title ~ @data.author) && @auth.id = author");
    assert_eq!(e.fields(), vec!["title", "views", "author"]);
    assert!(p("true").is_literal_true());
    assert!(p(" (true) ").is_literal_true());
    assert!(!p("false").is_literal_true());
    assert!(!p("true && true").is_literal_true());
}

fn ctx_with<'a>(
    auth: &'a AuthContext,
    data: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> Context<'a> {
    Context {
        auth,
        data,
        now: parse_date("2025-06-01T12:00:00.123456789Z").unwrap(),
    }
}

#[test]
fn sql_is_parameterized() {
    let auth = AuthContext {
        id: "u1".into(),
        verified: true,
        ..Default::default()
    };
    let ctx = ctx_with(&auth, None);
    let e = p(
        "title = 'x\\'; DROP TABLE t; --' && author = @auth.id && views > 2 && score > 2 && created_at < '2024-01-01' && @auth.verified",
    );
    let mut params = vec![SqlParam::Text("caller's own".into())];
    let sql = to_sql(&e, &scope(), &ctx, Dialect::Sqlite, &mut params).unwrap();
    assert!(!sql.contains("DROP"), "{sql}");
    assert!(sql.contains("\"title\" = $2"), "{sql}");
    assert_eq!(params[1], SqlParam::Text("x'; DROP TABLE t; --".into()));
    assert_eq!(params[2], SqlParam::Text("u1".into()));
    assert_eq!(params[3], SqlParam::Int(2)); // integral literal vs integer column
    assert_eq!(params[4], SqlParam::Float(2.0));
    assert_eq!(
        params[5],
        SqlParam::Time(parse_date("2024-01-01T00:00:00Z").unwrap())
    );
    assert_eq!(params[6], SqlParam::Bool(true));
    assert_eq!(params.len(), 7);
    let mut pg = Vec::new();
    let sql = to_sql(&e, &scope(), &ctx, Dialect::Postgres, &mut pg).unwrap();
    assert!(sql.contains("CAST($1 AS text)"), "{sql}");
    assert_eq!(pg.len(), 6);
    // On error the caller's params are untouched.
    let mut params = vec![SqlParam::Null];
    assert!(
        to_sql(
            &p("title = 'a' && nope = 1"),
            &scope(),
            &ctx,
            Dialect::Sqlite,
            &mut params
        )
        .is_err()
    );
    assert_eq!(params, vec![SqlParam::Null]);
}

#[test]
fn eval_semantics() {
    let auth = AuthContext {
        id: "u1".into(),
        ..Default::default()
    };
    let data = json!({"title": "Hello", "views": 5})
        .as_object()
        .unwrap()
        .clone();
    let ctx = ctx_with(&auth, Some(&data));
    let rec = json!({
        "id": "r1", "title": "Straße 100% _x_", "views": 7, "score": 1.5, "published": null,
        "created_at": "2024-05-01T10:00:00Z", "tags": ["a", "B"], "meta": {"k": 1}, "author": "u1"
    });
    let rec = rec.as_object().unwrap();
    let ev = |src: &str, d: Dialect| eval(&p(src), rec, &scope(), &ctx, d).unwrap();
    let both = |src: &str| {
        let a = ev(src, Dialect::Sqlite);
        assert_eq!(a, ev(src, Dialect::Postgres), "{src}");
        a
    };
    assert!(both("title ~ '100%'"));
    assert!(both("title ~ '_X_'"));
    assert!(!both("title ~ 'x%'"));
    assert!(both("title !~ 'STRASSE'")); // ß does not fold to ss
    assert!(both("title ~ 'STRAß'"));
    assert!(!ev("title ~ 'STRAßE'", Dialect::Sqlite) || ev("title ~ 'STRAßE'", Dialect::Sqlite));
    assert!(ev("title ~ 'straße'", Dialect::Sqlite));
    assert!(!ev("'ÄB' ~ 'äb'", Dialect::Sqlite)); // SQLite lower() is ASCII-only
    assert!(ev("'ÄB' ~ 'äb'", Dialect::Postgres));
    assert!(both("published = null"));
    assert!(!both("published = false"));
    assert!(both("published != false")); // null is distinct from false
    assert!(!both("published"));
    assert!(both("!published"));
    assert!(both(
        "views > 6.5 && views >= 7 && views < 7.5 && score = 1.5"
    ));
    assert!(both("views in [1, 7]"));
    assert!(!both("views in []"));
    assert!(!both("published in [true, false, null]"));
    assert!(both("created_at > '2024-05-01' && created_at < @now"));
    assert!(both("created_at = '2024-05-01 10:00:00'"));
    assert!(both("tags ~ 'B' && tags !~ 'b'"));
    assert!(both("meta != null"));
    assert!(both("author = @auth.id && @auth.email = ''"));
    assert!(!both("@auth.verified"));
    assert!(both(
        "@data.title = 'Hello' && @data.views < views && @data.score = null"
    ));
    assert!(both("null = null && !(null != null)"));
    assert!(both("'a' < 'b' && 'B' < 'a'"));
}

#[test]
fn data_is_null_outside_writes() {
    let auth = AuthContext::default();
    let ctx = ctx_with(&auth, None);
    let rec = serde_json::Map::new();
    assert!(
        eval(
            &p("@data.title = null"),
            &rec,
            &scope(),
            &ctx,
            Dialect::Sqlite
        )
        .unwrap()
    );
}

#[test]
fn dates() {
    let t = parse_date("2026-11-27T14:40:12.123456789+02:00").unwrap();
    assert_eq!(sqlite_time(&t), "2026-11-27T12:40:12.123456Z");
    assert_eq!(
        sqlite_time(&parse_date("2026-01-02").unwrap()),
        "2026-01-02T00:00:00.000000Z"
    );
    assert_eq!(
        sqlite_time(&parse_date("2026-01-02 03:04:05").unwrap()),
        "2026-01-02T03:04:05.000000Z"
    );
    assert_eq!(
        sqlite_time(&parse_date("2026-01-02 03:04:05.5Z").unwrap()),
        "2026-01-02T03:04:05.500000Z"
    );
    for bad in [
        "",
        "2026",
        "2026-13-01",
        "yesterday",
        "2026-01-02 25:00:00",
        "12026-01-01",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------- property tests

fn arb_field() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("keyword", |s| {
        !matches!(s.as_str(), "true" | "false" | "null" | "in")
    })
}

fn arb_operand() -> impl Strategy<Value = Operand> {
    let lit = prop_oneof![
        any::<String>().prop_map(Literal::Text),
        (-1e12f64..1e12).prop_map(Literal::Number),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Number),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
    ];
    prop_oneof![
        arb_field().prop_map(OperandKind::Field),
        arb_field().prop_map(OperandKind::Data),
        prop_oneof![
            Just(ast::AuthVar::Id),
            Just(ast::AuthVar::Email),
            Just(ast::AuthVar::Role),
            Just(ast::AuthVar::Verified),
            Just(ast::AuthVar::Tenant)
        ]
        .prop_map(OperandKind::Auth),
        Just(OperandKind::Now),
        lit.prop_map(OperandKind::Lit),
    ]
    .prop_map(|kind| Operand { kind, pos: 0 })
}

fn arb_node() -> impl Strategy<Value = Node> {
    let ops = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Like),
        Just(CmpOp::NotLike)
    ];
    let lit_operand =
        arb_operand().prop_filter("literal", |o| matches!(o.kind, OperandKind::Lit(_)));
    let leaf = prop_oneof![
        (ops, arb_operand(), arb_operand()).prop_map(|(op, lhs, rhs)| Node::Cmp {
            op,
            op_pos: 0,
            lhs,
            rhs
        }),
        (arb_operand(), prop::collection::vec(lit_operand, 0..4)).prop_map(|(lhs, items)| {
            Node::In {
                lhs,
                op_pos: 0,
                items,
            }
        }),
        arb_operand().prop_map(Node::Bare),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Node::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Node::Or),
            inner.prop_map(|n| Node::Not(Box::new(n))),
        ]
    })
}

fn token_soup() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just(","),
        Just("="),
        Just("!="),
        Just(">"),
        Just(">="),
        Just("<"),
        Just("<="),
        Just("~"),
        Just("!~"),
        Just("!"),
        Just("&&"),
        Just("||"),
        Just("in"),
        Just("true"),
        Just("null"),
        Just("a"),
        Just("'x'"),
        Just("\"y\\\"\""),
        Just("-1.5e3"),
        Just("@auth.id"),
        Just("@data.a"),
        Just("@now"),
        Just("@x"),
        Just("'"),
        Just("&"),
        Just("é"),
        Just(" ")
    ];
    prop::collection::vec(tok, 0..40).prop_map(|v| v.join(" "))
}

#[test]
fn sqlite_time_prints_a_leap_second_as_chrono_does() {
    let t = chrono::DateTime::from_timestamp(59, 1_500_000_000).unwrap();
    assert_eq!(
        crate::sqlite_time(&t),
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    );
}

proptest! {
    #[test]
    fn sqlite_time_matches_chrono_format(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..2_000_000_000) {
        // Nanoseconds past 1e9 are a leap second, valid only at :59.
        let Some(t) = chrono::DateTime::from_timestamp(secs, nanos) else { return Ok(()) };
        prop_assert_eq!(crate::sqlite_time(&t), t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn token_soup_never_panics(s in token_soup()) {
        if let Ok(e) = parse(&s) {
            // Whatever parses also prints and re-parses identically.
            let again = parse(&e.to_string()).unwrap();
            prop_assert_eq!(again.without_positions(), e.without_positions());
            let _ = check(&e, &scope());
        }
    }

    #[test]
    fn error_positions_are_within_the_source(s in token_soup()) {
        if let Err(e) = parse(&s) {
            prop_assert!(e.position <= s.chars().count());
        }
    }

    #[test]
    fn printed_ast_reparses(n in arb_node()) {
        let e = Expr { root: n };
        let text = e.to_string();
        let back = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(back.without_positions(), e.without_positions(), "{}", text);
    }

    #[test]
    fn checked_expressions_compile_and_eval(n in arb_node()) {
        let e = Expr { root: n };
        let auth = AuthContext::default();
        let ctx = ctx_with(&auth, None);
        if check(&e, &scope()).is_ok() {
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                let mut params = Vec::new();
                prop_assert!(to_sql(&e, &scope(), &ctx, d, &mut params).is_ok());
                prop_assert!(eval(&e, &serde_json::Map::new(), &scope(), &ctx, d).is_ok());
            }
        }
    }
}
