//! The sync actor's state machine, in process on paused tokio time: retry with backoff, park and
//! un-park (also a park persisted before a restart), reschedule at the interval, lease held
//! elsewhere, triggers, and panics of the run or its heartbeat (recorded failed, never a wedged
//! stream). The run protocol is the real one (`sync::run`), over the test kit's in-memory ledger;
//! the stream body is scripted. Each test fails when its behaviour is broken; none waits in real
//! time.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use temu_sync::config::Stream;
use temu_sync::health::Status;
use temu_sync::store::RunStatus;
use temu_sync::sync::run::Park;
use temu_sync::sync::{StreamState, TriggerOutcome};
use temu_sync::testkit::MemoryLedger;

use harness::*;

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_exponentially_then_fall_back_to_the_interval() {
    let mut h = Harness::start(vec![], || Step::FailRetryable, MemoryLedger::new("me")).await;
    let first = h.next_run(NEVER).await.expect("first run");
    assert!(within(
        first - h.started,
        Duration::from_secs(1),
        Duration::from_secs(2)
    ));
    h.settle().await;
    assert_eq!(h.state(), StreamState::Retrying);
    // Backoff 30 s · 2^(n-1), jittered into [d/2, d], for the 3 retries; then the interval ± 10 %.
    let gaps = h.gaps(first, 4).await;
    let s = Duration::from_secs;
    assert!(within(gaps[0], s(15), s(30)), "{gaps:?}");
    assert!(within(gaps[1], s(30), s(60)), "{gaps:?}");
    assert!(within(gaps[2], s(60), s(120)), "{gaps:?}");
    assert!(
        within(gaps[3], INTERVAL * 9 / 10, INTERVAL * 11 / 10),
        "{gaps:?}"
    );
    h.settle().await;
    // The fifth failure starts a new streak: backoff again.
    assert_eq!(h.state(), StreamState::Retrying);
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 5);
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Failed && r.class == Some("record")));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_parks_the_stream_until_a_trigger() {
    let script = vec![Step::FailFatal];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Parked);
    let reason = h
        .ledger
        .parked(SHOP, Stream::Orders)
        .expect("parked in the ledger");
    assert!(reason.contains("3000024"), "{reason}");
    let view = h.board.view(SHOP, Stream::Orders).expect("on the board");
    assert!(
        view.next_run_at.is_none(),
        "a parked stream has no next run"
    );
    // Ten intervals later: still no run.
    assert_eq!(
        h.next_run(INTERVAL * 10).await,
        None,
        "a parked stream must not run"
    );

    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("the trigger starts a run at once");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders),
        None,
        "un-parked by success"
    );
}

