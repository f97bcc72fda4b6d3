//! One conformance suite for both secret stores, plus what only the embedded one promises:
//! encryption at rest under its master key.

use secrecy::{ExposeSecret, SecretString};
use tollgate::secrets::{EmbeddedSecrets, SecretError, SecretStore};
use tollgate_tests::{backend_tests, secrets_for};

fn s(v: &str) -> SecretString {
    SecretString::from(v.to_string())
}

backend_tests! {
    async fn create_get_put_delete(backend) {
        let (secrets, _dir) = secrets_for(backend).await;
        assert!(secrets.get("models/gpt").await.unwrap().is_none());
        assert!(secrets.create("models/gpt", &s("sk-one")).await.unwrap());
        assert!(!secrets.create("models/gpt", &s("sk-two")).await.unwrap(), "create must not replace");
        assert_eq!(secrets.get("models/gpt").await.unwrap().unwrap().expose_secret(), "sk-one");
        secrets.put("models/gpt", &s("sk-three")).await.unwrap();
        assert_eq!(secrets.get("models/gpt").await.unwrap().unwrap().expose_secret(), "sk-three");
        secrets.put("providers/new", &s("fresh")).await.unwrap();
        assert_eq!(secrets.get("providers/new").await.unwrap().unwrap().expose_secret(), "fresh");
        secrets.delete("models/gpt").await.unwrap();
        assert!(secrets.get("models/gpt").await.unwrap().is_none());
        secrets.delete("models/gpt").await.unwrap();
        assert!(matches!(secrets.get("bad name!").await, Err(SecretError::InvalidName(_))));
    }

    async fn concurrent_creates_agree_on_one_value(backend) {
        let (secrets, _dir) = secrets_for(backend).await;
        let tasks: Vec<_> = (0..8).map(|i| {
            let secrets = secrets.clone();
            tokio::spawn(async move { secrets.create("jwt", &s(&format!("value-{i}"))).await.unwrap() })
        }).collect();
        let mut created = 0;
        for t in tasks {
            created += usize::from(t.await.unwrap());
        }
        assert_eq!(created, 1);
    }
}

#[test]
fn secret_values_do_not_show_in_debug_output() {
    let secret = s("sk-live-very-secret");
    assert!(!format!("{secret:?}").contains("very-secret"));
}

#[tokio::test]
async fn embedded_secrets_are_encrypted_at_rest_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let secrets = EmbeddedSecrets::open(dir.path()).unwrap();
        secrets.put("models/key", &s("sk-plaintext-marker-123")).await.unwrap();
    }
    let raw = std::fs::read(EmbeddedSecrets::file_path(dir.path())).unwrap();
    assert!(!raw.windows(22).any(|w| w == b"sk-plaintext-marker-12"), "the secret is stored in the clear");
    let reopened = EmbeddedSecrets::open(dir.path()).unwrap();
    assert_eq!(reopened.get("models/key").await.unwrap().unwrap().expose_secret(), "sk-plaintext-marker-123");

    // Another master key cannot read it.
    std::fs::write(dir.path().join("master.key"), [7u8; 32]).unwrap();
    drop(reopened);
    let wrong_key = EmbeddedSecrets::open(dir.path()).unwrap();
    assert!(wrong_key.get("models/key").await.is_err());
}
