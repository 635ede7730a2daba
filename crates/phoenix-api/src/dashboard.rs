//! The built-in dashboard: one self-contained HTML page (inline CSS and JS, no external
//! assets, no build step) that polls the read endpoints and listens to the event stream.

/// The page served at `GET /`.
pub const PAGE: &str = include_str!("dashboard.html");
