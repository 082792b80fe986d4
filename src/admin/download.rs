//! `GET /export`: the tenant's events as a CSV or JSON-lines download, streamed in constant
//! memory however many rows.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::events::{EventsQuery, endpoints_of};
use super::routes::tenant;
use super::{Admin, AdminError};
use crate::export::{ExportOptions, export_csv, export_jsonl};

/// `GET /export` parameters.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    event_type: Option<String>,
    status: Option<String>,
    test: Option<bool>,
    endpoint: Option<String>,
    /// `csv` (the default) or `jsonl`.
    format: Option<String>,
}

/// How much is written before a chunk goes out, and how many chunks may wait for the client.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_WAITING: usize = 4;

pub(super) async fn export(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let Query(query) = query.map_err(|e| AdminError::invalid(e.body_text()))?;
    let jsonl = match query.format.as_deref() {
        None | Some("csv") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(AdminError::invalid(format!(
                "format {other:?} is not csv or jsonl"
            )));
        }
    };
    let mut endpoints = endpoints_of(&admin, &tenant, query.endpoint.as_deref())?;
    // A tenant without endpoints has no events; an empty list would mean every event, so it
    // gets an id no endpoint has (ids are never empty).
    if endpoints.is_empty() {
        endpoints.push(String::new());
    }
    let filter = EventsQuery::for_export(
        query.from,
        query.to,
        query.event_type,
        query.status,
        query.test,
    )
    .filter(endpoints)?;
    let (to_body, receiver) = tokio::sync::mpsc::channel(CHUNKS_WAITING);
    let (sender, chunks) = std::sync::mpsc::sync_channel(CHUNKS_WAITING);
    let store = admin.dispatcher.store().clone();
    let runtime = tokio::runtime::Handle::current();
    // The export writes synchronously into a buffer on a thread of its own; whole chunks wait
    // in small channels for the client, so a slow download holds the export back instead of
    // filling memory. (The export's thread runs inside the runtime, where tokio's channels may
    // not block: a second thread hands the chunks over.)
    tokio::task::spawn_blocking(move || {
        while let Ok(chunk) = chunks.recv() {
            if to_body.blocking_send(chunk).is_err() {
                return; // the client went away
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            buffer: Vec::with_capacity(CHUNK_BYTES),
            sender,
        };
        let exported = if jsonl {
            runtime.block_on(export_jsonl(&*store, &filter, &mut out, &mut |_| {}))
        } else {
            let options = ExportOptions::default();
            runtime.block_on(export_csv(
                &*store,
                &filter,
                &mut out,
                &options,
                &mut |_| {},
            ))
        };
        if let Err(error) = exported {
            tracing::error!(error = %crate::error_chain(&error), "an export download failed");
            // The client sees the download break off rather than end as if complete.
            let _ = out.sender.send(Err(std::io::Error::other("export failed")));
            return;
        }
        let _ = out.flush();
    });
    let (content_type, name) = if jsonl {
        ("application/x-ndjson", "fermion-events.jsonl")
    } else {
        ("text/csv; charset=utf-8", "fermion-events.csv")
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::new(Chunks(receiver)),
    )
        .into_response())
}

/// Collects writes into chunks and sends each whole one.
struct ChunkWriter {
    buffer: Vec<u8>,
    sender: std::sync::mpsc::SyncSender<Result<Bytes, std::io::Error>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.sender
            .send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the download was closed"))
    }
}

/// The chunks as a response body.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(context)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}
