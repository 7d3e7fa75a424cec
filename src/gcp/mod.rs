//! Google Cloud plumbing below every Google sink (and the sources to come): OAuth 2.0 access
//! tokens from a service-account key or the metadata server ([`auth`]).

pub mod auth;

pub use auth::{GoogleAuth, KeyFileError, SCOPE, default_metadata_url};
