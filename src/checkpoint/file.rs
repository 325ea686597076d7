//! A local checkpoint file: `X/Y` plus newline, replaced atomically (write temp, fsync, rename,
//! fsync directory), never moved backwards.

use super::CheckpointStore;
use crate::error::Error;
use crate::lsn::{parse_lsn, Lsn};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct FileCheckpoint {
    path: PathBuf,
    last: Option<Lsn>,
}

impl FileCheckpoint {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut cp = Self {
            path: path.to_owned(),
            last: None,
        };
        cp.last = cp.load()?;
        Ok(cp)
    }
}

impl CheckpointStore for FileCheckpoint {
    fn load(&self) -> Result<Option<Lsn>, Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => parse_lsn(&s).map(Some).map_err(|e| {
                Error::config(
                    "checkpoint.path",
                    format!("{} holds {e}; fix or delete it (the slot's confirmed LSN is used without it)", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read checkpoint {}", self.path.display()))(e)),
        }
    }

    fn store(&mut self, lsn: Lsn) -> Result<(), Error> {
        if self.last.is_some_and(|l| lsn <= l) {
            return Ok(());
        }
        crate::blocking::off_runtime(|| {
            write_atomically(&self.path, format!("{lsn}\n").as_bytes())
        })
        .map_err(Error::io(format!(
            "write checkpoint {}",
            self.path.display()
        )))?;
        self.last = Some(lsn);
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content, never a
/// mix: write a temporary file, fsync it, rename it over `path`, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_moves_backwards_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("pg2qdrant-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cp");
        let _ = std::fs::remove_file(&path);
        let mut cp = FileCheckpoint::open(&path).unwrap();
        assert_eq!(cp.load().unwrap(), None);
        cp.store(Lsn(0x200)).unwrap();
        cp.store(Lsn(0x100)).unwrap();
        assert_eq!(
            FileCheckpoint::open(&path).unwrap().load().unwrap(),
            Some(Lsn(0x200))
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(FileCheckpoint::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
