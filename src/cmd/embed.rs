//! `pg2qdrant embed`: query vectors, computed exactly as the connector computes points'.

use super::{ConfigFile, Outcome};
use crate::config::Config;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub file: ConfigFile,
    /// The `[[embedders]]` name (default: the only one).
    #[arg(long, short)]
    pub embedder: Option<String>,
    /// Print each TEXT's BM25 query vector instead (`{"indices": [...], "values": [...]}`,
    /// for a `sparse_vectors` entry of kind = "bm25"; Qdrant applies the IDF).
    #[arg(long, conflicts_with = "embedder")]
    pub sparse: bool,
    #[arg(required = true)]
    pub text: Vec<String>,
}

impl Args {
    pub async fn execute(self, cfg: &Config) -> Result<Outcome, Error> {
        let mut out = String::new();
        if self.sparse {
            for t in &self.text {
                let q = crate::mapping::bm25::Bm25::query(t);
                let v = serde_json::json!({"indices": q.indices, "values": q.values});
                out.push_str(&format!("{v}\n"));
            }
        } else {
            for v in crate::embed::embed_texts(cfg, self.embedder.as_deref(), &self.text).await? {
                out.push_str(&serde_json::to_string(&v).expect("floats serialize"));
                out.push('\n');
            }
        }
        Ok(Outcome::done(out))
    }
}
