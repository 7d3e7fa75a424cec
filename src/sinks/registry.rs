//! The sink-type contract and the macro that turns the table in `sinks/mod.rs` into
//! [`SinkSettings`](super::SinkSettings), `TYPES` and the dispatch by `type:`.
//!
//! A sink type is a unit struct implementing [`SinkType`] in its own module; the table names it
//! once, and everything that selects, checks, prints or connects a sink by its `type:` follows.

use std::fmt::Debug;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;

/// A kind of sink: its `type:` name, its settings, and how they are checked and connected.
pub trait SinkType {
    /// The `type:` name in the config (`http`).
    const NAME: &'static str;

    /// The type's own settings (every key of a `sinks:` entry but `name`, `type`,
    /// `min_priority` and `filter`); unknown keys should be refused.
    type Config: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync;

    /// Settings that hold a credential inline, each with a `<key>_file` form (a webhook URL that
    /// carries its token, a routing key): the operator refuses them inline, so they come from a
    /// Secret through the file form.
    const SECRETS: &'static [&'static str] = &[];

    /// Checks what types alone cannot (templates, URLs, files, keys that go together); keys of
    /// the error are relative to the entry.
    fn validate(config: &Self::Config) -> Result<(), Invalid> {
        let _ = config;
        Ok(())
    }

    /// Connects the sink. Only a config that cannot work fails here (unreadable secret files,
    /// bad certificates); an unreachable destination does not: delivery retries.
    fn build(
        config: &Self::Config,
    ) -> impl Future<Output = Result<Box<dyn Sink>, SinkError>> + Send;
}

/// Declares the sink types, one `Variant => module::Type` line each: generates the
/// `SinkSettings` enum (one variant per type, holding its `Config`), `TYPES`, and the
/// `type_name`, `validate`, `parse` and `build` dispatch.
macro_rules! sink_types {
    ($($variant:ident => $ty:ty),+ $(,)?) => {
        /// The settings of each sink type, selected by `type:`.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum SinkSettings {
            $(
                #[doc = concat!("The settings of [`", stringify!($ty), "`].")]
                $variant(<$ty as SinkType>::Config),
            )+
        }

        /// Every sink `type:` name, in the table's order.
        pub const TYPES: &[&str] = &[$(<$ty as SinkType>::NAME),+];

        impl SinkSettings {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SinkSettings::$variant(_) => <$ty as SinkType>::NAME,)+
                }
            }

            /// The credential settings of the type `type_name` ([`SinkType::SECRETS`]); none for an
            /// unknown type.
            pub fn secret_settings(type_name: &str) -> &'static [&'static str] {
                $(
                    if type_name == <$ty as SinkType>::NAME {
                        return <$ty as SinkType>::SECRETS;
                    }
                )+
                &[]
            }

            /// Checks what types alone cannot (templates, URLs, files, mode-specific keys).
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $(SinkSettings::$variant(c) => <$ty as SinkType>::validate(c),)+
                }
            }

            /// Parses a type's own settings (everything but name/type/min_priority/filter).
            fn parse(type_name: &str, rest: Value) -> Result<SinkSettings, String> {
                $(
                    if type_name == <$ty as SinkType>::NAME {
                        return typed(rest).map(SinkSettings::$variant);
                    }
                )+
                Err(format!(
                    "unknown sink type {type_name:?}; known types: {}",
                    TYPES.join(", ")
                ))
            }

            /// Connects the sink these settings describe.
            async fn build(&self) -> Result<Box<dyn Sink>, SinkError> {
                match self {
                    $(SinkSettings::$variant(c) => <$ty as SinkType>::build(c).await,)+
                }
            }
        }
    };
}

pub(crate) use sink_types;
