//! The durable floor for `emit_file`: the least work a durable emitter must do, with this
//! crate's `HttpSender`. Each ready-made body is written to a file and fsynced before its
//! emitter hears back, then POSTed by one of 64 long-lived sender tasks, whose outcome is written
//! and fsynced the same way. No event model, no index, no retries, no claims, an unbounded queue:
//! only the two durable writes per event that `FileLogStore` promises, group-committed (wait up
//! to 2 ms for four in five of the records the last commit answered, then write and fsync all
//! that have arrived at once).
//!
//! Its ratio to the bare loop says how far a durable emitter can get on this machine;
//! `emit_file` against it is the cost of everything else the crate does.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fermion_webhooks::sender::{DeliveryRequest, SendResult};
use fermion_webhooks::{HttpSender, Sender, WebhookSecret};
use tokio::sync::oneshot;

type Waiting = Vec<(Vec<u8>, oneshot::Sender<()>)>;

/// A file with one writer thread that fsyncs each batch before answering it.
struct GroupCommit {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

#[derive(Default)]
struct Queue {
    waiting: Waiting,
    closed: bool,
    /// The length that wakes the writer while it gathers; 0 when it does not.
    wake_at: usize,
}

const GATHER: Duration = Duration::from_millis(2);

impl GroupCommit {
    fn start(path: &Path) -> Arc<Self> {
        let log = Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
        });
        let mut file = std::fs::File::create(path).expect("a floor log");
        let writer = log.clone();
        let spawned = std::thread::Builder::new()
            .name("floor-log-writer".into())
            .spawn(move || {
                let (mut bytes, mut last) = (Vec::new(), 0);
                loop {
                    let batch = {
                        let mut queue = writer.queue.lock().expect("the floor queue");
                        while queue.waiting.is_empty() && !queue.closed {
                            queue = writer.arrived.wait(queue).expect("the floor queue");
                        }
                        if queue.waiting.is_empty() {
                            return;
                        }
                        let deadline = Instant::now() + GATHER;
                        let want = last - last / 5;
                        while queue.waiting.len() < want && !queue.closed {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            queue.wake_at = want;
                            queue = writer
                                .arrived
                                .wait_timeout(queue, left)
                                .expect("the floor queue")
                                .0;
                        }
                        queue.wake_at = 0;
                        std::mem::take(&mut queue.waiting)
                    };
                    last = batch.len();
                    bytes.clear();
                    for (line, _) in &batch {
                        bytes.extend_from_slice(line);
                    }
                    file.write_all(&bytes).expect("a floor write");
                    file.sync_data().expect("a floor fsync");
                    for (_, reply) in batch {
                        let _ = reply.send(());
                    }
                }
            });
        spawned.expect("the floor's writer thread");
        log
    }

    async fn append(&self, line: Vec<u8>) {
        let (reply, done) = oneshot::channel();
        {
            let mut queue = self.queue.lock().expect("the floor queue");
            queue.waiting.push((line, reply));
            if queue.waiting.len() == 1 || queue.waiting.len() == queue.wake_at {
                self.arrived.notify_one();
            }
        }
        let _ = done.await;
    }

    fn stop(&self) {
        self.queue.lock().expect("the floor queue").closed = true;
        self.arrived.notify_one();
    }
}

/// Events per second: 64 emitters append each body durably and queue it; 64 senders POST it
/// with `HttpSender` and append the outcome durably.
pub async fn durable_floor(
    url: &str,
    bodies: Arc<Vec<String>>,
    received: &Arc<AtomicUsize>,
    dir: &Path,
    in_flight: usize,
    secret: &str,
) -> f64 {
    let client = Arc::new(
        HttpSender::builder()
            .allow_private_networks(true)
            .build()
            .expect("a sender"),
    );
    let secret = Arc::new(WebhookSecret::new(secret).expect("a secret"));
    let log = GroupCommit::start(&dir.join("floor.jsonl"));
    let (queue, ready) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let ready = Arc::new(tokio::sync::Mutex::new(ready));
    let next = Arc::new(AtomicUsize::new(0));
    received.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let emitters: Vec<_> = (0..in_flight)
        .map(|_| {
            let (log, bodies, next, queue) =
                (log.clone(), bodies.clone(), next.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let mut line = Vec::with_capacity(body.len() + 64);
                    line.extend_from_slice(b"{\"record\":\"event\",\"body\":");
                    line.extend_from_slice(body.as_bytes());
                    line.extend_from_slice(b"}\n");
                    log.append(line).await;
                    let _ = queue.send(i);
                }
            })
        })
        .collect();
    drop(queue);
    let senders: Vec<_> = (0..in_flight)
        .map(|_| {
            let (log, bodies, ready, client, secret) = (
                log.clone(),
                bodies.clone(),
                ready.clone(),
                client.clone(),
                secret.clone(),
            );
            let url = url.to_owned();
            tokio::spawn(async move {
                loop {
                    let Some(i) = ready.lock().await.recv().await else {
                        break;
                    };
                    let request = DeliveryRequest::new(&url, &secret, bodies[i].as_bytes(), "");
                    let status = match client.send(request).await.result {
                        SendResult::Response { status, .. } => status,
                        _ => 0,
                    };
                    let line = format!(
                        "{{\"record\":\"attempt\",\"event\":{i},\"status\":{status},\"at\":{}}}\n",
                        start.elapsed().as_micros()
                    );
                    log.append(line.into_bytes()).await;
                }
            })
        })
        .collect();
    for task in emitters.into_iter().chain(senders) {
        let _ = task.await;
    }
    while received.load(Ordering::Relaxed) < bodies.len() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let rate = bodies.len() as f64 / start.elapsed().as_secs_f64();
    super::threads::mark_end();
    log.stop();
    rate
}
