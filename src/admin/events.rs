//! The event log routes: the tenant's events, one event's body and attempts, re-triggers.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::routes::{body, tenant};
use super::{Admin, AdminError, Tenant};
use crate::dispatch::{DispatchError, Retriggered};
use crate::event::EventKind;
use crate::store::{Attempt, Cursor, DeliveryState, EventRow, LogFilter, StoredEvent};

/// The most events one page holds.
const MAX_PAGE: usize = 500;

pub(super) fn routes() -> Router<Admin> {
    use axum::routing::{get, post};
    Router::new()
        .route("/events", get(list))
        .route("/events/{id}", get(show))
        .route("/events/{id}/body", get(exact_body))
        .route("/events/{id}/attempts", get(attempts))
        .route("/events/{id}/retrigger", post(retrigger))
        .route("/retrigger-failed", post(retrigger_failed))
        .route("/export", get(super::download::export))
}

/// `GET /events` parameters, all optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EventsQuery {
    from: Option<String>,
    to: Option<String>,
    /// Kinds, comma-separated.
    event_type: Option<String>,
    status: Option<String>,
    test: Option<bool>,
    endpoint: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn time(name: &str, text: &str) -> Result<DateTime<Utc>, AdminError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AdminError::invalid(format!("{name} {text:?} is not an RFC 3339 time: {e}")))
}

/// The tenant's endpoint ids, or only `endpoint` if it is one of them.
pub(super) fn endpoints_of(
    admin: &Admin,
    tenant: &Tenant,
    endpoint: Option<&str>,
) -> Result<Vec<String>, AdminError> {
    let mine: Vec<String> = admin
        .owned_endpoints(tenant)
        .into_iter()
        .map(|e| e.id)
        .collect();
    match endpoint {
        Some(id) if mine.iter().any(|m| m == id) => Ok(vec![id.to_owned()]),
        Some(id) => Err(AdminError::not_found(format!("no endpoint {id}"))),
        None => Ok(mine),
    }
}

impl EventsQuery {
    /// The filter parameters an export takes.
    pub(super) fn for_export(
        from: Option<String>,
        to: Option<String>,
        event_type: Option<String>,
        status: Option<String>,
        test: Option<bool>,
    ) -> Self {
        Self {
            from,
            to,
            event_type,
            status,
            test,
            endpoint: None,
            limit: None,
            cursor: None,
        }
    }

    pub(super) fn filter(&self, endpoints: Vec<String>) -> Result<LogFilter, AdminError> {
        let mut filter = LogFilter::default().to_endpoints(endpoints);
        filter.from = self.from.as_deref().map(|t| time("from", t)).transpose()?;
        filter.to = self.to.as_deref().map(|t| time("to", t)).transpose()?;
        if let Some(kinds) = &self.event_type {
            filter.kinds = kinds
                .split(',')
                .map(|k| k.trim().parse::<EventKind>())
                .collect::<Result<_, _>>()
                .map_err(|e| AdminError::invalid(e.to_string()))?;
        }
        if let Some(status) = &self.status {
            filter.status = Some(
                status
                    .parse::<DeliveryState>()
                    .map_err(AdminError::invalid)?,
            );
        }
        filter.is_test_event = self.test;
        Ok(filter)
    }
}

/// An event as a log page lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    event_unique_id: String,
    timestamp_iso_string: String,
    event_type: String,
    is_test_event: bool,
    status: DeliveryState,
    attempts: usize,
    last_response_status: Option<u16>,
}

