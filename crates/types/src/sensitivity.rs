//! The ordered sensitivity label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How sensitive a resource is. The order is meaningful: `public < internal < confidential <
/// restricted`, and the input document carries [`Sensitivity::level`] so that rules compare
/// numbers, never strings.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Anyone may see it.
    Public,
    /// The default for unlabelled data: inside the organisation.
    #[default]
    Internal,
    /// Needs the user's consent before an agent uses it.
    Confidential,
    /// Never leaves the device.
    Restricted,
}

impl Sensitivity {
    /// All labels, lowest first.
    pub const ALL: [Sensitivity; 4] = [
        Sensitivity::Public,
        Sensitivity::Internal,
        Sensitivity::Confidential,
        Sensitivity::Restricted,
    ];

    /// The level number policies compare: 0 for public up to 3 for restricted.
    pub const fn level(self) -> u8 {
        match self {
            Sensitivity::Public => 0,
            Sensitivity::Internal => 1,
            Sensitivity::Confidential => 2,
            Sensitivity::Restricted => 3,
        }
    }

    /// The label name as policies see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sensitivity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sensitivity::ALL
            .into_iter()
            .find(|label| label.as_str() == s)
            .ok_or_else(|| {
                format!("unknown sensitivity `{s}`: expected public, internal, confidential or restricted")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_order() {
        let levels: Vec<u8> = Sensitivity::ALL.iter().map(|s| s.level()).collect();
        assert_eq!(levels, vec![0, 1, 2, 3]);
        assert!(Sensitivity::Public < Sensitivity::Restricted);
        assert_eq!(
            "confidential".parse::<Sensitivity>(),
            Ok(Sensitivity::Confidential)
        );
        assert!("secret".parse::<Sensitivity>().is_err());
    }
}
