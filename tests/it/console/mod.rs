//! The alert console against a real kaudit process: the API (filters, paging, stats, tenant
//! tokens, the live feed, retention), the OpenAPI document, the same API on PostgreSQL, and
//! the UI in headless Chromium.

mod api;
mod browser;
mod harness;
mod openapi;
mod postgres;
mod retention;
