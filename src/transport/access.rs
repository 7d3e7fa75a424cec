//! What a destination may use, in force while its sink is built: whether it may take kaudit's
//! ambient credentials (the metadata server, IRSA, the node's role, kaudit's own environment and
//! files), whether its connections obey an [`EgressPolicy`], and whether the build is a dry run
//! that must not touch the network.
//!
//! `sinks::build` runs each sink's `build` inside [`scope`]; everything below reads
//! [`current`]: the HTTP client builder installs the egress checks, `aws` and `gcp` refuse the
//! ambient credential sources, broker sinks check their servers. A sink author gets all of it by
//! building clients and credential sources in `build` (never lazily in `send`). Outside any
//! scope (the Falco forwarder, tests) nothing is restricted.

use std::future::Future;
use std::sync::Arc;

use super::egress::EgressPolicy;

/// The restrictions of the destination being built.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    /// The sink's name, for messages.
    pub sink: String,
    /// May use kaudit's ambient credentials.
    pub ambient_credentials: bool,
    /// The policy every connection must pass, when restricted.
    pub egress: Option<Arc<EgressPolicy>>,
    /// A check only: build everything that can be checked offline, connect nothing.
    pub dry_run: bool,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            sink: String::new(),
            ambient_credentials: true,
            egress: None,
            dry_run: false,
        }
    }
}

impl Access {
    /// The refusal a source of ambient credentials gives when they are off, naming `what` the
    /// sink must configure instead.
    pub fn no_ambient(&self, what: &str) -> String {
        format!(
            "sink {:?} may not use kaudit's ambient credentials (ambient_credentials: false); {what}",
            self.sink
        )
    }
}

tokio::task_local! {
    static ACCESS: Access;
}

/// Runs `f` with `access` in force.
pub async fn scope<F: Future>(access: Access, f: F) -> F::Output {
    ACCESS.scope(access, f).await
}

/// The restrictions in force (none outside a [`scope`]).
pub fn current() -> Access {
    ACCESS.try_with(Clone::clone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_force_inside_the_scope_only() {
        assert!(current().ambient_credentials);
        let a = Access {
            sink: "t".into(),
            ambient_credentials: false,
            egress: Some(Arc::new(EgressPolicy::default())),
            dry_run: true,
        };
        let seen = scope(a.clone(), async { current() }).await;
        assert_eq!(seen, a);
        assert!(current().egress.is_none());
    }
}
