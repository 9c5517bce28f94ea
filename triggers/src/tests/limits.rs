//! The sandbox limits and the wall-time budget.

use super::*;

#[test]
fn infinite_loop_is_stopped_by_the_operations_limit() {
    let start = Instant::now();
    let (out, _) = before("fn before_create(record, ctx) { loop {} }", json!({}));
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Limit);
    assert!(message.contains("too many operations"), "{message}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn wall_time_budget_stops_a_loop() {
    let budget = Duration::from_millis(50);
    let limits = Limits {
        max_operations: 0, // unlimited: only the budget can stop it
        wall_time: budget,
        ..Limits::default()
    };
    let s = compile_with(
        &sandbox(limits),
        "fn before_create(record, ctx) { loop {} }",
    );
    let host = Arc::new(Recorder::default());
    let start = Instant::now();
    let out = s.before(&hook("before_create"), json!({}), call(&host));
    let elapsed = start.elapsed();
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::WallTime, "{message}");
    assert!(elapsed >= budget, "{elapsed:?}");
    assert!(elapsed < budget * 10, "{elapsed:?}");

    // The per-call override, and the deadline does not outlive its call.
    let s = compile("fn before_create(record, ctx) { loop {} }\nfn ok(r, ctx) { r }");
    let start = Instant::now();
    let out = s.before(
        &hook("before_create"),
        json!({}),
        call(&host).with_wall_time(Duration::ZERO),
    );
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(out.unwrap_err().kind(), FailureKind::WallTime);
    assert!(s.before(&hook("ok"), json!({}), call(&host)).is_ok());
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let (out, _) = before(
        "fn down(n) { down(n + 1) }\nfn before_create(record, ctx) { down(0) }",
        json!({}),
    );
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Limit);
    assert!(message.contains("max_call_levels"), "{message}");
}

#[test]
fn growing_strings_arrays_and_maps_hit_the_size_limits() {
    for body in [
        "let s = \"ab\"; loop { s += s; }",
        "let a = []; loop { a.push(1); }",
        // Rhai measures a map when it is assigned or returned, not on each `m[k] = v` (a map
        // grown in an endless loop is stopped by the operations limit instead).
        "let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } m.len()",
    ] {
        let src = format!("fn before_create(record, ctx) {{ {body} }}");
        // Give the debug build all the time and operations it needs, so that the size limit is
        // what stops it.
        let limits = Limits {
            wall_time: Duration::from_secs(60),
            max_operations: 0,
            ..Limits::default()
        };
        let host = Arc::new(Recorder::default());
        let out = compile_with(&sandbox(limits), &src).before(
            &hook("before_create"),
            json!({}),
            call(&host),
        );
        let (kind, _, message) = failure(out);
        assert_eq!(kind, FailureKind::Limit, "{body}: {message}");
        assert!(message.contains("too large"), "{body}: {message}");
    }
}

#[test]
fn a_returned_record_over_the_limits_fails() {
    // Rhai does not measure a map grown by `m[k] = v` when it is returned: the engine checks
    // the record it is handed back.
    let limits = Limits {
        max_map_len: 10,
        max_array_len: 10,
        ..Limits::default()
    };
    for body in [
        "for i in 0..11 { record[`k${i}`] = i; }",
        "record.a = []; for i in 0..11 { record.a.push(i); }",
        "record.m = #{}; for i in 0..11 { record.m[`k${i}`] = i; }",
    ] {
        let src = format!("fn before_create(record, ctx) {{ {body} record }}");
        let host = Arc::new(Recorder::default());
        let out = compile_with(&sandbox(limits.clone()), &src).before(
            &hook("before_create"),
            json!({}),
            call(&host),
        );
        let (kind, _, message) = failure(out);
        assert_eq!(kind, FailureKind::Limit, "{body}: {message}");
    }
}
