//! Approver keys: `mpc approver new|show`, and the key files `mpc approve`
//! signs with.
//!
//! A key file is the private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`),
//! the form `openssl pkey` and Python's `cryptography` read, so the same file
//! serves `mpc approve` and `docs/examples/approve.py`. It is created with mode
//! 0600 and never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::Signer as _;
use party_core::authz::Approver;
use zeroize::Zeroizing;

/// `mpc approver`.
#[derive(clap::Subcommand, Debug)]
pub enum ApproverCommand {
    /// Make a new approver key, write it to a file only you can read, and
    /// print its public key and the line to put in an account policy.
    New {
        /// Key file to create (refused if it exists).
        #[arg(long)]
        out: PathBuf,
        /// A P-256 key (passkey/HSM-compatible) instead of Ed25519.
        #[arg(long)]
        p256: bool,
        /// Approver id for the policy snippet (default: the file name
        /// without its extension).
        #[arg(long)]
        id: Option<String>,
    },
    /// Print the public key and policy snippet of an existing key file.
    Show {
        /// Key file.
        #[arg(long)]
        key: PathBuf,
        /// Approver id for the policy snippet (default: the file name
        /// without its extension).
        #[arg(long)]
        id: Option<String>,
    },
}

/// An approver's private key. Zeroized on drop; `Debug` shows the public
/// key only.
pub enum ApproverKey {
    /// Ed25519 (RFC 8032).
    Ed25519(ed25519_dalek::SigningKey),
    /// P-256 ECDSA over SHA-256.
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, public) = self.public_hex();
        write!(f, "ApproverKey({kind} {public}, secret <redacted>)")
    }
}

impl ApproverKey {
    /// A new random key.
    pub fn generate(p256: bool) -> Self {
        let mut rng = rand_core::OsRng;
        if p256 {
            Self::P256(p256::ecdsa::SigningKey::random(&mut rng))
        } else {
            Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng))
        }
    }

    /// The key type as policies name it and its public key, hex (P-256:
    /// compressed SEC1).
    pub fn public_hex(&self) -> (&'static str, String) {
        match self {
            Self::Ed25519(k) => ("ed25519", hex::encode(k.verifying_key().as_bytes())),
            Self::P256(k) => (
                "p256",
                hex::encode(k.verifying_key().to_encoded_point(true).as_bytes()),
            ),
        }
    }

    /// This key as an approver of a policy under `id` (checks the id).
    pub fn approver(&self, id: &str) -> anyhow::Result<Approver> {
        let (kind, public) = self.public_hex();
        let (ed, p) = match kind {
            "ed25519" => (Some(public.as_str()), None),
            _ => (None, Some(public.as_str())),
        };
        Approver::parse(id.to_string(), ed, p).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The policy snippet `{"id": ..., "ed25519"|"p256": ...}`.
    pub fn policy_snippet(&self, id: &str) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&self.approver(id)?)?)
    }

    /// Signs approval statement bytes: Ed25519 (64 bytes) or P-256 ECDSA
    /// over SHA-256 (64 bytes `r || s`, low s).
    pub fn sign(&self, statement: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.sign(statement).to_bytes().to_vec(),
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(statement);
                let sig = sig.normalize_s().unwrap_or(sig);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// PKCS#8 PEM.
    fn to_pem(&self) -> anyhow::Result<Zeroizing<String>> {
        let le = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        match self {
            Self::Ed25519(k) => {
                // PKCS#8 v1 (RFC 8410 without the optional public key): the
                // form OpenSSL writes and every reader accepts.
                let mut kp = ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                };
                let pem = kp
                    .to_pkcs8_pem(le)
                    .map_err(|_| anyhow::anyhow!("could not encode the key"));
                // ed25519's own Drop zeroizes only with a feature
                // ed25519-dalek does not turn on.
                zeroize::Zeroize::zeroize(&mut kp.secret_key);
                pem
            }
            Self::P256(k) => {
                use p256::pkcs8::EncodePrivateKey as _;
                k.to_pkcs8_pem(le)
                    .map_err(|_| anyhow::anyhow!("could not encode the key"))
            }
        }
    }

    /// Reads a PKCS#8 PEM key (Ed25519 or P-256).
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        use p256::pkcs8::DecodePrivateKey as _;
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::Ed25519(k));
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::P256(k));
        }
        anyhow::bail!("not an Ed25519 or P-256 private key in PKCS#8 PEM")
    }

    /// Reads a key file; warns when others may read it.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let pem = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("read approver key {}", path.display()))?,
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: {} can be read by other users (chmod 600 it)",
                        path.display()
                    );
                }
            }
        }
        Self::from_pem(&pem).with_context(|| format!("approver key {}", path.display()))
    }

    /// Writes the key to a new file `path` with mode 0600; refuses to
    /// overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        let pem = self.to_pem()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("{} exists: refusing to overwrite a key", path.display())
            } else {
                anyhow::anyhow!("create {}: {e}", path.display())
            }
        })?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write {}", path.display()))
    }
}

