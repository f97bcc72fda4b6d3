//! Embedded secrets: a redb file of XChaCha20-Poly1305 ciphertexts under a local master key
//! (`master.key` beside it, created 0600 on first use). The secret's name is the associated
//! data, so a ciphertext moved to another name fails to decrypt instead of leaking.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use secrecy::{ExposeSecret, SecretString};

use super::{SecretError, SecretResult, SecretStore, check_name};

const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const NONCE_LEN: usize = 24;

pub struct EmbeddedSecrets {
    db: Arc<Database>,
    cipher: Arc<XChaCha20Poly1305>,
}

fn backend<E: std::fmt::Display>(err: E) -> SecretError {
    SecretError::Backend(err.to_string())
}

fn load_or_create_master_key(path: &Path) -> SecretResult<[u8; 32]> {
    if let Ok(bytes) = std::fs::read(path) {
        let len = bytes.len();
        return bytes.try_into().map_err(|_| {
            SecretError::Backend(format!(
                "{} holds {len} bytes, not a 32-byte master key: put the right master.key back, or move this one away to start with a new key (the secrets sealed under the old one then cannot be read)",
                path.display()
            ))
        });
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(backend)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, &key).map_err(backend)?;
            file.sync_all().map_err(backend)?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_master_key(path),
        Err(e) => Err(backend(e)),
    }
}

impl EmbeddedSecrets {
    /// Opens `dir/secrets.redb`, keyed by `dir/master.key`.
    pub fn open(dir: &Path) -> SecretResult<Self> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let key = load_or_create_master_key(&dir.join("master.key"))?;
        let db = Database::create(dir.join("secrets.redb")).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(SECRETS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db), cipher: Arc::new(XChaCha20Poly1305::new((&key).into())) })
    }

    pub fn file_path(dir: &Path) -> PathBuf {
        dir.join("secrets.redb")
    }

    fn seal(&self, name: &str, value: &SecretString) -> SecretResult<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(backend)?;
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.expose_secret().as_bytes(), aad: name.as_bytes() })
            .map_err(|_| SecretError::Backend("encryption failed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open_sealed(&self, name: &str, bytes: &[u8]) -> SecretResult<SecretString> {
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Backend(format!("stored secret {name} is truncated")));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: name.as_bytes() })
            .map_err(|_| SecretError::Backend(format!("secret {name} does not decrypt with this master key")))?;
        let text = String::from_utf8(plain).map_err(|_| SecretError::Backend(format!("secret {name} is not UTF-8")))?;
        Ok(SecretString::from(text))
    }

    /// Writes `value` under `name`; with `only_new`, leaves an existing secret alone.
    async fn write(&self, name: &str, value: &SecretString, only_new: bool) -> SecretResult<bool> {
        check_name(name)?;
        let sealed = self.seal(name, value)?;
        let db = self.db.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(backend)?;
            let written = {
                let mut table = txn.open_table(SECRETS).map_err(backend)?;
                if only_new && table.get(name.as_str()).map_err(backend)?.is_some() {
                    false
                } else {
                    table.insert(name.as_str(), sealed.as_slice()).map_err(backend)?;
                    true
                }
            };
            txn.commit().map_err(backend)?;
            Ok(written)
        })
        .await
        .map_err(backend)?
    }
}

#[async_trait]
impl SecretStore for EmbeddedSecrets {
    async fn get(&self, name: &str) -> SecretResult<Option<SecretString>> {
        check_name(name)?;
        let db = self.db.clone();
        let key = name.to_string();
        let bytes = tokio::task::spawn_blocking(move || -> SecretResult<Option<Vec<u8>>> {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SECRETS).map_err(backend)?;
            Ok(table.get(key.as_str()).map_err(backend)?.map(|g| g.value().to_vec()))
        })
        .await
        .map_err(backend)??;
        bytes.map(|b| self.open_sealed(name, &b)).transpose()
    }

    async fn create(&self, name: &str, value: &SecretString) -> SecretResult<bool> {
        self.write(name, value, true).await
    }

    async fn put(&self, name: &str, value: &SecretString) -> SecretResult<()> {
        self.write(name, value, false).await.map(|_| ())
    }

    async fn delete(&self, name: &str) -> SecretResult<()> {
        check_name(name)?;
        let db = self.db.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(SECRETS).map_err(backend)?.remove(name.as_str()).map_err(backend)?;
            txn.commit().map_err(backend)
        })
        .await
        .map_err(backend)?
    }
}
