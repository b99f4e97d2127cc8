//! The three-layer budget module: the document's numbers on paused time, the ledger of records,
//! TOML policies and their errors, and property tests of the budget invariants.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use timefuse::budget::{BudgetKind, BudgetOutcome, MAX_RECORDS, TimeoutPolicy};
use timefuse::{Cause, Context};
use tokio::time::{Instant, advance};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// The three layers with the document's numbers.

#[timefuse_leak::test(start_paused = true)]
async fn internal_grpc_three_layers() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    assert_eq!(request.remaining(), Some(ms(800)));
    assert_eq!(request.policy(), &TimeoutPolicy::internal_grpc());

    let stage = request.stage("charge").unwrap();
    assert_eq!(stage.granted(), ms(800), "min(5 s cap, 800 ms left)");
    assert_eq!(stage.deadline(), request.deadline());

    let call = stage.downstream("ledger").unwrap();
    assert_eq!(
        call.granted(),
        ms(650),
        "min(2 s cap, 800 ms − 150 ms reserve)"
    );
    assert_eq!(call.remaining(), Some(ms(650)));
    assert!(call.deadline() < stage.deadline());
}

#[timefuse_leak::test(start_paused = true)]
async fn http_edge_caps_bind() {
    let policy = TimeoutPolicy::http_edge()
        .with_stage_cap("risk", Duration::from_secs(3))
        .with_downstream_cap("ledger", Duration::from_secs(1));
    let (request, _guard) = Context::request(policy);
    assert_eq!(request.remaining(), Some(Duration::from_secs(30)));

    let validate = request.stage("validate").unwrap();
    assert_eq!(
        validate.granted(),
        Duration::from_secs(5),
        "the default stage cap"
    );
    let risk = request.stage("risk").unwrap();
    assert_eq!(risk.granted(), Duration::from_secs(3));
    let engine = risk.downstream("risk-engine").unwrap();
    assert_eq!(
        engine.granted(),
        Duration::from_secs(2),
        "the default call cap"
    );
    let ledger = risk.downstream("ledger").unwrap();
    assert_eq!(ledger.granted(), Duration::from_secs(1));

    // Late in the stage the reserve binds: 1.1 s left in `risk` → 950 ms for the ledger call.
    advance(ms(1900)).await;
    let late = risk.downstream("ledger").unwrap();
    assert_eq!(late.granted(), ms(950));
}

#[timefuse_leak::test(start_paused = true)]
async fn downstream_refused_below_the_floor() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(600)).await; // 200 ms left: 50 ms budget == floor, still worth starting
    let call = request.downstream("ledger").unwrap();
    assert_eq!(call.granted(), ms(50));
    drop(call);

    advance(ms(1)).await; // 199 ms left: 49 ms < floor
    let err = request.downstream("ledger").unwrap_err();
    assert_eq!(err.kind(), BudgetKind::Downstream);
    assert_eq!(err.name(), "ledger");
    assert_eq!(err.remaining(), Some(ms(199)));
    assert_eq!(err.offered(), ms(49));
    assert_eq!(err.needed(), ms(200));
    assert_eq!(err.cause(), None);

    advance(ms(19)).await; // 180 ms left, the document's example
    let err = request.downstream("ledger").unwrap_err();
    assert_eq!(err.remaining(), Some(ms(180)));
    assert_eq!(
        err.to_string(),
        "downstream call `ledger` not started: 180ms left, its budget of 30ms is under the 50ms floor \
         (it needs 200ms left)"
    );
    // A stage is still allowed: it is refused only once the context has ended.
    assert_eq!(request.stage("fallback").unwrap().granted(), ms(180));
}

#[timefuse_leak::test(start_paused = true)]
async fn stage_leaving_keeps_time_for_what_follows() {
    let policy = TimeoutPolicy::internal_grpc().with_stage_cap("risk", ms(400));
    let (request, _guard) = Context::request(policy);
    let keep = ms(365);

    // 800 − 365 = 435 ms, but the stage cap (400 ms) binds.
    let risk = request.stage_leaving("risk", keep).unwrap();
    assert_eq!(risk.granted(), ms(400));
    drop(risk);
    // Another name takes the default cap (5 s), so `keep` binds.
    let scoring = request.stage_leaving("scoring", keep).unwrap();
    assert_eq!(scoring.granted(), ms(435));
    // A call inside it gets the stage's time less the reserve: the answer is due 150 ms before
    // the stage ends, so the steps after it keep their 365 ms.
    let call = scoring.downstream("risk").unwrap();
    assert_eq!(call.granted(), ms(285));
    drop(call);
    drop(scoring);

    advance(ms(434)).await; // 366 ms left: 1 ms for the stage
    assert_eq!(
        request.stage_leaving("scoring", keep).unwrap().granted(),
        ms(1)
    );
    advance(ms(1)).await; // exactly `keep` left: nothing for the stage
    let err = request.stage_leaving("scoring", keep).unwrap_err();
    assert_eq!(err.kind(), BudgetKind::Stage);
    assert_eq!(err.remaining(), Some(ms(365)));
    assert_eq!(err.offered(), Duration::ZERO);
    assert_eq!(err.needed(), keep);
    assert_eq!(err.cause(), None);
    assert_eq!(
        err.to_string(),
        "stage `scoring` not started: 365ms left, no more than the 365ms kept for what follows"
    );
    let refused = request.budget_records().pop().unwrap();
    assert_eq!(refused.outcome, BudgetOutcome::Refused);
    assert_eq!(&*refused.name, "scoring");
    // The plain stage is still allowed: what is kept is the caller's choice.
    assert_eq!(request.stage("payment").unwrap().granted(), ms(365));

    // Without a deadline the cap applies and `keep` plays no part.
    let open = Context::background()
        .stage_leaving("scoring", ms(10_000))
        .unwrap();
    assert_eq!(
        open.granted(),
        TimeoutPolicy::internal_grpc().default_stage_cap()
    );
    assert_eq!(open.remaining(), Some(open.granted()));

    // An ended context refuses whatever is kept.
    let (ended, guard) = Context::background().with_cancel();
    drop(guard);
    let err = ended.stage_leaving("scoring", Duration::ZERO).unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::Canceled));
}

