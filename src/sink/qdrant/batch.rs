//! The write request itself, sent as `/qdrant.Points/UpdateBatch` over our own channel.
//!
//! qdrant-client's `update_points_batch` clones the whole request (every vector and payload of
//! the batch) before sending it, for the retry wrapper around its channel pool; the profile of a
//! 384-float stream showed that copy and its allocations. The destination retries on its own
//! (`pipeline::to_qdrant`), so the request is encoded once per attempt, straight from the
//! documents (`encode`). The channel is made from the same settings as the `Qdrant` client (URL,
//! TLS for `https`, timeouts, API key as the `api-key` header) and connects lazily, reconnecting
//! after a failure.
//!
//! The request goes out as one gRPC frame in a buffer of our own: the frame's five-byte header
//! (not compressed, the length), then the encoded request. tonic's client would copy those bytes
//! into a fresh buffer of its own for every request (its codec encodes into its buffer); a batch
//! of 256 rows of 384 floats is about 430 KB, and memory that large, freed between batches, came
//! back as fresh pages the kernel zeroes for every request. So the buffer is handed to the HTTP/2
//! stack as it is, and taken back for the next request once the answer is in: by then the server
//! has read the whole request, so nothing else holds it (when something still does, the buffer
//! is simply left to be freed). The answer is read the way tonic's own client reads it
//! (`Status` from the headers or trailers, the one message decoded by prost), so errors are the
//! same `Status` codes as before, and `error` classifies them as before.

use super::encode::Update;
use crate::error::Error;
use bytes::{BufMut, Bytes, BytesMut};
use qdrant_client::qdrant::UpdateBatchResponse;
use qdrant_client::{Qdrant, QdrantError};
use std::sync::{Arc, Mutex};
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{http, Service};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

/// The gRPC frame's header: the compressed flag (0), then the message's length (big-endian u32).
const FRAME_HEADER: usize = 5;
/// Buffers kept for reuse: one per write in flight (`qdrant.parallel`, 2 by default) is
/// enough; a few more cover retries overlapping a write.
const KEEP_BUFFERS: usize = 4;
/// A buffer larger than this (a batch of very large rows) is freed, not kept: at most
/// `KEEP_BUFFERS` × 8 MiB stay allocated between batches.
const KEEP_CAPACITY: usize = 8 << 20;

#[derive(Clone)]
pub struct BatchWriter {
    channel: Channel,
    api_key: Option<http::HeaderValue>,
    buffers: Arc<Mutex<Vec<BytesMut>>>,
}

