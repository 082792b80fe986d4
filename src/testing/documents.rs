//! Endpoints and pending checkouts kept beside the log.

use std::sync::Arc;

use super::at;
use crate::checkout::Checkout;
use crate::store::{LogError, Store};
use crate::{Endpoint, EventKind, WebhookSecret};

/// A contract check; panics when the backend breaks the contract.
pub async fn endpoints_are_stored_secret_included_replaced_listed_by_owner_and_removed(
    store: Arc<dyn Store>,
) {
    let secret = WebhookSecret::new("endpoint-secret-1").unwrap();
    let crm = Endpoint::new("crm", "https://crm.example.com/in", secret.clone())
        .unwrap()
        .owned_by("creator-1")
        .subscribe_only([EventKind::PaidCourseSale]);
    let books = Endpoint::new("books", "https://books.example.com/in", secret)
        .unwrap()
        .owned_by("creator-2");
    store.put_endpoint(&crm).await.unwrap();
    store.put_endpoint(&books).await.unwrap();
    let back = store.endpoint("crm").await.unwrap().unwrap();
    assert_eq!(back.url, crm.url);
    assert_eq!(back.secret.expose_secret(), "endpoint-secret-1");
    assert_eq!(back.events, crm.events);
    assert_eq!(back.owner.as_deref(), Some("creator-1"));
    let ids = |list: Vec<Endpoint>| list.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.endpoints(None).await.unwrap()), ["books", "crm"]);
    assert_eq!(
        ids(store.endpoints(Some("creator-1")).await.unwrap()),
        ["crm"]
    );
    let switched_off = crm.clone().enabled(false);
    store.put_endpoint(&switched_off).await.unwrap();
    assert!(
        !store.endpoint("crm").await.unwrap().unwrap().enabled,
        "replaced"
    );
    assert!(store.remove_endpoint("crm").await.unwrap());
    assert!(!store.remove_endpoint("crm").await.unwrap());
    assert!(store.endpoint("crm").await.unwrap().is_none());
    let mut bad = books.clone();
    bad.url = "ftp://books.example.com".into();
    assert!(matches!(
        store.put_endpoint(&bad).await,
        Err(LogError::InvalidEntry { .. })
    ));
}

/// A contract check; panics when the backend breaks the contract.
pub async fn pending_checkouts_are_kept_until_forgotten(store: Arc<dyn Store>) {
    let checkout = |order: &str| Checkout {
        order_id: order.into(),
        amount_in_smallest_unit: 49_900,
        currency: "INR".into(),
        user_id: "u1".into(),
        user_fullname: "Asha Rao".into(),
        user_email: "asha@example.com".into(),
        user_phone_number: None,
        course_slug: "rust-101".into(),
        course_name: "Rust 101".into(),
        initiated_at: at("2026-11-28T10:00:00.250Z"),
    };
    store.insert(checkout("ord_1")).await.unwrap();
    store.insert(checkout("ord_2")).await.unwrap();
    store.insert(checkout("ord_1")).await.unwrap();
    let mut pending = store.pending().await.unwrap();
    pending.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(pending, [checkout("ord_1"), checkout("ord_2")]);
    assert!(store.remove("ord_1").await.unwrap());
    assert!(!store.remove("ord_1").await.unwrap());
    assert_eq!(store.pending().await.unwrap(), [checkout("ord_2")]);
}