#[timefuse_leak::test(start_paused = true)]
async fn should_degrade_below_300ms() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    assert!(!request.should_degrade());
    advance(ms(500)).await; // 300 ms left
    assert!(!request.should_degrade());
    advance(ms(1)).await; // 299 ms left
    assert!(request.should_degrade());
    let stage = request.stage("assemble").unwrap();
    assert!(
        stage.should_degrade(),
        "children see the request's policy and deadline"
    );
    advance(ms(400)).await;
    assert!(request.should_degrade(), "and after the deadline");
    assert!(
        !Context::background().should_degrade(),
        "no deadline, no degrading"
    );
    let (no_deadline, _g) = Context::background()
        .with_policy(TimeoutPolicy::internal_grpc())
        .with_cancel();
    assert!(!no_deadline.should_degrade());
}

#[timefuse_leak::test(start_paused = true)]
async fn nothing_starts_on_an_ended_context() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    advance(ms(800)).await;
    let err = request.stage("late").unwrap_err();
    assert_eq!(err.kind(), BudgetKind::Stage);
    assert_eq!(err.cause(), Some(&Cause::DeadlineExceeded));
    assert_eq!(err.remaining(), Some(Duration::ZERO));
    assert_eq!(err.needed(), Duration::ZERO);
    assert!(
        err.to_string().contains("context deadline exceeded"),
        "{err}"
    );
    assert_eq!(
        request.downstream("late").unwrap_err().cause(),
        Some(&Cause::DeadlineExceeded)
    );

    let (ctx, guard) = Context::background().with_cancel();
    guard.cancel_with(Cause::ClientGone);
    assert_eq!(
        ctx.stage("s").unwrap_err().cause(),
        Some(&Cause::ClientGone)
    );
    let err = ctx.downstream("d").unwrap_err();
    assert_eq!(
        (err.cause(), err.remaining()),
        (Some(&Cause::ClientGone), None)
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn without_a_deadline_the_cap_applies() {
    let ctx = Context::background();
    assert_eq!(
        ctx.policy(),
        &TimeoutPolicy::internal_grpc(),
        "the static default"
    );
    let stage = ctx.stage("s").unwrap();
    assert_eq!(stage.granted(), Duration::from_secs(5));
    assert_eq!(stage.remaining(), Some(Duration::from_secs(5)));
    let call = ctx.downstream("d").unwrap();
    assert_eq!(
        call.granted(),
        Duration::from_secs(2),
        "no reserve without a deadline"
    );

    // A cap under the floor is never worth starting, deadline or not.
    let ctx = ctx.with_policy(TimeoutPolicy::internal_grpc().with_downstream_cap("cache", ms(10)));
    let err = ctx.downstream("cache").unwrap_err();
    assert_eq!((err.remaining(), err.offered()), (None, ms(10)));
    assert!(err.to_string().contains("no deadline"), "{err}");
}

#[timefuse_leak::test(start_paused = true)]
async fn nearest_policy_wins() {
    let (request, _guard) = Context::request(TimeoutPolicy::http_edge());
    let inner =
        request.with_policy(TimeoutPolicy::http_edge().with_default_downstream_cap(ms(100)));
    assert_eq!(inner.downstream("x").unwrap().granted(), ms(100));
    assert_eq!(
        request.downstream("x").unwrap().granted(),
        Duration::from_secs(2)
    );
    assert_eq!(
        inner.deadline(),
        request.deadline(),
        "with_policy keeps the deadline"
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn request_from_an_incoming_budget() {
    let (server, shutdown) = Context::background().with_cancel();
    let policy = Arc::new(TimeoutPolicy::internal_grpc());

    let (short, _g) = server.with_request_budget(Arc::clone(&policy), Some(ms(250)));
    assert_eq!(short.remaining(), Some(ms(250)));
    assert!(short.should_degrade());
    assert_eq!(short.downstream("ledger").unwrap().granted(), ms(100));

    let (long, _g) = server.with_request_budget(Arc::clone(&policy), Some(Duration::from_secs(60)));
    assert_eq!(long.remaining(), Some(ms(800)));
    let (none, _g) = server.with_request_budget(Arc::clone(&policy), None);
    assert_eq!(none.remaining(), Some(ms(800)));
    let (zero, _g) = server.with_request_budget(Arc::clone(&policy), Some(Duration::ZERO));
    assert!(zero.is_done());
    assert!(zero.stage("any").is_err());
    assert_eq!(zero.budget_records()[0].outcome, BudgetOutcome::Refused);

    // A huge global does not overflow: the request then has no deadline of its own.
    let (huge, _g) = Context::request(TimeoutPolicy::internal_grpc().with_global(Duration::MAX));
    assert_eq!(huge.deadline(), None);
    assert_eq!(huge.stage("s").unwrap().granted(), Duration::from_secs(5));

    // The request ends with the server context.
    shutdown.cancel_with(Cause::Shutdown);
    assert_eq!(long.cause(), Some(Cause::Shutdown));
}

#[timefuse_leak::test(start_paused = true)]
async fn nested_requests_keep_their_own_ledgers() {
    let (outer, _g) = Context::request(TimeoutPolicy::internal_grpc());
    let stage = outer.stage("outer-stage").unwrap();
    let (inner, _g2) = stage.with_request_budget(TimeoutPolicy::http_edge(), None);
    assert_eq!(
        inner.remaining(),
        Some(ms(800)),
        "still bounded by the outer request"
    );
    let call = inner.downstream("x").unwrap();
    drop(call);
    let records = inner.budget_records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].parent, None,
        "outside any stage of the new request"
    );
    assert_eq!(outer.budget_records().len(), 1, "only `outer-stage`");
}

#[timefuse_leak::test(start_paused = true)]
async fn dropping_a_scope_cancels_its_context() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    let stage = request.stage("fanout").unwrap();
    let ctx = stage.context().clone();
    let waiter = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.done().await }
    });
    tokio::task::yield_now().await;
    drop(stage);
    assert_eq!(ctx.cause(), Some(Cause::Canceled));
    assert_eq!(waiter.await.unwrap(), Cause::Canceled);
    assert!(!request.is_done());
    assert_eq!(
        request.live_children(),
        0,
        "the ended stage unlinked itself"
    );
}