/// The approver id: `id`, or the file name without its extension.
fn id_or_stem(id: Option<String>, path: &Path) -> String {
    id.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "approver".to_string())
    })
}

fn print_public(key: &ApproverKey, id: &str) -> anyhow::Result<()> {
    let (kind, public) = key.public_hex();
    let snippet = key
        .policy_snippet(id)
        .context("choose another id with --id")?;
    eprintln!("{kind} public key:");
    println!("{public}");
    eprintln!("add to the account policy's \"approvers\":");
    println!("{snippet}");
    Ok(())
}

/// `mpc approver`.
pub fn run(command: ApproverCommand) -> anyhow::Result<()> {
    match command {
        ApproverCommand::New { out, p256, id } => {
            let id = id_or_stem(id, &out);
            let key = ApproverKey::generate(p256);
            // The id is checked before anything is written.
            key.approver(&id).context("choose another id with --id")?;
            key.write_new(&out)?;
            eprintln!("key written to {} (mode 0600)", out.display());
            print_public(&key, &id)
        }
        ApproverCommand::Show { key, id } => {
            let id = id_or_stem(id, &key);
            print_public(&ApproverKey::read(&key)?, &id)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A file name in a new directory, removed with it.
    struct Temp(PathBuf, PathBuf);
    impl std::ops::Deref for Temp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.1
        }
    }
    impl AsRef<Path> for Temp {
        fn as_ref(&self) -> &Path {
            &self.1
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp(name: &str) -> Temp {
        let dir = std::env::temp_dir().join(format!("mpc-approver-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        Temp(dir, file)
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        for p256 in [false, true] {
            let path = temp("alice.pem");
            ApproverKey::generate(p256).write_new(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let path = temp("alice.pem");
        std::fs::write(&path, "precious").unwrap();
        let err = ApproverKey::generate(false).write_new(&path).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn a_key_file_reads_back_as_the_same_key_of_the_same_type() {
        for p256 in [false, true] {
            let path = temp("k.pem");
            let key = ApproverKey::generate(p256);
            key.write_new(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{text:.30}"
            );
            let back = ApproverKey::read(&path).unwrap();
            assert_eq!(back.public_hex(), key.public_hex());
            assert_eq!(back.public_hex().0, if p256 { "p256" } else { "ed25519" });
        }
    }

    #[test]
    fn a_signature_verifies_as_the_policy_approver_and_not_over_other_bytes() {
        for p256 in [false, true] {
            let key = ApproverKey::generate(p256);
            let approver = key.approver("alice").unwrap();
            let sig = key.sign(b"statement");
            assert_eq!(sig.len(), 64);
            assert!(approver.verifies(b"statement", &sig));
            assert!(!approver.verifies(b"statemenT", &sig));
            let other = ApproverKey::generate(p256).approver("alice").unwrap();
            assert!(!other.verifies(b"statement", &sig));
        }
    }

    #[test]
    fn the_snippet_is_a_policy_approver_and_debug_hides_the_secret() {
        let key = ApproverKey::generate(false);
        let snippet: serde_json::Value =
            serde_json::from_str(&key.policy_snippet("alice").unwrap()).unwrap();
        assert_eq!(snippet["id"], "alice");
        assert_eq!(snippet["ed25519"], key.public_hex().1.as_str());
        let ApproverKey::Ed25519(k) = &key else {
            panic!("ed25519")
        };
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex::encode(k.to_bytes())), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(key.policy_snippet("not an id").is_err());
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(ApproverKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(ApproverKey::from_pem("").is_err());
    }
}
