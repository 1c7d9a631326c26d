//! The host's time zone on Windows: the system's, set in the registry. `TZ` does not change
//! it, and there is no file to watch (a change is not followed until the daemon restarts).
//! The same names as `zone_unix.rs`, which `service::zone` puts in words.

/// The files the host's time zone is read from: none on Windows.
pub(crate) const ZONE_FILES: &[&str] = &[];

/// `TZ` does not change local time on Windows.
pub(crate) const TZ_APPLIES: bool = false;

/// The host zone's name, as far as this build tells it.
pub(crate) fn host_name() -> String {
    "the system's time zone".into()
}

/// Nothing to add to the name: the zone is the system's.
pub(crate) fn host_source() -> &'static str {
    ""
}
