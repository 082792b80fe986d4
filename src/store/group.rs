//! Group commit for a log on a database server: writes asked for while earlier ones are being
//! written are sent together, one statement and one commit for the lot, instead of a
//! statement, a round trip and a commit each. At 64 concurrent emits, that is what the
//! server's time goes to, more than the rows themselves.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// At most this many writes go into one statement.
const MAX_BATCH: usize = 128;

/// At most this many statements are being written at once, each on a connection of its own:
/// the next batch fills while one commits.
const MAX_WRITERS: usize = 2;

/// Writes of type `W` waiting to be sent, each answered with an `A`.
pub(crate) struct Group<W, A> {
    state: Arc<Mutex<Queue<W, A>>>,
}

struct Queue<W, A> {
    waiting: Vec<(W, oneshot::Sender<A>)>,
    writers: usize,
}

impl<W, A> Default for Group<W, A> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                writers: 0,
            })),
        }
    }
}

/// A clone shares the queue: the store's clones batch together.
impl<W, A> Clone for Group<W, A> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<W, A> std::fmt::Debug for Group<W, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl<W: Send + 'static, A: Send + 'static> Group<W, A> {
    /// Queues `write` and waits for its answer. Unless enough writers are busy already, starts
    /// one: a task that takes what is queued, hands it to `send`, answers each write with the
    /// answer in the same place, and does so again until nothing waits. The task runs on its
    /// own, so a caller that stops waiting takes nobody's batch down with it.
    ///
    /// `None` when the batch's task ended without an answer (it panicked).
    pub(crate) async fn submit<S, F>(&self, write: W, send: S) -> Option<A>
    where
        S: Fn(Vec<W>) -> F + Send + 'static,
        F: Future<Output = Vec<A>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push((write, reply));
            let start = queue.writers < MAX_WRITERS;
            queue.writers += usize::from(start);
            start
        };
        if start {
            tokio::spawn(drain(self.state.clone(), send));
        }
        answer.await.ok()
    }
}

/// One writer: batches until the queue is empty.
async fn drain<W, A, S, F>(state: Arc<Mutex<Queue<W, A>>>, send: S)
where
    S: Fn(Vec<W>) -> F,
    F: Future<Output = Vec<A>>,
{
    // Counted out however the task ends, so a panic in `send` does not leave the group
    // thinking a writer is still at work.
    let mut writer = Writer(Some(&state));
    loop {
        let batch: Vec<_> = {
            let mut queue = state.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                // Under the lock that queued the last write: a write queued after this
                // starts a writer of its own.
                queue.writers -= 1;
                writer.0 = None;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..take).collect()
        };
        let (writes, replies): (Vec<W>, Vec<_>) = batch.into_iter().unzip();
        let answers = send(writes).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// A writer counted in its group until dropped or done.
struct Writer<'a, W, A>(Option<&'a Mutex<Queue<W, A>>>);

impl<W, A> Drop for Writer<'_, W, A> {
    fn drop(&mut self) {
        if let Some(state) = self.0 {
            let mut queue = state.lock().unwrap_or_else(PoisonError::into_inner);
            queue.writers -= 1;
            // The writer stopped before the queue was empty: its batch panicked, or its
            // runtime is shutting down. With no other writer left, nobody would answer the
            // writes still waiting; they hear so now rather than wait for ever.
            if queue.writers == 0 {
                queue.waiting.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Sends a batch by doubling each write; a write of 0 is a bug that panics.
    fn doubling(batches: Arc<AtomicUsize>) -> impl Fn(Vec<u32>) -> std::future::Ready<Vec<u32>> {
        move |batch: Vec<u32>| {
            batches.fetch_add(1, Ordering::SeqCst);
            assert!(!batch.contains(&0), "a write of 0");
            std::future::ready(batch.iter().map(|w| w * 2).collect())
        }
    }

    #[tokio::test]
    async fn writes_made_at_once_are_sent_in_a_batch_per_writer_and_each_gets_its_answer() {
        let group: Group<u32, u32> = Group::default();
        let batches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (1..=50)
            .map(|w| {
                let (group, send) = (group.clone(), doubling(batches.clone()));
                tokio::spawn(async move { group.submit(w, send).await })
            })
            .collect();
        for (w, task) in (1..=50).zip(tasks) {
            assert_eq!(task.await.unwrap(), Some(w * 2));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!((1..=MAX_WRITERS).contains(&batches), "{batches} batches");
    }

    #[tokio::test]
    async fn a_batch_that_panics_answers_nothing_and_later_writes_still_go_through() {
        let group: Group<u32, u32> = Group::default();
        let batches = Arc::new(AtomicUsize::new(0));
        assert_eq!(group.submit(0, doubling(batches.clone())).await, None);
        assert_eq!(group.submit(0, doubling(batches.clone())).await, None);
        // Were the panicked writers still counted, this write would find no writer free and
        // wait for ever.
        let later = group.submit(21, doubling(batches.clone()));
        let later = tokio::time::timeout(std::time::Duration::from_secs(10), later).await;
        assert_eq!(later.expect("an answer"), Some(42));
    }
}