impl From<EventRow> for Row {
    fn from(row: EventRow) -> Self {
        Self {
            event_unique_id: row.event_unique_id,
            timestamp_iso_string: iso(row.timestamp),
            event_type: row.event_type,
            is_test_event: row.is_test_event,
            status: row.status,
            attempts: row.attempts,
            last_response_status: row.last_response_status,
        }
    }
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage {
    events: Vec<Row>,
    next_cursor: Option<String>,
}

async fn list(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let Query(query) = query.map_err(|e| AdminError::invalid(e.body_text()))?;
    let endpoints = endpoints_of(&admin, &tenant, query.endpoint.as_deref())?;
    if endpoints.is_empty() {
        return Ok(Json(EventsPage {
            events: Vec::new(),
            next_cursor: None,
        }));
    }
    let filter = query.filter(endpoints)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let cursor = query.cursor.clone().map(Cursor::from);
    let page = admin
        .dispatcher
        .store()
        .query(&filter, cursor.as_ref(), limit)
        .await
        .map_err(|e| match e {
            crate::store::LogError::InvalidCursor { .. } => AdminError::invalid(e.to_string()),
            other => AdminError::from(DispatchError::from(other)),
        })?;
    Ok(Json(EventsPage {
        events: page
            .events
            .iter()
            .map(|event| Row::from(EventRow::from(event)))
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
    }))
}

/// The event, with only the tenant's deliveries; 404 if none of them is the tenant's.
async fn owned_event(
    admin: &Admin,
    headers: &HeaderMap,
    id: &str,
) -> Result<StoredEvent, AdminError> {
    let tenant = tenant(admin, headers)?;
    let mine = endpoints_of(admin, &tenant, None)?;
    let missing = || AdminError::not_found(format!("no event {id}"));
    let mut event = admin
        .dispatcher
        .store()
        .get(id)
        .await
        .map_err(|e| AdminError::from(DispatchError::from(e)))?
        .ok_or_else(missing)?;
    event.deliveries.retain(|d| mine.contains(&d.endpoint_id));
    if event.deliveries.is_empty() {
        return Err(missing());
    }
    Ok(event)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    endpoint_id: String,
    #[serde(flatten)]
    attempt: Attempt,
}

fn attempt_views(event: &StoredEvent) -> Vec<AttemptView> {
    event
        .deliveries
        .iter()
        .flat_map(|d| {
            d.attempts.iter().map(|attempt| AttemptView {
                endpoint_id: d.endpoint_id.clone(),
                attempt: attempt.clone(),
            })
        })
        .collect()
}

async fn show(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let event = owned_event(&admin, &headers, &id).await?;
    let row = Row::from(EventRow::from(&event));
    let mut value = serde_json::to_value(row).map_err(|e| AdminError::internal(&e.to_string()))?;
    value["deliveries"] = serde_json::to_value(&event.deliveries)
        .map_err(|e| AdminError::internal(&e.to_string()))?;
    Ok(Json(value))
}

async fn exact_body(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let event = owned_event(&admin, &headers, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], event.body).into_response())
}

async fn attempts(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<AttemptView>>, AdminError> {
    let event = owned_event(&admin, &headers, &id).await?;
    Ok(Json(attempt_views(&event)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetriggerRequest {
    endpoint_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RetriggerView {
    event_unique_id: String,
    endpoint_id: String,
    status: DeliveryState,
    http_status: Option<u16>,
}

fn view(event_unique_id: &str, retriggered: &Retriggered) -> RetriggerView {
    RetriggerView {
        event_unique_id: event_unique_id.to_owned(),
        endpoint_id: retriggered.endpoint_id.clone(),
        status: retriggered.state,
        http_status: retriggered.outcome.status(),
    }
}

async fn retrigger(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    parsed: Option<Json<RetriggerRequest>>,
) -> Result<Json<Vec<RetriggerView>>, AdminError> {
    let event = owned_event(&admin, &headers, &id).await?;
    let request = parsed.map(|Json(r)| r).unwrap_or_default();
    let targets: Vec<String> = match request.endpoint_id {
        Some(endpoint) if event.deliveries.iter().any(|d| d.endpoint_id == endpoint) => {
            vec![endpoint]
        }
        Some(endpoint) => return Err(AdminError::not_found(format!("no endpoint {endpoint}"))),
        None => event
            .deliveries
            .iter()
            .map(|d| d.endpoint_id.clone())
            .collect(),
    };
    let mut views = Vec::new();
    for endpoint in targets {
        for done in admin.dispatcher.retrigger(&id, Some(&endpoint)).await? {
            views.push(view(&id, &done));
        }
    }
    Ok(Json(views))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetriggerFailed {
    since: String,
    until: Option<String>,
    endpoint_id: Option<String>,
}

async fn retrigger_failed(
    State(admin): State<Admin>,
    headers: HeaderMap,
    parsed: Result<Json<RetriggerFailed>, JsonRejection>,
) -> Result<Json<Vec<RetriggerView>>, AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let request = body(parsed)?;
    let since = time("since", &request.since)?;
    let until = match &request.until {
        Some(until) => time("until", until)?,
        None => Utc::now(),
    };
    let endpoints = endpoints_of(&admin, &tenant, request.endpoint_id.as_deref())?;
    let filter = LogFilter::default()
        .between(since, until)
        .status(DeliveryState::Failed)
        .to_endpoints(endpoints.clone());
    let mut failed = Vec::new();
    if !endpoints.is_empty() {
        admin
            .dispatcher
            .store()
            .scan(&filter, &mut |event| {
                for d in &event.deliveries {
                    if d.state == DeliveryState::Failed && endpoints.contains(&d.endpoint_id) {
                        failed.push((event.event_unique_id.clone(), d.endpoint_id.clone()));
                    }
                }
                std::ops::ControlFlow::Continue(())
            })
            .await
            .map_err(|e| AdminError::from(DispatchError::from(e)))?;
    }
    let mut views = Vec::new();
    for (event, endpoint) in failed {
        match admin.dispatcher.retrigger(&event, Some(&endpoint)).await {
            Ok(done) => views.extend(done.iter().map(|d| view(&event, d))),
            // Disabled since, or being attempted right now: left as they are.
            Err(
                DispatchError::EndpointDisabled { .. } | DispatchError::DeliveryInFlight { .. },
            ) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Json(views))
}
