//! Claims, leases and fencing.

use std::sync::Arc;
use std::time::Duration;

use super::{LEASE, at, attempt, record, stored};
use crate::EventKind;
use crate::store::{AttemptTrigger, ClaimRequest, DeliveryState, LogError, Store};

/// A contract check; panics when the backend breaks the contract.
pub async fn claims_hand_out_due_pending_deliveries_earliest_first_each_once_per_lease(
    store: Arc<dyn Store>,
) {
    let early = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    let late = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:05:00Z",
        &["crm", "accounting"],
    );
    store.append(late.clone()).await.unwrap();
    store.append(early.clone()).await.unwrap();
    // An hour's lease, so that every claim below is still held when the next is asked for.
    let hour = Duration::from_secs(3600);
    let claim = async |now: &str, limit| {
        store
            .claim_due(&ClaimRequest::new(at(now), limit, hour))
            .await
    };
    assert!(
        claim("2026-11-28T09:59:59Z", 10).await.unwrap().is_empty(),
        "none due yet"
    );
    let due = claim("2026-11-28T10:00:00Z", 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event_unique_id, early.event_unique_id);
    assert_eq!(due[0].url, "https://hooks.example.com/crm");
    assert_eq!(due[0].attempts_made, 0);
    assert_eq!(due[0].claimed_until, at("2026-11-28T11:00:00Z"));
    // The late event's two, earliest first, and a limit is kept.
    let both = claim("2026-11-28T10:05:30Z", 1).await.unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].event_unique_id, late.event_unique_id);
    let rest = claim("2026-11-28T10:05:30Z", 10).await.unwrap();
    assert_eq!(rest.len(), 1, "the early one is still held: {rest:?}");
    assert_ne!(rest[0].endpoint_id, both[0].endpoint_id);
    assert!(
        claim("2026-11-28T10:05:59Z", 10).await.unwrap().is_empty(),
        "all held"
    );

    // Recording under its claim settles the early one; a retry scheduled for later is due
    // then, and claimed again.
    let mut ok = record(
        &early,
        "crm",
        attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z"),
        DeliveryState::Delivered,
    );
    ok.claim = Some(due[0].claim.clone());
    store.record_attempt(ok).await.unwrap();
    let mut retry = record(
        &late,
        &both[0].endpoint_id,
        attempt(503, AttemptTrigger::FirstTry, "2026-11-28T10:05:31Z"),
        DeliveryState::Pending,
    );
    retry.next_attempt_at = Some(at("2026-11-28T12:00:00Z"));
    retry.claim = Some(both[0].claim.clone());
    store.record_attempt(retry).await.unwrap();
    // Past its lease, what was never recorded is due again; the retry only at noon.
    let again = claim("2026-11-28T11:06:00Z", 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].endpoint_id, rest[0].endpoint_id);
    let noon = claim("2026-11-28T12:00:00Z", 10).await.unwrap();
    assert_eq!(noon.len(), 1);
    assert_eq!(
        (noon[0].endpoint_id.as_str(), noon[0].attempts_made),
        (both[0].endpoint_id.as_str(), 1)
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn a_claim_taken_over_after_its_lease_fences_out_the_old_holder(store: Arc<dyn Store>) {
    let event = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    store.append(event.clone()).await.unwrap();
    let slow = store
        .claim_due(&ClaimRequest::new(at("2026-11-28T10:00:00Z"), 10, LEASE))
        .await
        .unwrap();
    let fast = store
        .claim_due(&ClaimRequest::new(at("2026-11-28T10:01:00Z"), 10, LEASE))
        .await
        .unwrap();
    assert_eq!(fast.len(), 1, "taken over once the lease ran out");
    assert_ne!(fast[0].claim, slow[0].claim);
    let mut delivered = record(
        &event,
        "crm",
        attempt(200, AttemptTrigger::AutomaticRetry, "2026-11-28T10:01:01Z"),
        DeliveryState::Delivered,
    );
    delivered.claim = Some(fast[0].claim.clone());
    store.record_attempt(delivered).await.unwrap();
    let mut late = record(
        &event,
        "crm",
        attempt(500, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z"),
        DeliveryState::Failed,
    );
    late.claim = Some(slow[0].claim.clone());
    let error = store.record_attempt(late).await.unwrap_err();
    assert!(matches!(error, LogError::ClaimLost { .. }), "{error:?}");
    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(
        back.deliveries[0].attempts.len(),
        1,
        "the lost claim recorded nothing"
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn claims_are_released_on_request_and_held_against_unclaimed_records(
    store: Arc<dyn Store>,
) {
    let event = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    let token = store
        .append_claimed(event.clone(), at("2026-11-28T10:00:00Z"), LEASE, &["crm"])
        .await
        .unwrap();
    let now = at("2026-11-28T10:00:10Z");
    if let Some(token) = token {
        assert!(
            store
                .claim_due(&ClaimRequest::new(now, 10, LEASE))
                .await
                .unwrap()
                .is_empty(),
            "held from append"
        );
        let unclaimed = record(
            &event,
            "crm",
            attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:10Z"),
            DeliveryState::Delivered,
        );
        let error = store.record_attempt(unclaimed).await.unwrap_err();
        assert!(matches!(error, LogError::ClaimLost { .. }), "{error:?}");
        assert_eq!(
            store
                .claim(&event.event_unique_id, "crm", now, LEASE)
                .await
                .unwrap(),
            None,
            "a manual claim waits too"
        );
        store.release(&token).await.unwrap();
    }
    let claimed = store
        .claim_due(&ClaimRequest::new(now, 10, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "free once released");
    store.release(&claimed[0].claim).await.unwrap();
    let manual = store
        .claim(&event.event_unique_id, "crm", now, LEASE)
        .await
        .unwrap();
    assert!(manual.is_some());
    let error = store
        .claim("no-such-event", "crm", now, LEASE)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::UnknownEvent { .. }), "{error:?}");
    let error = store
        .claim(&event.event_unique_id, "nobody", now, LEASE)
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::UnknownDelivery { .. }),
        "{error:?}"
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn concurrent_claimers_never_get_the_same_delivery(store: Arc<dyn Store>) {
    for minute in 0..40 {
        let event = stored(
            EventKind::PaidCourseSale,
            &format!("2026-11-28T10:{minute:02}:00Z"),
            &["crm", "accounting"],
        );
        store.append(event).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim_due(&ClaimRequest::new(at("2026-11-28T11:00:00Z"), 3, LEASE))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|d| (d.event_unique_id, d.endpoint_id)));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (80, 80),
        "each delivery claimed exactly once"
    );
}

/// A contract check; panics when the backend breaks the contract.
pub async fn claims_take_turns_across_endpoints_and_keep_each_under_its_cap(store: Arc<dyn Store>) {
    // A hanging endpoint with a long backlog, due first; a healthy one with a short one.
    let mut hanging = Vec::new();
    for second in 0..6 {
        let event = stored(
            EventKind::PaidCourseSale,
            &format!("2026-11-28T10:00:0{second}Z"),
            &["hanging"],
        );
        store.append(event.clone()).await.unwrap();
        hanging.push(event);
    }
    let healthy = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:30Z",
        &["healthy", "paused"],
    );
    store.append(healthy.clone()).await.unwrap();
    let later = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:40Z",
        &["healthy"],
    );
    store.append(later.clone()).await.unwrap();
    let now = at("2026-11-28T10:01:00Z");
    let request = |limit| {
        ClaimRequest::new(now, limit, LEASE)
            .per_endpoint(2)
            .skipping(["paused"])
    };

    let first = store.claim_due(&request(3)).await.unwrap();
    let order: Vec<&str> = first.iter().map(|d| d.endpoint_id.as_str()).collect();
    assert_eq!(
        order,
        ["hanging", "healthy", "hanging"],
        "each endpoint's earliest first, then each one's second"
    );
    assert_eq!(first[0].event_unique_id, hanging[0].event_unique_id);
    assert_eq!(first[1].event_unique_id, healthy.event_unique_id);

    // The hanging endpoint holds its two; the healthy one gets its second; the paused one
    // nothing.
    let second = store.claim_due(&request(10)).await.unwrap();
    let order: Vec<(&str, &str)> = second
        .iter()
        .map(|d| (d.endpoint_id.as_str(), d.event_unique_id.as_str()))
        .collect();
    assert_eq!(order, [("healthy", later.event_unique_id.as_str())]);
    assert!(store.claim_due(&request(10)).await.unwrap().is_empty());

    // An attempt recorded frees its place under the cap.
    let mut failed = record(
        &hanging[0],
        "hanging",
        attempt(503, AttemptTrigger::FirstTry, "2026-11-28T10:01:00Z"),
        DeliveryState::Pending,
    );
    failed.next_attempt_at = Some(at("2026-11-28T11:00:00Z"));
    failed.claim = Some(first[0].claim.clone());
    store.record_attempt(failed).await.unwrap();
    let third = store.claim_due(&request(10)).await.unwrap();
    let ids: Vec<&str> = third.iter().map(|d| d.event_unique_id.as_str()).collect();
    assert_eq!(
        ids,
        [hanging[2].event_unique_id.as_str()],
        "the next in line"
    );

    // Claims made on append count toward the cap as well.
    let fresh = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:50Z",
        &["spare"],
    );
    let token = store
        .append_claimed(fresh.clone(), now, LEASE, &["spare"])
        .await
        .unwrap();
    let spare = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:51Z",
        &["spare"],
    );
    store.append(spare.clone()).await.unwrap();
    let capped = store
        .claim_due(
            &ClaimRequest::new(now, 10, LEASE)
                .per_endpoint(1)
                .skipping(["hanging", "healthy", "paused"]),
        )
        .await
        .unwrap();
    match token {
        Some(_) => assert!(
            capped.is_empty(),
            "the appended claim fills the cap: {capped:?}"
        ),
        None => assert_eq!(capped.len(), 1, "a backend that claims nothing on append"),
    }
}

/// A contract check; panics when the backend breaks the contract.
pub async fn the_backlog_counts_pending_deliveries_by_endpoint(store: Arc<dyn Store>) {
    assert!(store.backlog().await.unwrap().is_empty());
    let old = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["crm", "books"],
    );
    let new = stored(EventKind::PaidCourseSale, "2026-11-28T11:00:00Z", &["crm"]);
    store.append(old.clone()).await.unwrap();
    store.append(new.clone()).await.unwrap();
    store
        .record_attempt(record(
            &old,
            "books",
            attempt(200, AttemptTrigger::FirstTry, "2026-11-28T10:00:01Z"),
            DeliveryState::Delivered,
        ))
        .await
        .unwrap();
    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.len(), 1, "{backlog:?}");
    assert_eq!(backlog[0].endpoint_id, "crm");
    assert_eq!(backlog[0].pending, 2);
    assert_eq!(backlog[0].oldest, at("2026-11-28T10:00:00Z"));
    // Claimed deliveries are still pending until their attempts are recorded.
    let claimed = store
        .claim_due(&ClaimRequest::new(at("2026-11-28T12:00:00Z"), 1, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(store.backlog().await.unwrap(), backlog);
}