impl BatchWriter {
    /// A writer with the settings of `client`.
    pub fn new(client: &Qdrant) -> Result<Self, Error> {
        let cfg = &client.config;
        let bad = |what: String| {
            Error::prerequisite(
                format!("qdrant.url {:?}: {what}", cfg.uri),
                "use http://host:6334 (or https://) for the gRPC port",
            )
        };
        let mut endpoint = Endpoint::from_shared(cfg.uri.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .keep_alive_while_idle(cfg.keep_alive_while_idle);
        if cfg.uri.starts_with("https") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let api_key = match &cfg.api_key {
            Some(k) => {
                let mut v = http::HeaderValue::from_str(k).map_err(|_| {
                    Error::config("qdrant.api_key", "is not a valid header value".to_owned())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            channel: endpoint.connect_lazy(),
            api_key,
            buffers: Arc::default(),
        })
    }

    /// Applies `updates` to `collection` in order and waits until they are applied. The
    /// request is encoded from the documents (see `encode`) and sent as `UpdateBatch`.
    pub async fn write(&self, collection: &str, updates: &[Update<'_>]) -> Result<(), QdrantError> {
        let frame = self.frame(collection, updates)?;
        let answer = self.call(frame.clone()).await;
        self.give_back(frame);
        answer.map_err(QdrantError::from)
    }

    /// The request as one gRPC frame, in a buffer taken from the pool.
    fn frame(&self, collection: &str, updates: &[Update<'_>]) -> Result<Bytes, Status> {
        let mut buf = self
            .buffers
            .lock()
            .expect("buffer pool lock")
            .pop()
            .unwrap_or_default();
        buf.clear();
        buf.put_bytes(0, FRAME_HEADER);
        super::encode::request(collection, updates, &mut buf);
        let len = u32::try_from(buf.len() - FRAME_HEADER).map_err(|_| {
            Status::resource_exhausted(format!(
                "a write request of {} bytes is over gRPC's 4 GiB: lower qdrant.batch_size",
                buf.len()
            ))
        })?;
        buf[1..FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Keeps `frame`'s buffer for the next request if nothing else holds it any more.
    fn give_back(&self, frame: Bytes) {
        if let Ok(buf) = frame.try_into_mut() {
            let mut pool = self.buffers.lock().expect("buffer pool lock");
            if pool.len() < KEEP_BUFFERS && buf.capacity() <= KEEP_CAPACITY {
                pool.push(buf);
            }
        }
    }

    /// Sends one frame and reads the answer as tonic's unary client does.
    async fn call(&self, frame: Bytes) -> Result<(), Status> {
        let body = tonic::body::Body::new(http_body_util::Full::new(frame));
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri("/qdrant.Points/UpdateBatch")
            .version(http::Version::HTTP_2)
            .header(http::header::TE, "trailers")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(body)
            .map_err(|e| Status::internal(format!("write request: {e}")))?;
        if let Some(k) = &self.api_key {
            request.headers_mut().insert("api-key", k.clone());
        }
        let mut channel = self.channel.clone();
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|e| Status::from_error(Box::new(e)))?;
        let response = channel
            .call(request)
            .await
            .map_err(|e| Status::from_error(Box::new(e)))?;
        // A status in the headers: a trailers-only answer (an error, or no message).
        let status = response.status();
        let trailers_only = Status::from_header_map(response.headers());
        if let Some(s) = &trailers_only {
            if s.code() != tonic::Code::Ok {
                return Err(s.clone());
            }
            return Err(Status::internal("Missing response message."));
        }
        let decoder = tonic_prost::ProstCodec::<(), UpdateBatchResponse>::default().decoder();
        let mut body = Streaming::new_response(
            decoder,
            response.into_body(),
            status,
            None,
            Some(usize::MAX),
        );
        body.message()
            .await?
            .ok_or_else(|| Status::internal("Missing response message."))?;
        body.trailers().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> BatchWriter {
        let client = Qdrant::from_url("http://127.0.0.1:1").build().unwrap();
        BatchWriter::new(&client).unwrap()
    }

    /// One gRPC frame: not compressed, the request's length, the request; a buffer given back
    /// unshared is reused by the next request, one still held elsewhere is not.
    #[tokio::test]
    async fn frames_are_one_grpc_message_in_a_reused_buffer() {
        use prost::Message as _;
        let w = writer();
        let frame = w.frame("a collection", &[]).unwrap();
        assert_eq!(frame[0], 0, "not compressed");
        let len = u32::from_be_bytes(frame[1..FRAME_HEADER].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - FRAME_HEADER);
        let decoded =
            qdrant_client::qdrant::UpdateBatchPoints::decode(&frame[FRAME_HEADER..]).unwrap();
        assert_eq!(decoded.collection_name, "a collection");
        assert_eq!(decoded.wait, Some(true));

        // A shorter request fits in what the first one left, so it must reuse that allocation.
        let at = frame.as_ptr();
        w.give_back(frame);
        let again = w.frame("c", &[]).unwrap();
        assert_eq!(again.as_ptr(), at, "the same allocation, reused");
        let decoded =
            qdrant_client::qdrant::UpdateBatchPoints::decode(&again[FRAME_HEADER..]).unwrap();
        assert_eq!(
            decoded.collection_name, "c",
            "nothing of the last request left"
        );

        let held = again.clone();
        w.give_back(again);
        assert!(w.buffers.lock().unwrap().is_empty(), "still held: not kept");
        drop(held);
    }
}