// ---------------------------------------------------------------------------------------------
// Records.

#[timefuse_leak::test(start_paused = true)]
async fn records_of_a_payment_chain() {
    let policy = TimeoutPolicy::internal_grpc().with_stage_cap("risk", ms(300));
    let (request, _guard) = Context::request(policy);
    advance(ms(10)).await;

    let order = request.stage("order").unwrap();
    advance(ms(20)).await;
    drop(order);

    let risk = request.stage("risk").unwrap(); // at 30 ms: min(300, 770) = 300
    let engine = risk.downstream("risk-engine").unwrap(); // min(2 s, 300 − 150) = 150
    let slow = tokio::time::sleep(Duration::from_secs(1));
    assert_eq!(engine.run(slow).await, Err(Cause::DeadlineExceeded));
    let engine_record = engine.finish();
    assert!(engine_record.timed_out());
    drop(risk); // at 180 ms, 120 ms before its deadline

    let charge = request.stage("charge").unwrap(); // at 180 ms: 620 left
    let ledger = charge.downstream("ledger").unwrap(); // 470
    advance(ms(400)).await;
    drop(ledger);
    advance(ms(40)).await; // 180 left → 30 ms < floor
    assert!(charge.downstream("notify").is_err());
    let open = request.stage("respond").unwrap();

    let r = request.budget_records();
    let summary: Vec<_> = r
        .iter()
        .map(|r| (r.kind, &*r.name, r.parent.as_deref(), r.outcome))
        .collect();
    use BudgetKind::{Downstream, Stage};
    use BudgetOutcome::*;
    assert_eq!(
        summary,
        [
            (Stage, "order", None, Finished),
            (Stage, "risk", None, Finished),
            (Downstream, "risk-engine", Some("risk"), TimedOut),
            (Stage, "charge", None, Running),
            (Downstream, "ledger", Some("charge"), Finished),
            (Downstream, "notify", Some("charge"), Refused),
            (Stage, "respond", None, Running),
        ]
    );
    let granted: Vec<_> = r.iter().map(|r| r.granted).collect();
    assert_eq!(
        granted,
        [
            ms(790),
            ms(300),
            ms(150),
            ms(620),
            ms(470),
            Duration::ZERO,
            ms(180)
        ]
    );
    let started: Vec<_> = r.iter().map(|r| r.started_at).collect();
    assert_eq!(
        started,
        [ms(10), ms(30), ms(30), ms(180), ms(180), ms(620), ms(620)]
    );
    let used: Vec<_> = r.iter().map(|r| r.used).collect();
    assert_eq!(
        used,
        [
            Some(ms(20)),
            Some(ms(150)),
            Some(ms(150)),
            None,
            Some(ms(400)),
            Some(Duration::ZERO),
            None
        ]
    );
    let remaining: Vec<_> = r.iter().map(|r| r.remaining).collect();
    assert_eq!(
        remaining,
        [
            Some(ms(790)),
            Some(ms(770)),
            Some(ms(300)),
            Some(ms(620)),
            Some(ms(620)),
            Some(ms(180)),
            Some(ms(180))
        ]
    );
    assert_eq!(engine_record, r[2]);

    drop(open);
    drop(charge);
    assert!(
        request
            .budget_records()
            .iter()
            .all(|r| r.outcome != Running)
    );
}