#[tokio::test(start_paused = true)]
async fn success_reschedules_at_the_interval_with_jitter() {
    let mut h = Harness::start(vec![], || Step::Succeed, MemoryLedger::new("me")).await;
    let first = h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    let gaps = h.gaps(first, 3).await;
    for gap in &gaps {
        assert!(
            within(*gap, INTERVAL * 9 / 10, INTERVAL * 11 / 10),
            "{gaps:?}"
        );
    }
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
    assert_eq!(
        h.ledger.lease_owner(SHOP, Stream::Orders),
        None,
        "released after each run"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_elsewhere_is_checked_within_a_lease_period_and_taken_over_once_expired() {
    let ledger = MemoryLedger::new("me");
    let held_for = Duration::from_secs(150);
    ledger.hold_elsewhere(SHOP, Stream::Orders, "other-daemon", held_for);
    let mut h = Harness::start(vec![], || Step::Succeed, ledger).await;
    // The first ticks find the lease held: nothing runs, nothing is recorded.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.state(), StreamState::HeldElsewhere);
    assert!(h.ledger.runs().is_empty());
    // Checked again every lease_ttl (60 s), so taken over at most one lease period after expiry.
    let ran = h.next_run(NEVER).await.expect("taken over");
    let after = ran - h.started;
    assert!(
        within(after, held_for, held_for + Duration::from_secs(62)),
        "taken over after {after:?}"
    );
    h.settle().await;
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].owner, "me");
    assert_eq!(runs[0].status, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_trigger_while_a_run_works_answers_already_running() {
    let release = Arc::new(Notify::new());
    let script = vec![Step::Block(release.clone())];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    h.next_run(NEVER).await.expect("first run");
    assert_eq!(h.state(), StreamState::Running);
    assert_eq!(h.trigger().await, TriggerOutcome::AlreadyRunning);
    release.notify_one();
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("a run right after the trigger");
    h.settle().await;
    assert_eq!(h.ledger.runs().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_run_is_recorded_failed_released_retried_with_backoff_and_counted() {
    let script = vec![Step::Panic];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    assert_eq!(h.panics_of("sync_run"), Some(0.0), "registered at zero");
    let first = h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(
        h.state(),
        StreamState::Retrying,
        "noticed at once, not wedged"
    );
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].class, Some("panic"));
    let recorded = runs[0].message.clone().unwrap_or_default();
    assert!(
        recorded.contains("scripted panic in the body"),
        "{recorded}"
    );
    assert_eq!(
        h.ledger.lease_owner(SHOP, Stream::Orders),
        None,
        "the lease is released"
    );
    // `/status` and `/health` say so.
    let view = h.view();
    assert_eq!(view.last_error_class.as_deref(), Some("panic"));
    let last_error = view.last_error.unwrap_or_default();
    assert!(
        last_error.contains("scripted panic in the body"),
        "{last_error}"
    );
    let check = h.check();
    assert_eq!(check.status, Status::Warn);
    let output = check.output.unwrap_or_default();
    assert!(output.contains("scripted panic in the body"), "{output}");
    assert_eq!(h.panics_of("sync_run"), Some(1.0));

    // Retried with backoff (30 s jittered into [15 s, 30 s]), and the stream carries on.
    let again = h.next_run(NEVER).await.expect("retried");
    let s = Duration::from_secs;
    assert!(within(again - first, s(15), s(30)), "{:?}", again - first);
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(h.check().status, Status::Pass, "a success clears it");
    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("a trigger after the panic starts a run");
    h.settle().await;
    let statuses: Vec<RunStatus> = h.ledger.runs().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Failed,
            RunStatus::Succeeded,
            RunStatus::Succeeded
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_heartbeat_ends_the_run_failed_instead_of_leaving_the_lease_to_expire() {
    let ledger = MemoryLedger::new("me");
    ledger.panic_on_heartbeat();
    // The first run would work forever; only the heartbeat (every lease_ttl / 3) can end it.
    let never_released = Arc::new(Notify::new());
    let script = vec![Step::Block(never_released.clone())];
    let mut h = Harness::start(script, || Step::Succeed, ledger).await;
    let first = h.next_run(NEVER).await.expect("first run");
    let again = h
        .next_run(NEVER)
        .await
        .expect("retried after the heartbeat panicked");
    let s = Duration::from_secs;
    // The heartbeat's first beat after 20 s, then a backoff of [15 s, 30 s].
    assert!(within(again - first, s(35), s(51)), "{:?}", again - first);
    h.settle().await;
    let runs = h.ledger.runs();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].class, Some("panic"));
    let recorded = runs[0].message.clone().unwrap_or_default();
    assert!(recorded.contains("heartbeat"), "{recorded}");
    assert_eq!(runs[1].status, RunStatus::Succeeded);
    assert_eq!(h.ledger.lease_owner(SHOP, Stream::Orders), None);
    assert_eq!(h.panics_of("heartbeat"), Some(1.0));
    assert_eq!(h.panics_of("sync_run"), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn a_park_persisted_before_a_restart_keeps_the_stream_parked_until_a_trigger() {
    let ledger = MemoryLedger::new("me");
    let reason = "Temu API: 3000024 no permission (parked by the previous process)";
    ledger.park(SHOP, Stream::Orders, reason);
    // A retryable failure after the trigger: only the trigger itself can have cleared the park.
    let mut h = Harness::start(vec![], || Step::FailRetryable, ledger).await;
    assert_eq!(
        h.next_run(INTERVAL * 10).await,
        None,
        "a stream parked in the ledger must not run (nor call the API)"
    );
    assert_eq!(h.state(), StreamState::Parked);
    let view = h.view();
    assert_eq!(
        view.parked_reason.as_deref(),
        Some(reason),
        "/status says why"
    );
    assert!(view.next_run_at.is_none(), "no next run while parked");
    assert_eq!(h.check().status, Status::Fail);
    assert!(h.ledger.runs().is_empty(), "no run was recorded");
    assert_eq!(
        h.ledger.lease_owner(SHOP, Stream::Orders),
        None,
        "the lease is released"
    );
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders).as_deref(),
        Some(reason)
    );

    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("the trigger runs the stream");
    h.settle().await;
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders),
        None,
        "the trigger cleared the persisted park"
    );
    assert_eq!(h.state(), StreamState::Retrying, "and it retries as usual");
    assert_eq!(h.view().parked_reason, None);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_database_error_parks_and_is_probed_every_backoff_max_until_a_run_succeeds() {
    let script = vec![Step::FailDbPermanent, Step::FailDbPermanent];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    let first = h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Parked);
    let stored = h.ledger.parked(SHOP, Stream::Orders).expect("parked");
    assert!(stored.contains("permission denied"), "{stored}");
    assert!(
        h.view().next_run_at.is_some(),
        "a probed park has its next probe on the board"
    );
    // The probe comes after `retry_backoff_max` (600 s here), not the retry backoff (30 s …).
    let probe = h.next_run(NEVER).await.expect("a probe run");
    assert!(
        within(
            probe - first,
            Duration::from_secs(600),
            Duration::from_secs(601)
        ),
        "probe after {:?}",
        probe - first
    );
    h.settle().await;
    assert_eq!(
        h.state(),
        StreamState::Parked,
        "the failed probe parks again"
    );
    let second = h.next_run(NEVER).await.expect("a second probe");
    assert!(within(
        second - probe,
        Duration::from_secs(600),
        Duration::from_secs(601)
    ));
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle, "the probe succeeded");
    assert_eq!(h.view().parked_reason, None, "/status no longer parked");
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders),
        None,
        "un-parked in the ledger"
    );
}

