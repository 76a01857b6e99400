//! A cache of compiled components on disk.
//!
//! `Component::deserialize` runs native code from the bytes it is given, so it must only
//! ever see bytes this runner compiled itself. Each artifact is therefore sealed with an
//! HMAC under a per-user secret key kept in the cache folder (mode 0600): a file dropped
//! or altered by anyone without that key fails the check and is recompiled, never loaded.
//! Entries are keyed by the component's SHA-256 and the engine's compatibility hash, so a
//! runner with other settings (fuel, wasmtime version) never picks up a stale artifact.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache-key";
const TAG_LEN: usize = 32;

/// The on-disk cache of compiled artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// The SHA-256 of a component's bytes, as lowercase hex: the component's identity.
pub fn component_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the artifact cache folder {}: {e} (set --cache-dir or SPOTMILL_CACHE_DIR)", dir.display())
        })?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// The default folder: `$SPOTMILL_CACHE_DIR`, else `$XDG_CACHE_HOME/spotmill`, else
    /// `~/.cache/spotmill`, else a folder under the system temp dir.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SPOTMILL_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(dir).join("spotmill");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".cache").join("spotmill");
        }
        std::env::temp_dir().join("spotmill-cache")
    }

    fn path_for(&self, component_hash: &str, engine_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{component_hash}-{engine_hash}.cwasm"))
    }

    /// The artifact for this component and engine, if present and sealed by this key.
    pub fn load(&self, component_hash: &str, engine_hash: &str) -> Option<Vec<u8>> {
        let sealed = fs::read(self.path_for(component_hash, engine_hash)).ok()?;
        if sealed.len() < TAG_LEN {
            return None;
        }
        let (tag, artifact) = sealed.split_at(TAG_LEN);
        let mut mac = self.mac(component_hash, engine_hash);
        mac.update(artifact);
        mac.verify_slice(tag).ok()?;
        Some(artifact.to_vec())
    }

    /// Stores an artifact, sealed; written to a temporary file and renamed so a reader
    /// never sees half a file. Failing to store only costs a recompile later.
    pub fn store(
        &self,
        component_hash: &str,
        engine_hash: &str,
        artifact: &[u8],
    ) -> std::io::Result<()> {
        let mut mac = self.mac(component_hash, engine_hash);
        mac.update(artifact);
        let tag = mac.finalize().into_bytes();
        let path = self.path_for(component_hash, engine_hash);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&tag)?;
            file.write_all(artifact)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)
    }

    fn mac(&self, component_hash: &str, engine_hash: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Bind the tag to its name, so a valid artifact cannot be renamed into another slot.
        mac.update(component_hash.as_bytes());
        mac.update(b"/");
        mac.update(engine_hash.as_bytes());
        mac.update(b"/");
        mac
    }
}

fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if let Ok(bytes) = fs::read(path) {
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(key);
        }
    }
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write the cache key {}: {e}", tmp.display()))?;
    file.write_all(&key)?;
    file.sync_all()?;
    // Two runners starting at once: the first rename wins and both read it back.
    fs::rename(&tmp, path)?;
    let stored = fs::read(path)?;
    <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "the cache key {} is not 32 bytes; delete it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_only_what_it_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path()).unwrap();
        cache.store("abc", "e1", b"artifact bytes").unwrap();
        assert_eq!(cache.load("abc", "e1").unwrap(), b"artifact bytes");
        // Another engine hash is another slot.
        assert!(cache.load("abc", "e2").is_none());

        // Tampering with the artifact breaks the seal.
        let path = dir.path().join("abc-e1.cwasm");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.load("abc", "e1").is_none());

        // A file written by someone without the key is refused too.
        fs::write(dir.path().join("def-e1.cwasm"), [0u8; 64]).unwrap();
        assert!(cache.load("def", "e1").is_none());

        // A sealed artifact copied into another component's slot is refused.
        cache.store("abc", "e1", b"artifact bytes").unwrap();
        fs::copy(&path, dir.path().join("xyz-e1.cwasm")).unwrap();
        assert!(cache.load("xyz", "e1").is_none());
    }

    #[test]
    fn the_key_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        ArtifactCache::open(dir.path())
            .unwrap()
            .store("a", "b", b"x")
            .unwrap();
        assert_eq!(
            ArtifactCache::open(dir.path())
                .unwrap()
                .load("a", "b")
                .unwrap(),
            b"x"
        );
    }
}
