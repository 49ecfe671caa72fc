//! What systemd says about one unit, as the controller reads it.

use std::fmt;

/// What systemd says about one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    /// loaded, not-found, bad-setting, error, masked
    pub load_state: String,
    pub active_state: ActiveState,
    pub sub_state: String,
    /// enabled, disabled, static, … ; empty when there is no unit file
    pub unit_file_state: String,
    /// The unit file changed on disk since the manager last loaded it.
    pub need_daemon_reload: bool,
    /// The unit file the manager loaded; empty when none.
    pub fragment_path: String,
    /// How long the unit was last active, in microseconds, once it has
    /// left that state (0 while active or never active).
    pub last_active_us: u64,
}

impl UnitState {
    /// systemd waits `RestartSec=` before bringing this unit back.
    pub fn auto_restart_pending(&self) -> bool {
        self.active_state == ActiveState::Activating && self.sub_state == "auto-restart"
    }
}

/// A unit's ActiveState, as systemd names it (`Display` and `as_str` give
/// that word back). A state this list does not know (a newer systemd's
/// `maintenance`, `refreshing`) is kept as it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ActiveState {
    Active,
    Reloading,
    #[default]
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Other(String),
}

impl ActiveState {
    pub fn as_str(&self) -> &str {
        match self {
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Inactive => "inactive",
            ActiveState::Failed => "failed",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Other(s) => s,
        }
    }

    pub fn is_active(&self) -> bool {
        *self == ActiveState::Active
    }
}

impl From<String> for ActiveState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "active" => ActiveState::Active,
            "reloading" => ActiveState::Reloading,
            "inactive" => ActiveState::Inactive,
            "failed" => ActiveState::Failed,
            "activating" => ActiveState::Activating,
            "deactivating" => ActiveState::Deactivating,
            _ => ActiveState::Other(s),
        }
    }
}

impl From<&str> for ActiveState {
    fn from(s: &str) -> Self {
        ActiveState::from(s.to_string())
    }
}

impl fmt::Display for ActiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ActiveState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_state_reads_and_prints_systemds_words() {
        for w in [
            "active",
            "reloading",
            "inactive",
            "failed",
            "activating",
            "deactivating",
            "maintenance",
        ] {
            let a = ActiveState::from(w);
            assert_eq!(a.as_str(), w);
            assert_eq!(a.to_string(), w);
            assert_eq!(a, w);
        }
        assert_eq!(ActiveState::from("deactivating"), ActiveState::Deactivating);
        assert!(ActiveState::from("active").is_active());
        assert_eq!(
            ActiveState::from("maintenance"),
            ActiveState::Other("maintenance".into())
        );
    }
}
