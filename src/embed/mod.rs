//! Embedders: text in, vectors out.
//!
//! An [`Embedder`] is called with a batch of inputs and returns one vector per input, in order.
//! Contract for implementations:
//! - the same input and the same [`Embedder::identity`] give the same vector (a point stores the
//!   identity and a hash of its input, so unchanged text is never embedded again);
//! - `Err` means nothing of the batch is usable; whether to retry is the error's
//!   [`crate::error::Error::disposition`] (a model that cannot load is definite, a busy service
//!   transient);
//! - calls may run concurrently from several tasks; an implementation bounds its own threads.
//!
//! `local` runs a BERT-family sentence model in-process (candle); the model files come from
//! a local directory only (`scripts/services.sh` fetches all-MiniLM-L6-v2).

pub mod local;

pub use local::LocalEmbedder;
