//! A folder as the store (local disk or an NFS mount): the embedded default for development,
//! and a real option for sites that archive to a NAS. Writes go to a temporary name, are fsync'd,
//! then renamed, so a reader never sees half an object.

use crate::{Progress, Result, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn object(&self, key: &str) -> Result<PathBuf> {
        if key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(StoreError::Config(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    pub(crate) async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            std::fs::create_dir_all(&root).map_err(|e| unreachable(&root, e))?;
            let probe = root.join(".witness-probe");
            std::fs::write(&probe, b"ok").map_err(|e| unreachable(&root, e))?;
            let _ = std::fs::remove_file(probe);
            Ok(())
        })
        .await
    }

    /// Copies the sealed length of `path` in, hashing what it copies: a copy that is not the
    /// sealed SHA-256 is removed before it takes the object's name (nothing stored).
    pub(crate) async fn put_file(
        &self,
        key: &str,
        path: &Path,
        (size, sha256): (u64, &str),
        progress: &mut dyn Progress,
        throttle: &crate::Throttle,
    ) -> Result<()> {
        let dest = self.object(key)?;
        let (src, sealed) = (path.to_owned(), sha256.to_owned());
        let root = self.root.clone();
        let sent = blocking(move || {
            let parent = dest.parent().expect("object paths have a parent");
            std::fs::create_dir_all(parent).map_err(|e| unreachable(&root, e))?;
            let tmp = dest.with_extension("part");
            let mut out = std::fs::File::create(&tmp).map_err(|e| unreachable(&root, e))?;
            let copied = (|| {
                let mut inp = std::fs::File::open(&src).map_err(StoreError::Local)?.take(size);
                let (n, now) =
                    crate::sha256_read(&mut inp, |piece| out.write_all(piece).map_err(|e| unreachable(&root, e)))?;
                if n != size {
                    return Err(StoreError::ChangedSinceSealing {
                        path: src.display().to_string(),
                        now: n,
                        sealed: size,
                    });
                }
                if !now.eq_ignore_ascii_case(&sealed) {
                    return Err(StoreError::ContentChangedSinceSealing {
                        path: src.display().to_string(),
                        now,
                        sealed: sealed.clone(),
                    });
                }
                out.sync_all().map_err(|e| unreachable(&root, e))?;
                Ok(n)
            })();
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            let n = copied?;
            std::fs::rename(&tmp, &dest).map_err(|e| unreachable(&root, e))?;
            Ok(n)
        })
        .await?;
        progress.sent(sent);
        throttle.sent(sent).await;
        Ok(())
    }

    pub(crate) async fn verify(&self, key: &str, size: u64, sha256: &str) -> Result<()> {
        let path = self.object(key)?;
        if !path.exists() {
            return Err(StoreError::NotFound(key.to_owned()));
        }
        let (n, got) = crate::sha256_file(&path).await?;
        if n != size || got != sha256 {
            return Err(StoreError::Mismatch {
                key: key.to_owned(),
                detail: format!("{n} bytes sha256 {got}, expected {size} bytes sha256 {sha256}"),
            });
        }
        Ok(())
    }

    pub(crate) async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let dest = self.object(key)?;
        let root = self.root.clone();
        blocking(move || {
            std::fs::create_dir_all(dest.parent().expect("object paths have a parent"))
                .map_err(|e| unreachable(&root, e))?;
            let tmp = dest.with_extension("part");
            let mut f = std::fs::File::create(&tmp).map_err(|e| unreachable(&root, e))?;
            f.write_all(&data).and_then(|_| f.sync_all()).map_err(|e| unreachable(&root, e))?;
            std::fs::rename(&tmp, &dest).map_err(|e| unreachable(&root, e))
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let path = self.object(key)?;
        let key = key.to_owned();
        blocking(move || {
            std::fs::remove_file(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(key),
                _ => StoreError::Unreachable(e.to_string()),
            })
        })
        .await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.object(key)?;
        let key = key.to_owned();
        blocking(move || {
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(key),
                _ => StoreError::Unreachable(e.to_string()),
            })
        })
        .await
    }

    pub(crate) async fn get_small(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let got = self.get_range(key, 0, max.saturating_add(1)).await?;
        Ok((got.len() as u64 <= max).then_some(got))
    }

    pub(crate) async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.object(key)?;
        let key = key.to_owned();
        blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let err = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(key.clone()),
                _ => StoreError::Unreachable(e.to_string()),
            };
            let mut f = std::fs::File::open(&path).map_err(err)?;
            f.seek(SeekFrom::Start(offset)).map_err(err)?;
            let mut buf = Vec::new();
            f.take(len).read_to_end(&mut buf).map_err(err)?;
            Ok(buf)
        })
        .await
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(unreachable(&root, e)),
                };
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&root) {
                        let key = rel.to_string_lossy().into_owned();
                        if key.starts_with(&prefix) && !key.ends_with(".part") && !key.starts_with(".witness") {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

fn unreachable(root: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unreachable(format!("{}: {e}", root.display()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Other(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(u64);
    impl Progress for Count {
        fn part_done(&mut self, _: &crate::Resume) {}
        fn sent(&mut self, n: u64) {
            self.0 += n;
        }
    }

    #[tokio::test]
    async fn put_verify_list_get() {
        let tmp = std::env::temp_dir().join(format!("witness-dirstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let store = DirStore::new(tmp.join("store"));
        let src = tmp.join("src.cast");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(&src, b"hello").unwrap();
        let mut c = Count(0);
        let (_, sha) = crate::sha256_file(&src).await.unwrap();
        store.put_file("box/day/s1/r1.cast", &src, (5, &sha), &mut c, &crate::Throttle::new(0)).await.unwrap();
        assert_eq!(c.0, 5);
        store.verify("box/day/s1/r1.cast", 5, &sha).await.unwrap();
        assert!(matches!(store.verify("box/day/s1/r1.cast", 6, &sha).await, Err(StoreError::Mismatch { .. })));
        store.put_bytes("box/day/s1/manifest.json", b"{}".to_vec()).await.unwrap();
        assert_eq!(store.list("box/").await.unwrap(), vec!["box/day/s1/manifest.json", "box/day/s1/r1.cast"]);
        assert_eq!(store.get("box/day/s1/r1.cast").await.unwrap(), b"hello");
        assert!(matches!(store.get("box/nope").await, Err(StoreError::NotFound(_))));
        store.delete("box/day/s1/r1.cast").await.unwrap();
        assert!(matches!(store.delete("box/day/s1/r1.cast").await, Err(StoreError::NotFound(_))));
        assert_eq!(store.list("box/").await.unwrap(), vec!["box/day/s1/manifest.json"]);
        assert!(store.put_bytes("../escape", vec![]).await.is_err(), "keys cannot leave the folder");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