#[tokio::test(start_paused = true)]
async fn a_parked_api_error_is_not_probed() {
    let mut h = Harness::start(
        vec![Step::FailFatal],
        || Step::Succeed,
        MemoryLedger::new("me"),
    )
    .await;
    h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Parked);
    assert_eq!(
        h.next_run(Duration::from_secs(6 * 3600)).await,
        None,
        "a token or permission problem at the API is not re-tried by itself"
    );
}

/// The stored park of a run that parked with `Step::FailFatal` under the harness's configuration.
async fn stored_park() -> String {
    let mut h = Harness::start(
        vec![Step::FailFatal],
        || Step::Succeed,
        MemoryLedger::new("me"),
    )
    .await;
    h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    h.ledger.parked(SHOP, Stream::Orders).expect("parked")
}

#[tokio::test(start_paused = true)]
async fn a_persisted_park_is_kept_under_the_same_configuration_and_cleared_by_a_changed_one() {
    let stored = stored_park().await;
    let park = Park::parse(&stored);
    assert!(
        park.config.is_some(),
        "the park records the configuration: {stored}"
    );

    // The same configuration after a restart: still parked, no run.
    let same = MemoryLedger::new("me");
    same.park(SHOP, Stream::Orders, &stored);
    let mut h = Harness::start(vec![], || Step::Succeed, same).await;
    assert_eq!(h.next_run(INTERVAL * 4).await, None, "kept parked");
    assert_eq!(h.state(), StreamState::Parked);

    // Parked under another configuration (e.g. the token was replaced): cleared at the first run.
    let changed = MemoryLedger::new("me");
    let other = Park {
        config: Some("0123456789abcdef".into()),
        ..park
    };
    changed.park(SHOP, Stream::Orders, &other.to_stored());
    let mut h = Harness::start(vec![], || Step::Succeed, changed).await;
    h.next_run(Duration::from_secs(5))
        .await
        .expect("the changed configuration un-parks: the stream runs at once");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(h.ledger.parked(SHOP, Stream::Orders), None);
}

#[tokio::test(start_paused = true)]
async fn a_park_the_database_refuses_to_store_is_retried_until_it_is_stored() {
    let ledger = MemoryLedger::new("me");
    ledger.refuse_finish(true);
    let mut h = Harness::start(vec![Step::FailFatal], || Step::Succeed, ledger).await;
    h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Parked, "parked in memory at once");
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders),
        None,
        "the read-only database took nothing"
    );
    // Still refused after several backoff periods (30 s, 60 s, … capped at 600 s).
    tokio::time::sleep(Duration::from_secs(900)).await;
    h.settle().await;
    assert_eq!(h.ledger.parked(SHOP, Stream::Orders), None);
    // Writable again: within one `retry_backoff_max` the park is stored, with the run's end.
    h.ledger.refuse_finish(false);
    tokio::time::sleep(Duration::from_secs(601)).await;
    h.settle().await;
    let stored = h
        .ledger
        .parked(SHOP, Stream::Orders)
        .expect("the park is stored once the database takes it");
    assert!(stored.contains("3000024"), "{stored}");
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 1, "no further run while parked");
    assert_eq!(
        runs[0].status,
        RunStatus::Failed,
        "the run's end recorded too"
    );
}
