//! Texts of concurrent callers embedded in one call: the writer has up to two batches in flight,
//! and each asks for its texts' vectors on its own; a local model that embeds them separately
//! orders and pads each batch by itself. [`Gathered`] puts an embedder behind a queue: while a
//! call runs, the requests that arrive wait, and the next call takes all of them at once (up to
//! `max_texts`), so the model orders the texts of several transactions by length together and
//! fills its passes. Nothing waits on a timer: an idle model starts at once (no latency is
//! added), a busy one gathers.
//!
//! Contract kept from [`Embedder`]: each caller gets its own texts' vectors in its own order. A
//! transient failure of a gathered call is every caller's; a definite one is not blamed on
//! everyone: each request is then embedded alone, so only the caller whose input is at fault
//! sees `Definite`.

use super::{EmbedError, Embedded, Embedder};
use futures_util::future::BoxFuture;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embedded, EmbedError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    /// A worker task is taking the queue.
    running: bool,
}

pub struct Gathered {
    inner: Arc<dyn Embedder>,
    queue: Mutex<Queue>,
    max_texts: usize,
}

impl Gathered {
    /// `inner` behind a queue; one call takes at most `max_texts` texts (more when one request
    /// alone has more).
    pub fn new(inner: Arc<dyn Embedder>, max_texts: usize) -> Self {
        Self {
            inner,
            queue: Mutex::new(Queue::default()),
            max_texts: max_texts.max(1),
        }
    }

    /// The requests of the next call: the oldest, and those after it while they fit.
    fn take(&self) -> Vec<Request> {
        let mut q = self.queue.lock().expect("gather queue");
        let mut n = 0;
        let count = q
            .waiting
            .iter()
            .take_while(|r| {
                let fits = n == 0 || n + r.texts.len() <= self.max_texts;
                n += r.texts.len();
                fits
            })
            .count();
        let taken: Vec<Request> = q.waiting.drain(..count).collect();
        if taken.is_empty() {
            q.running = false;
        }
        taken
    }

    /// Runs calls until the queue is empty (one task at a time, see `running`).
    async fn work(self: Arc<Self>) {
        loop {
            let taken = self.take();
            if taken.is_empty() {
                return;
            }
            let sizes: Vec<usize> = taken.iter().map(|r| r.texts.len()).collect();
            let (texts, replies): (Vec<Vec<String>>, Vec<_>) =
                taken.into_iter().map(|r| (r.texts, r.reply)).unzip();
            if texts.len() == 1 {
                let result = self.inner.clone().embed_batch(texts.concat()).await;
                let _ = replies.into_iter().next().expect("one").send(result);
                continue;
            }
            match self.inner.clone().embed_batch(texts.concat()).await {
                Ok(Embedded { vectors, truncated })
                    if vectors.len() == sizes.iter().sum::<usize>() =>
                {
                    // The cut inputs are counted once (a metric), on the first caller.
                    let mut truncated = Some(truncated);
                    let mut vectors = vectors.into_iter();
                    for (n, reply) in sizes.into_iter().zip(replies) {
                        let _ = reply.send(Ok(Embedded {
                            vectors: vectors.by_ref().take(n).collect(),
                            truncated: truncated.take().unwrap_or(0),
                        }));
                    }
                }
                Err(e @ EmbedError::Transient { .. }) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                // Refused (or a wrong count): each request on its own finds whose input it was.
                _ => {
                    for (texts, reply) in texts.into_iter().zip(replies) {
                        let _ = reply.send(self.inner.clone().embed_batch(texts).await);
                    }
                }
            }
        }
    }
}

impl Embedder for Gathered {
    fn identity(&self) -> &str {
        self.inner.identity()
    }

    fn dimensions(&self) -> Option<usize> {
        self.inner.dimensions()
    }

    fn embed_batch(
        self: Arc<Self>,
        texts: Vec<String>,
    ) -> BoxFuture<'static, Result<Embedded, EmbedError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            let start = {
                let mut q = self.queue.lock().expect("gather queue");
                q.waiting.push(Request { texts, reply });
                !std::mem::replace(&mut q.running, true)
            };
            if start {
                // Ends when the queue is empty; a caller that goes away only loses its reply.
                tokio::spawn(self.clone().work());
            }
            rx.await.unwrap_or_else(|_| {
                Err(EmbedError::Transient {
                    reason: "the embedder's worker stopped".into(),
                    retry_after: None,
                })
            })
        })
    }
}
