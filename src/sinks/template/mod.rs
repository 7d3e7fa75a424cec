//! Templates over an alert, two kinds:
//!
//! - [`Template`] ([`subject`]): `{rule}`/`{field:NAME}` placeholders, slugged, for names a
//!   broker routes on (NATS subjects, Pub/Sub ordering keys).
//! - [`AlertTemplate`] ([`jinja`]): a Jinja-style text template (minijinja) for the text or body
//!   a sink sends, for `templated_fields` and `output_format` (see `sinks::shape`). Compiled and
//!   checked when the config loads (an error names the line), rendered once per alert.
//!
//! Both are stable API for every sink: take `Option<AlertTemplate>` as a config field (it
//! deserializes from a string and refuses a bad template at load), and call
//! [`AlertTemplate::render_or`] with the sink's default text.

pub mod jinja;
pub mod subject;

pub use jinja::{AlertTemplate, TemplateError, VARIABLES};
pub use subject::{Template, slug};