#[timefuse_leak::test(start_paused = true)]
async fn stage_cancelled_by_its_request_is_recorded_as_canceled() {
    let (request, guard) = Context::request(TimeoutPolicy::internal_grpc());
    let stage = request.stage("s").unwrap();
    let nested = stage.stage("inner").unwrap();
    guard.cancel_with(Cause::ClientGone);
    assert_eq!(nested.finish().outcome, BudgetOutcome::Canceled);
    assert_eq!(nested_parent(&request, 1), Some("s".into()));
    drop(stage);
    assert_eq!(request.budget_records()[0].outcome, BudgetOutcome::Canceled);
}

fn nested_parent(ctx: &Context, index: usize) -> Option<String> {
    ctx.budget_records()[index]
        .parent
        .as_deref()
        .map(str::to_owned)
}

#[timefuse_leak::test(start_paused = true)]
async fn into_parts_detaches_the_record() {
    let (request, _guard) = Context::request(TimeoutPolicy::internal_grpc());
    let (ctx, guard) = request.downstream("x").unwrap().into_parts();
    assert!(!ctx.is_done());
    let records = request.budget_records();
    assert_eq!(
        (records[0].outcome, records[0].used),
        (BudgetOutcome::Detached, None)
    );
    drop(guard);
    assert!(ctx.is_done());
    assert_eq!(request.budget_records()[0].outcome, BudgetOutcome::Detached);
}

#[timefuse_leak::test(start_paused = true)]
async fn no_ledger_records_nothing_but_finish_still_reports() {
    let (ctx, _guard) = Context::background().with_timeout(ms(800));
    let call = ctx.downstream("x").unwrap();
    advance(ms(5)).await;
    let record = call.finish();
    assert_eq!(
        (record.granted, record.used, record.started_at),
        (ms(650), Some(ms(5)), Duration::ZERO)
    );
    assert!(ctx.budget_records().is_empty());
}

#[timefuse_leak::test(start_paused = true)]
async fn ledger_is_bounded() {
    let (request, _guard) = Context::request(TimeoutPolicy::http_edge());
    for _ in 0..MAX_RECORDS + 10 {
        drop(request.downstream("x").unwrap());
    }
    assert_eq!(request.budget_records().len(), MAX_RECORDS);
    let scope = request.stage("still works").unwrap();
    assert_eq!(scope.finish().outcome, BudgetOutcome::Finished);
}

#[test]
fn scopes_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<timefuse::budget::BudgetScope>();
    check::<timefuse::budget::BudgetExhausted>();
    check::<timefuse::budget::BudgetRecord>();
    check::<timefuse::budget::PolicyError>();
}

// ---------------------------------------------------------------------------------------------
// Policies: validation and TOML.

#[test]
fn validate_names_the_key() {
    let base = TimeoutPolicy::internal_grpc;
    let cases: [(TimeoutPolicy, &str); 11] = [
        (base().with_global(Duration::ZERO), "global"),
        (base().with_floor(Duration::ZERO), "floor"),
        (base().with_degrade_below(Duration::ZERO), "degrade_below"),
        (
            base().with_default_stage_cap(Duration::ZERO),
            "stage.default",
        ),
        (
            base().with_default_downstream_cap(Duration::from_secs(86_401)),
            "downstream.default",
        ),
        (
            base().with_downstream_cap("ledger", Duration::ZERO),
            "downstream.ledger",
        ),
        (
            base().with_stage_cap("a b", Duration::ZERO),
            "stage.\"a b\"",
        ),
        (base().with_stage_cap("default", ms(1)), "stage.default"),
        (base().with_reserve(Duration::from_secs(100_000)), "reserve"),
        (base().with_floor(ms(301)), "floor"),
        (base().with_reserve(ms(750)), "reserve"),
    ];
    for (policy, key) in cases {
        let err = policy.validate().unwrap_err();
        assert_eq!(err.key(), Some(key), "{err}");
        assert_eq!(err.kind(), timefuse::budget::PolicyErrorKind::Invalid);
        assert!(err.to_string().contains(key), "{err}");
    }
    base().with_reserve(Duration::ZERO).validate().unwrap();
    base().with_floor(ms(300)).validate().unwrap();
    base().with_reserve(ms(749)).validate().unwrap();
    base()
        .with_stage_cap("risk", Duration::from_secs(86_400))
        .validate()
        .unwrap();
}

