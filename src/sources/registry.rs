//! The source-type contract and the macro that turns the table in `sources/mod.rs` into
//! [`SourceSettings`](super::SourceSettings), `TYPES` and the dispatch by `type:`, as
//! `sinks/registry.rs` does for sinks.

use std::fmt::Debug;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Source, SourceEnv, SourceError};
use crate::invalid::Invalid;

/// A kind of source: its `type:` name, its settings, and how they are checked and connected.
pub trait SourceType {
    /// The `type:` name in the config (`file`).
    const NAME: &'static str;

    /// The type's own settings (every key of a `sources:` entry but `name` and `type`); unknown
    /// keys are refused.
    type Config: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync;

    /// Checks what types alone cannot; keys of the error are relative to the entry.
    fn validate(config: &Self::Config) -> Result<(), Invalid> {
        let _ = config;
        Ok(())
    }

    /// Builds the source named `name`. `None`: the source is served by kaudit's HTTP server
    /// (the webhook) and has no task of its own. Only a config that cannot work fails here
    /// (unreadable secret files); an unreachable service does not: the source retries.
    fn build(
        name: &str,
        config: &Self::Config,
        env: &SourceEnv,
    ) -> impl Future<Output = Result<Option<Box<dyn Source>>, SourceError>> + Send;
}

/// Declares the source types, one `Variant => module::Type` line each: generates the
/// `SourceSettings` enum, `TYPES`, and the `type_name`, `validate`, `parse` and `build` dispatch.
macro_rules! source_types {
    ($($variant:ident => $ty:ty),+ $(,)?) => {
        /// The settings of each source type, selected by `type:`.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum SourceSettings {
            $(
                #[doc = concat!("The settings of [`", stringify!($ty), "`].")]
                $variant(<$ty as SourceType>::Config),
            )+
        }

        /// Every source `type:` name, in the table's order.
        pub const TYPES: &[&str] = &[$(<$ty as SourceType>::NAME),+];

        impl SourceSettings {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SourceSettings::$variant(_) => <$ty as SourceType>::NAME,)+
                }
            }

            /// Checks what types alone cannot.
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $(SourceSettings::$variant(c) => <$ty as SourceType>::validate(c),)+
                }
            }

            /// Parses a type's own settings (everything but name/type).
            fn parse(type_name: &str, rest: Value) -> Result<SourceSettings, String> {
                $(
                    if type_name == <$ty as SourceType>::NAME {
                        return typed(rest).map(SourceSettings::$variant);
                    }
                )+
                Err(format!(
                    "unknown source type {type_name:?}; known types: {}",
                    TYPES.join(", ")
                ))
            }

            /// Builds the source these settings describe.
            async fn build(
                &self,
                name: &str,
                env: &SourceEnv,
            ) -> Result<Option<Box<dyn Source>>, SourceError> {
                match self {
                    $(SourceSettings::$variant(c) => <$ty as SourceType>::build(name, c, env).await,)+
                }
            }
        }
    };
}

pub(crate) use source_types;
