//! The words of `status.conditions`: the condition types, in the order
//! status lists them, their statuses, and every reason the controller
//! gives. Each serialises to the word users and tests read
//! (`ConditionType::UnitsActive` is `UnitsActive`); `api::Condition` keeps
//! plain strings, so a status written by another version still reads.

use serde::{Deserialize, Serialize};

use super::{Condition, Status};

/// An enum of unit variants whose names are the words: `ALL` in
/// declaration order, `as_str`, `Display`, `FromStr`, serde, and comparison
/// with the strings `api::Condition` holds.
macro_rules! words {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => stringify!($v),)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|x| x.as_str() == s)
                    .ok_or_else(|| format!("unknown {}: {s}", stringify!($name)))
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

words! {
    /// A condition's type. `ALL` is the order conditions are listed in.
    pub enum ConditionType {
        /// The registry serves: every other condition is True.
        Ready,
        SpecValid,
        CertificateValid,
        ImagesPresent,
        UnitsActive,
        Healthy,
        /// The storage's filesystem keeps spec.storage.minFree free. Not
        /// part of Ready: a full registry still serves pulls.
        StorageAvailable,
    }
}

words! {
    /// A condition's status.
    pub enum ConditionStatus {
        True,
        False,
        Unknown,
    }
}

impl ConditionStatus {
    /// `Some(true)` True, `Some(false)` False, `None` Unknown.
    pub fn of(ok: Option<bool>) -> Self {
        match ok {
            Some(true) => ConditionStatus::True,
            Some(false) => ConditionStatus::False,
            None => ConditionStatus::Unknown,
        }
    }
}

words! {
    /// Why a condition is what it is. Ready repeats the reason of the first
    /// condition that keeps the registry from being Ready.
    pub enum Reason {
        // SpecValid, and Ready for a spec that is not applied.
        Valid,
        InvalidSpec,
        DuplicateName,
        UnusableFile,
        // UnitsActive: refusals that drive what the reconcile does next.
        /// Another registry's claim, or an object under its names that is
        /// not its own (`reconcile::admission`): nothing is written.
        Conflict,
        /// Another program holds the port: nothing is started.
        PortConflict,
        /// A unit is stopping: it is started again once stopped.
        Stopping,
        // CertificateValid.
        Generated,
        Provided,
        InvalidCertificate,
        // ImagesPresent.
        Present,
        ImageMissing,
        // UnitsActive, observed.
        Active,
        NotActive,
        Paused,
        // Healthy.
        ProbeSucceeded,
        ProbeFailed,
        NotRunning,
        InitUserFailed,
        ReconcileError,
        // StorageAvailable.
        Sufficient,
        LowSpace,
        Full,
        // A step that did not run.
        NotChecked,
        // Ready.
        Healthy,
        Progressing,
        InternalError,
    }
}

impl Condition {
    pub fn is(&self, t: ConditionType) -> bool {
        self.type_ == t
    }
}

impl Status {
    /// The condition of type `t`, if status has one.
    pub fn condition(&self, t: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.is(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_serialise_to_todays_strings() {
        let types: Vec<&str> = ConditionType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "Ready",
                "SpecValid",
                "CertificateValid",
                "ImagesPresent",
                "UnitsActive",
                "Healthy",
                "StorageAvailable"
            ]
        );
        for r in Reason::ALL {
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{r}\""));
            assert_eq!(r.as_str().parse::<Reason>(), Ok(*r));
        }
        assert_eq!(Reason::PortConflict.as_str(), "PortConflict");
        assert_eq!(ConditionStatus::of(None).as_str(), "Unknown");
        let from_status = String::from("Conflict");
        assert!(from_status == Reason::Conflict);
    }
}
