//! The start-up check: no plaintext off loopback.
//!
//! A URL a service will call, or an address it will listen on, is either
//! protected by TLS or stays on this machine (127.0.0.0/8, `::1`,
//! `localhost`, a Unix socket, an SQLite file). Anything else is refused
//! unless the operator said `--insecure-plaintext`.
//!
//! | scheme | TLS when |
//! |---|---|
//! | `https`, `wss`, `rediss` | always |
//! | `http`, `ws`, `redis` | never |
//! | `postgres`, `postgresql` | `sslmode=require`, `verify-ca` or `verify-full` |
//! | `sqlite`, `redis+unix`, `unix` | local: always allowed |

use std::net::{IpAddr, SocketAddr};

/// The flag that allows plaintext off loopback.
pub const INSECURE_FLAG: &str = "--insecure-plaintext";

/// A URL or listener refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaintextError {
    /// A plaintext URL to a host that is not loopback.
    #[error(
        "{what} {url} is plaintext to a non-loopback host: use {hint}, or pass \
         --insecure-plaintext to allow it"
    )]
    Url {
        /// Which setting.
        what: String,
        /// The URL without credentials, path or query.
        url: String,
        /// The TLS form of the URL.
        hint: &'static str,
    },
    /// A listener on a non-loopback address without a certificate.
    #[error(
        "{what} {addr} is not loopback and has no certificate: give --tls-cert and \
         --tls-key, or pass --insecure-plaintext to allow plaintext"
    )]
    Listener {
        /// Which listener.
        what: String,
        /// Its address.
        addr: SocketAddr,
    },
    /// A URL that does not parse, or has a scheme no client here speaks.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which setting.
        what: String,
        /// Why (never the URL's credentials).
        reason: String,
    },
}

/// Whether the traffic of a URL is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS.
    Tls,
    /// Plaintext to `host` (loopback or not).
    Plaintext,
    /// A local file or socket: never on the network.
    Local,
}

/// Checks the URL of setting `what` (e.g. `--router-ws-url`): `Ok` when it
/// speaks TLS, stays local, or `insecure_plaintext` allows it.
pub fn check_url(
    what: &str,
    url: &str,
    insecure_plaintext: bool,
) -> Result<Transport, PlaintextError> {
    let invalid = |reason: String| PlaintextError::Invalid {
        what: what.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a URL ({e})")))?;
    let (transport, hint) = match parsed.scheme() {
        "https" | "wss" | "rediss" => (Transport::Tls, ""),
        "http" => (Transport::Plaintext, "https://"),
        "ws" => (Transport::Plaintext, "wss://"),
        "redis" => (Transport::Plaintext, "rediss://"),
        "postgres" | "postgresql" => {
            let mode = parsed
                .query_pairs()
                .filter(|(k, _)| k == "sslmode" || k == "ssl-mode")
                .map(|(_, v)| v.to_ascii_lowercase())
                .last();
            match mode.as_deref() {
                Some("require" | "verify-ca" | "verify-full") => (Transport::Tls, ""),
                _ => (Transport::Plaintext, "sslmode=verify-full (or require)"),
            }
        }
        "sqlite" | "redis+unix" | "unix" => (Transport::Local, ""),
        other => return Err(invalid(format!("unsupported URL scheme {other}"))),
    };
    if transport != Transport::Plaintext {
        return Ok(transport);
    }
    let host = parsed.host_str().unwrap_or("");
    let unix_socket = parsed
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'));
    let local = if has_remote_host_param(&parsed) {
        false
    } else if host.is_empty() {
        // PostgreSQL with no host: its Unix socket.
        parsed.scheme().starts_with("postgres") || unix_socket
    } else {
        is_loopback_host(host)
    };
    if local || insecure_plaintext {
        return Ok(Transport::Plaintext);
    }
    Err(PlaintextError::Url {
        what: what.to_string(),
        url: redacted(&parsed),
        hint,
    })
}

/// PostgreSQL's `host=` query parameter overrides the URL's host.
fn has_remote_host_param(url: &url::Url) -> bool {
    url.query_pairs()
        .any(|(k, v)| k == "host" && !v.starts_with('/') && !is_loopback_host(&v))
}

/// Checks every URL of a list.
pub fn check_urls<'a>(
    what: &str,
    urls: impl IntoIterator<Item = &'a str>,
    insecure_plaintext: bool,
) -> Result<(), PlaintextError> {
    for url in urls {
        check_url(what, url, insecure_plaintext)?;
    }
    Ok(())
}

/// Checks a listener: a non-loopback address needs a certificate unless
/// `insecure_plaintext`.
pub fn check_listener(
    what: &str,
    addr: SocketAddr,
    has_certificate: bool,
    insecure_plaintext: bool,
) -> Result<(), PlaintextError> {
    if has_certificate || addr.ip().is_loopback() || insecure_plaintext {
        return Ok(());
    }
    Err(PlaintextError::Listener {
        what: what.to_string(),
        addr,
    })
}

