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
        let ctx = || format!("write checkpoint {}", self.path.display());
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(Error::io(ctx()))?;
        writeln!(f, "{lsn}").map_err(Error::io(ctx()))?;
        f.sync_all().map_err(Error::io(ctx()))?;
        std::fs::rename(&tmp, &self.path).map_err(Error::io(ctx()))?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io(ctx()))?;
        self.last = Some(lsn);
        Ok(())
    }
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