#[cfg(feature = "config")]
mod toml_policies {
    use super::*;
    use timefuse::budget::{PolicyError, PolicyErrorKind};

    const DOC: &str = r#"
        global = "800ms"
        reserve = "150ms"
        floor = "50ms"
        degrade_below = "300ms"
        [stage]
        default = "5s"
        risk = "3s"
        [downstream]
        default = "2s"
        ledger = "1s"
    "#;

    fn err(text: &str) -> PolicyError {
        TimeoutPolicy::from_toml_str(text).expect_err(text)
    }

    #[test]
    fn the_documents_policy() {
        let policy = TimeoutPolicy::from_toml_str(DOC).unwrap();
        let expected = TimeoutPolicy::internal_grpc()
            .with_stage_cap("risk", Duration::from_secs(3))
            .with_downstream_cap("ledger", Duration::from_secs(1));
        assert_eq!(policy, expected);
        assert_eq!(
            TimeoutPolicy::from_toml_str(&policy.to_toml_string()).unwrap(),
            policy
        );
    }

    #[test]
    fn missing_keys_take_the_defaults() {
        assert_eq!(
            TimeoutPolicy::from_toml_str("").unwrap(),
            TimeoutPolicy::default()
        );
        assert_eq!(
            TimeoutPolicy::from_toml_str("# nothing\n[stage]\n").unwrap(),
            TimeoutPolicy::default()
        );
        let p =
            TimeoutPolicy::from_toml_str("global = 30000\nreserve = 0\n[downstream]\nx = \"1.5s\"")
                .unwrap();
        assert_eq!(p.global(), Duration::from_secs(30));
        assert_eq!(p.reserve(), Duration::ZERO);
        assert_eq!(p.downstream_cap("x"), ms(1500));
        assert_eq!(p.floor(), ms(50));
        let p = TimeoutPolicy::from_toml_str("stage.risk = \"3s\"\ndownstream = { ledger = 1000 }")
            .unwrap();
        assert_eq!(
            (p.stage_cap("risk"), p.downstream_cap("ledger")),
            (Duration::from_secs(3), ms(1000))
        );
        let p = TimeoutPolicy::from_toml_str("[stage]\n\"risk.v2\" = \"250us\"").unwrap();
        assert_eq!(p.stage_cap("risk.v2"), Duration::from_micros(250));
    }

