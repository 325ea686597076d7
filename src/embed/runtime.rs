//! ONNX Runtime, loaded once per process from a shared library the operator names.
//!
//! pg2qdrant links no inference engine: `ort` is built with `load-dynamic`, and the library is
//! `libonnxruntime.so` as PyPI's `onnxruntime` wheel carries it (`onnxruntime/capi/`;
//! `scripts/services.sh` fetches, checks and caches it). Which file: the embedder's `runtime`
//! setting, else `ORT_DYLIB_PATH` (ONNX Runtime's own variable). ONNX Runtime allows one
//! environment per process, so the first load wins and a later embedder asking for another file
//! is refused rather than silently given the first.

use crate::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The oldest ONNX Runtime this build talks to (`ort`'s `api-22` feature).
pub const MIN_VERSION: &str = "1.22";

const FIX: &str = "set the embedder's runtime (or ORT_DYLIB_PATH) to libonnxruntime.so from PyPI's onnxruntime wheel, version 1.22 or later (scripts/services.sh installs one under ~/.cache/pg2qdrant/onnxruntime)";

static LOADED: OnceLock<Mutex<Option<(PathBuf, ort::environment::Environment)>>> = OnceLock::new();

/// The library an embedder's `runtime` names, else `ORT_DYLIB_PATH`'s; `None` when neither.
pub fn library(runtime: Option<&Path>) -> Option<PathBuf> {
    match runtime {
        Some(p) => Some(p.to_path_buf()),
        None => std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    }
}

/// The process's ONNX Runtime environment, loading the [`library`] of `runtime` the first
/// time; `field` names the setting in errors.
pub fn environment(
    field: &str,
    runtime: Option<&Path>,
) -> Result<ort::environment::Environment, Error> {
    let Some(path) = library(runtime) else {
        return Err(Error::config(
            field,
            format!("no ONNX Runtime library named (nor ORT_DYLIB_PATH); {FIX}"),
        ));
    };
    let mut loaded = LOADED
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((first, env)) = loaded.as_ref() {
        return match first == &path {
            true => Ok(env.clone()),
            false => Err(Error::config(
                field,
                format!(
                    "ONNX Runtime is already loaded from {} in this process; {} cannot be loaded \
                     beside it: name the same library for every local embedder",
                    first.display(),
                    path.display()
                ),
            )),
        };
    }
    if !path.is_file() {
        return Err(Error::config(
            field,
            format!("{} does not exist; {FIX}", path.display()),
        ));
    }
    let env = ort::init_from(&path)
        .map_err(|e| Error::config(field, format!("{e}; {FIX}")))?
        .with_name("pg2qdrant")
        .build()
        .map_err(|e| Error::config(field, format!("{}: {e}; {FIX}", path.display())))?;
    *loaded = Some((path, env.clone()));
    Ok(env)
}