/// 127.0.0.0/8, `::1` (bracketed or not), `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://host:port` of a URL: no user, password, path or query.
fn redacted(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Transport {
        check_url("x", url, false).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> PlaintextError {
        let err = check_url("--x-url", url, false).expect_err(url);
        // --insecure-plaintext lets the same URL through.
        assert_eq!(
            check_url("--x-url", url, true),
            Ok(Transport::Plaintext),
            "{url}"
        );
        err
    }

    #[test]
    fn tls_urls_pass_anywhere() {
        for url in [
            "https://coordinator.example:8080",
            "wss://router.example/ws",
            "rediss://:pw@redis.example:6380",
            "postgres://u:p@db.example/mpc?sslmode=require",
            "postgresql://u@db.example/mpc?sslmode=verify-ca",
            "postgres://u@db.example/mpc?application_name=a&sslmode=verify-full",
        ] {
            assert_eq!(ok(url), Transport::Tls, "{url}");
        }
    }

    #[test]
    fn plaintext_on_loopback_and_local_files_pass() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.9.8.7:8080",
            "ws://localhost:8081/ws",
            "ws://LOCALHOST:8081/ws",
            "http://[::1]:8091",
            "redis://127.0.0.1:6379",
            "postgres://postgres@127.0.0.1:5432/db",
            "postgres://postgres@localhost/db?sslmode=disable",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert_eq!(ok(url), Transport::Plaintext, "{url}");
        }
        for url in [
            "sqlite://party.db",
            "sqlite::memory:",
            "redis+unix:///run/redis.sock",
        ] {
            assert_eq!(ok(url), Transport::Local, "{url}");
        }
    }

    #[test]
    fn plaintext_off_loopback_is_refused_naming_the_url_and_the_switch() {
        for (url, named, hint) in [
            (
                "http://coordinator:8080/api",
                "http://coordinator:8080",
                "https://",
            ),
            ("ws://10.0.0.5:8081/ws", "ws://10.0.0.5:8081", "wss://"),
            (
                "http://[2001:db8::1]:8091",
                "http://[2001:db8::1]:8091",
                "https://",
            ),
            ("redis://redis:6379", "redis://redis:6379", "rediss://"),
            (
                "http://localhost.evil.example",
                "http://localhost.evil.example",
                "https://",
            ),
            ("http://0.0.0.0:8080", "http://0.0.0.0:8080", "https://"),
            ("postgres://u@db:5432/mpc", "postgres://db:5432", "sslmode"),
            (
                "postgres://u@db/mpc?sslmode=prefer",
                "postgres://db",
                "sslmode",
            ),
            (
                "postgres://u@db/mpc?sslmode=allow",
                "postgres://db",
                "sslmode",
            ),
            (
                "postgres://u@127.0.0.1/mpc?host=db.example",
                "postgres://127.0.0.1",
                "sslmode",
            ),
        ] {
            let err = refused(url);
            let text = err.to_string();
            assert!(text.contains(named), "{url}: {text}");
            assert!(text.contains(hint), "{url}: {text}");
            assert!(text.contains(INSECURE_FLAG), "{url}: {text}");
            assert!(text.starts_with("--x-url "), "{url}: {text}");
        }
    }

    #[test]
    fn credentials_never_appear_in_the_refusal() {
        let err =
            refused("postgres://admin:hunter2@db.example:5432/mpc?password=hunter3").to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("hunter3") && !err.contains("admin"),
            "{err}"
        );
        let err = refused("redis://:s3cret@redis.example:6379").to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn unknown_schemes_and_junk_are_refused_even_with_the_switch() {
        for url in ["ftp://example.org", "not a url", "mysql://db/x"] {
            assert!(
                matches!(
                    check_url("x", url, true),
                    Err(PlaintextError::Invalid { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn listeners_off_loopback_need_a_certificate() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lan: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let local6: SocketAddr = "[::1]:8080".parse().unwrap();
        for addr in [public, lan] {
            let err = check_listener("--listen", addr, false, false)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&addr.to_string()) && err.contains(INSECURE_FLAG),
                "{err}"
            );
            assert!(check_listener("--listen", addr, true, false).is_ok());
            assert!(check_listener("--listen", addr, false, true).is_ok());
        }
        assert!(check_listener("--listen", local, false, false).is_ok());
        assert!(check_listener("--listen", local6, false, false).is_ok());
    }

    #[test]
    fn lists_are_checked_item_by_item() {
        assert!(check_urls("x", ["https://a", "http://127.0.0.1"], false).is_ok());
        assert!(check_urls("x", ["https://a", "http://b"], false).is_err());
    }
}