    #[test]
    fn syntax_errors() {
        for text in [
            "global = ",
            "[stage",
            "global = \"1s\"\nglobal = \"2s\"",
            "= 5",
            "global = \"1s",
        ] {
            let e = err(text);
            assert_eq!(e.kind(), PolicyErrorKind::Syntax, "{text}: {e}");
            assert!(
                e.to_string().starts_with("timeout policy: invalid TOML"),
                "{e}"
            );
            assert!(std::error::Error::source(&e).is_some());
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("timeout = \"1s\"", "timeout"),
            ("[retry]\nmax = 3", "retry"),
            ("\"glo bal\" = \"1s\"", "\"glo bal\""),
            ("Global = \"1s\"", "Global"),
        ] {
            let e = err(text);
            assert_eq!(
                (e.kind(), e.key()),
                (PolicyErrorKind::UnknownKey, Some(key)),
                "{e}"
            );
            assert!(e.to_string().contains("unknown key"), "{e}");
        }
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                "global = \"fast\"",
                "global",
                Some("fast"),
                "expected a number",
            ),
            ("reserve = \"150\"", "reserve", Some("150"), "missing unit"),
            ("floor = \"50 ms\"", "floor", Some("50 ms"), "unknown unit"),
            ("floor = \"5sec\"", "floor", Some("5sec"), "unknown unit"),
            (
                "degrade_below = \"-300ms\"",
                "degrade_below",
                Some("-300ms"),
                "negative",
            ),
            ("reserve = -5", "reserve", Some("-5"), "negative"),
            ("floor = 0.05", "floor", Some("0.05"), "found float"),
            ("floor = true", "floor", Some("true"), "found boolean"),
            (
                "floor = 1979-05-27",
                "floor",
                Some("1979-05-27"),
                "found datetime",
            ),
            ("floor = [50]", "floor", None, "found array"),
            ("floor = \"\"", "floor", Some(""), "empty duration"),
            (
                "floor = \"1.2.3s\"",
                "floor",
                Some("1.2.3s"),
                "is not a number",
            ),
            (
                "floor = \"0.1ns\"",
                "floor",
                Some("0.1ns"),
                "finer than one nanosecond",
            ),
            (
                "floor = \"99999999999999999999999h\"",
                "floor",
                Some("99999999999999999999999h"),
                "too large",
            ),
            (
                "[stage]\nrisk = \"3 seconds\"",
                "stage.risk",
                Some("3 seconds"),
                "unknown unit",
            ),
            (
                "[downstream]\nledger = \"1 second\"",
                "downstream.ledger",
                Some("1 second"),
                "unknown unit",
            ),
            (
                "[downstream]\n\"a.b\" = \"x\"",
                "downstream.\"a.b\"",
                Some("x"),
                "expected a number",
            ),
            (
                "[stage]\ndefault = 5.0",
                "stage.default",
                Some("5"),
                "found float",
            ),
            (
                "[stage.risk]\nmax = \"3s\"",
                "stage.risk",
                None,
                "found table",
            ),
            ("stage = \"5s\"", "stage", Some("5s"), "expected a table"),
            (
                "downstream = [1, 2]",
                "downstream",
                None,
                "expected a table",
            ),
        ];
        for &(text, key, value, reason) in cases {
            let e = err(text);
            assert_eq!(e.kind(), PolicyErrorKind::BadValue, "{text}: {e}");
            assert_eq!(e.key(), Some(key), "{text}: {e}");
            assert_eq!(e.value(), value, "{text}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("`{key}`")) && msg.contains(reason),
                "{text}: {msg}"
            );
            if let Some(value) = value {
                assert!(msg.contains(&format!("{value:?}")), "{text}: {msg}");
            }
        }
    }

    #[test]
    fn invalid_policies_name_the_key() {
        for (text, key) in [
            ("global = \"0s\"", "global"),
            ("floor = 0", "floor"),
            ("floor = \"400ms\"", "floor"),
            ("degrade_below = \"0\"", "degrade_below"),
            ("global = \"200ms\"", "reserve"),
            ("reserve = \"25h\"", "reserve"),
            ("[stage]\nrisk = \"25h\"", "stage.risk"),
            ("[stage]\ndefault = \"0ms\"", "stage.default"),
            ("[downstream]\nledger = 0", "downstream.ledger"),
            ("[downstream]\n\"\" = \"1s\"", "downstream.\"\""),
        ] {
            let e = err(text);
            assert_eq!(
                (e.kind(), e.key()),
                (PolicyErrorKind::Invalid, Some(key)),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("timefuse-budget-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, DOC).unwrap();
        let policy = TimeoutPolicy::from_toml_file(&path).unwrap();
        assert_eq!(policy.stage_cap("risk"), Duration::from_secs(3));
        std::fs::write(&path, "global = \"fast\"").unwrap();
        assert_eq!(
            TimeoutPolicy::from_toml_file(&path).unwrap_err().key(),
            Some("global")
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(
            TimeoutPolicy::from_toml_file(&path).unwrap_err().kind(),
            PolicyErrorKind::Io
        );
        let missing = dir.join("missing.toml");
        let e = TimeoutPolicy::from_toml_file(&missing).unwrap_err();
        assert_eq!(e.kind(), PolicyErrorKind::Io);
        assert!(e.to_string().contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn serde_inside_a_larger_config() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct Service {
            name: String,
            timeouts: TimeoutPolicy,
        }
        let s: Service = toml::from_str("name = \"pay\"\n[timeouts]\nglobal = \"30s\"").unwrap();
        assert_eq!(s.timeouts, TimeoutPolicy::http_edge());
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<Service>(&text).unwrap(), s);
        let e =
            toml::from_str::<Service>("name = \"pay\"\n[timeouts.downstream]\nledger = \"1 s\"")
                .unwrap_err();
        assert!(e.to_string().contains("downstream.ledger"), "{e}");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        for depth in [1_000, 100_000] {
            let arrays = format!("floor = {}{}", "[".repeat(depth), "]".repeat(depth));
            let _ = TimeoutPolicy::from_toml_str(&arrays);
            let tables = format!("floor = {}{}", "{a=".repeat(depth), "}".repeat(depth));
            let _ = TimeoutPolicy::from_toml_str(&tables);
            let dotted = format!("stage.{} = 1", vec!["a"; depth].join("."));
            let _ = TimeoutPolicy::from_toml_str(&dotted);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

fn paused<F: std::future::Future<Output = Result<(), TestCaseError>>>(
    f: F,
) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Valid policies: globals from 2 ms to 60 s, with nanosecond remainders.
fn valid_policy() -> impl Strategy<Value = TimeoutPolicy> {
    (
        2_000_000_u64..=60_000_000_000,
        0.0..0.5_f64,
        0.0..1.0_f64,
        0.0..2.0_f64,
        prop::collection::vec(1_000_000_u64..10_000_000_000, 8),
    )
        .prop_map(|(global, reserve_f, floor_f, degrade_f, caps)| {
            let global_ns = global;
            let reserve = (global_ns as f64 * reserve_f) as u64;
            let floor = 1 + ((global_ns - reserve - 1) as f64 * floor_f * 0.999) as u64;
            let degrade = floor + (global_ns as f64 * degrade_f) as u64;
            let ns = Duration::from_nanos;
            TimeoutPolicy::internal_grpc()
                .with_global(ns(global_ns))
                .with_reserve(ns(reserve))
                .with_floor(ns(floor))
                .with_degrade_below(ns(degrade))
                .with_default_stage_cap(ns(caps[0]))
                .with_stage_cap(NAMES[0], ns(caps[1]))
                .with_stage_cap(NAMES[1], ns(caps[2]))
                .with_default_downstream_cap(ns(caps[3]))
                .with_downstream_cap(NAMES[0], ns(caps[4]))
                .with_downstream_cap(NAMES[2], ns(caps[5] / 1000)) // sometimes under the floor
        })
        .prop_filter("valid", |p| p.validate().is_ok())
}

#[derive(Clone, Debug)]
enum Op {
    Stage(usize),
    Downstream(usize),
    Advance(u64),
    Finish,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4_usize).prop_map(Op::Stage),
        3 => (0..4_usize).prop_map(Op::Downstream),
        3 => (0..400_000_000_u64).prop_map(Op::Advance),
        1 => Just(Op::Finish),
    ]
}

fn name(i: usize) -> &'static str {
    ["a", "b", "c", "other"][i]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One stage and one downstream call from a request after a random elapsed time.
    #[test]
    fn budgets_respect_parent_cap_and_reserve(
        policy in valid_policy(),
        elapsed_frac in 0.0..1.3_f64,
        which in 0..4_usize,
        incoming in prop::option::of(0_u64..2_000_000_000),
    ) {
        paused(async move {
            let policy = Arc::new(policy);
            let (request, _g) = Context::background().with_request_budget(Arc::clone(&policy), incoming.map(Duration::from_nanos));
            let budget = incoming.map_or(policy.global(), |i| Duration::from_nanos(i).min(policy.global()));
            prop_assert_eq!(request.remaining(), Some(budget));
            advance(budget.mul_f64(elapsed_frac)).await;
            let left = request.remaining().unwrap();
            let name = name(which);

            let cap = policy.stage_cap(name);
            match request.stage(name) {
                Ok(stage) => {
                    prop_assert!(!left.is_zero());
                    prop_assert_eq!(stage.granted(), cap.min(left));
                    prop_assert!(stage.granted() <= left && stage.granted() <= cap);
                    prop_assert!(stage.deadline() <= request.deadline());
                    prop_assert_eq!(stage.remaining(), Some(stage.granted()));
                }
                Err(e) => {
                    prop_assert!(left.is_zero());
                    prop_assert_eq!(e.cause(), Some(&Cause::DeadlineExceeded));
                }
            }

            let cap = policy.downstream_cap(name);
            let expected = cap.min(left.saturating_sub(policy.reserve()));
            match request.downstream(name) {
                Ok(call) => {
                    prop_assert!(expected >= policy.floor());
                    prop_assert_eq!(call.granted(), expected);
                    prop_assert!(call.granted() <= left.saturating_sub(policy.reserve()));
                    prop_assert!(call.granted() <= left && call.granted() <= cap);
                    prop_assert!(call.deadline() <= request.deadline());
                    prop_assert_eq!(call.remaining(), Some(call.granted()));
                }
                Err(e) => {
                    prop_assert!(expected < policy.floor(), "refused with {:?} ≥ floor {:?}", expected, policy.floor());
                    prop_assert_eq!(e.remaining(), Some(left));
                    prop_assert_eq!(e.needed(), policy.floor() + policy.reserve());
                }
            }
            prop_assert_eq!(request.should_degrade(), left < policy.degrade_below());
            Ok(())
        })?;
    }

    /// A stage that keeps time for what follows ends no later than `keep` before its parent,
    /// and is refused exactly when nothing is left beyond `keep`.
    #[test]
    fn stage_leaving_never_eats_what_it_keeps(
        policy in valid_policy(),
        elapsed_frac in 0.0..1.3_f64,
        keep_frac in 0.0..1.5_f64,
        which in 0..4_usize,
    ) {
        paused(async move {
            let policy = Arc::new(policy);
            let (request, _g) = Context::request(Arc::clone(&policy));
            advance(policy.global().mul_f64(elapsed_frac)).await;
            let left = request.remaining().unwrap();
            let keep = policy.global().mul_f64(keep_frac);
            let expected = policy.stage_cap(name(which)).min(left.saturating_sub(keep));
            match request.stage_leaving(name(which), keep) {
                Ok(stage) => {
                    prop_assert!(!expected.is_zero());
                    prop_assert_eq!(stage.granted(), expected);
                    prop_assert!(stage.deadline().unwrap() + keep <= request.deadline().unwrap());
                }
                Err(e) => {
                    prop_assert!(expected.is_zero());
                    prop_assert_eq!(e.remaining(), Some(left));
                    prop_assert_eq!(e.needed(), keep);
                }
            }
            Ok(())
        })?;
    }

    /// Random chains of stages, calls, time passing and finishing: nothing ever outlives an
    /// ancestor, and the ledger agrees with what happened.
    #[test]
    fn nested_chains_never_outlive_an_ancestor(policy in valid_policy(), ops in prop::collection::vec(op(), 1..40)) {
        paused(async move {
            let policy = Arc::new(policy);
            let (request, _g) = Context::request(Arc::clone(&policy));
            let mut stack: Vec<timefuse::budget::BudgetScope> = Vec::new();
            let mut expected_records = 0;
            for op in ops {
                let parent: Context = stack.last().map_or_else(|| request.clone(), |s| s.context().clone());
                let left = parent.remaining();
                match op {
                    Op::Stage(i) | Op::Downstream(i) => {
                        expected_records += 1;
                        let (result, cap, reserve) = match op {
                            Op::Stage(_) => (parent.stage(name(i)), policy.stage_cap(name(i)), Duration::ZERO),
                            _ => (parent.downstream(name(i)), policy.downstream_cap(name(i)), policy.reserve()),
                        };
                        if let Ok(scope) = result {
                            let left = left.unwrap();
                            prop_assert!(scope.granted() <= cap);
                            prop_assert!(scope.granted() <= left.saturating_sub(reserve));
                            if matches!(op, Op::Downstream(_)) {
                                prop_assert!(scope.granted() >= policy.floor());
                            }
                            stack.push(scope);
                        }
                    }
                    Op::Advance(ns) => advance(Duration::from_nanos(ns)).await,
                    Op::Finish => drop(stack.pop()),
                }
                // Every scope's deadline is no later than any ancestor's, the request's included.
                let mut ancestor = request.deadline().unwrap();
                for scope in &stack {
                    let d = scope.deadline().unwrap();
                    prop_assert!(d <= ancestor);
                    prop_assert!(scope.remaining() <= request.remaining());
                    ancestor = d;
                }
                if request.is_done() {
                    for scope in &stack {
                        prop_assert!(scope.is_done());
                    }
                }
            }
            let records = request.budget_records();
            prop_assert_eq!(records.len(), expected_records);
            let start = request.deadline().unwrap() - policy.global();
            for r in &records {
                prop_assert!(r.remaining.is_none_or(|left| r.granted <= left));
                prop_assert!(r.started_at <= Instant::now() - start);
                if r.outcome == BudgetOutcome::TimedOut {
                    prop_assert!(r.used.unwrap() >= r.granted);
                }
            }
            Ok(())
        })?;
    }
}

#[cfg(feature = "config")]
mod toml_properties {
    use super::*;

    /// Pieces of TOML documents: known and unknown keys, good and bad values of every type.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::sample::select(vec![
                "global",
                "reserve",
                "floor",
                "degrade_below",
                "stage",
                "downstream",
                "default",
                "risk",
                "ledger",
                "\"a b\"",
                "\"\"",
                "stage.risk",
                "downstream.default",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z_]{1,8}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let unit = prop::sample::select(vec![
            "ns", "us", "µs", "ms", "s", "m", "h", "", "sec", " ms",
        ]);
        prop_oneof![
            (0_u64..100_000, unit.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
            (0_u64..100, 0_u64..1000, unit).prop_map(|(a, b, u)| format!("\"{a}.{b}{u}\"")),
            any::<i64>().prop_map(|i| i.to_string()),
            (0_i64..100_000).prop_map(|i| i.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            "\"[-+0-9a-zµ. ]{0,10}\"",
            Just("1979-05-27T07:32:00Z".to_owned()),
            Just("[\"1s\", 2]".to_owned()),
            Just("{ default = \"1s\", x = 5 }".to_owned()),
            Just("{}".to_owned()),
        ]
    }

    fn entries() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((key(), value()), 0..6)
    }

    fn document() -> impl Strategy<Value = String> {
        let section = (
            prop::sample::select(vec!["stage", "downstream", "other", "stage.risk"]),
            entries(),
        );
        (entries(), prop::collection::vec(section, 0..3)).prop_map(|(top, sections)| {
            let mut doc = String::new();
            for (k, v) in top {
                doc.push_str(&format!("{k} = {v}\n"));
            }
            for (name, entries) in sections {
                doc.push_str(&format!("[{name}]\n"));
                for (k, v) in entries {
                    doc.push_str(&format!("{k} = {v}\n"));
                }
            }
            doc
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>()) {
            if let Ok(policy) = TimeoutPolicy::from_toml_str(&text) {
                prop_assert!(policy.validate().is_ok());
            }
        }

        #[test]
        fn tomlish_strings_never_panic(text in "[\\[\\]a-z_=\"0-9.µ \n#{},-]{0,120}") {
            if let Ok(policy) = TimeoutPolicy::from_toml_str(&text) {
                prop_assert!(policy.validate().is_ok());
            }
        }

        #[test]
        fn toml_shaped_documents_never_panic(doc in document()) {
            match TimeoutPolicy::from_toml_str(&doc) {
                Ok(policy) => {
                    prop_assert!(policy.validate().is_ok());
                    prop_assert_eq!(TimeoutPolicy::from_toml_str(&policy.to_toml_string()).unwrap(), policy);
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("timeout policy: "));
                    if let Some(key) = e.key() {
                        prop_assert!(msg.contains(key));
                    }
                }
            }
        }

        #[test]
        fn valid_policies_round_trip(policy in valid_policy()) {
            let text = policy.to_toml_string();
            prop_assert_eq!(TimeoutPolicy::from_toml_str(&text).unwrap(), policy);
        }
    }
}
