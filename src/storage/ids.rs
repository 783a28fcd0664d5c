//! Identifier newtypes. All are UUIDv7: 16 bytes, time-ordered, so keys built from them sort by
//! creation time and a tenant prefix has a fixed length (no prefix of one tenant is another's).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Uuid::from_slice(bytes).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A business of the group. Every tenant-owned key starts with these 16 bytes.
    TenantId
);
id_type!(OutletId);
id_type!(ChannelId);
id_type!(ContactId);
id_type!(ConversationId);
id_type!(MessageId);
id_type!(
    /// A person of a tenant (admin, agent or viewer).
    UserId
);
id_type!(
    /// An operator account (the appliance's administrators).
    OperatorId
);
id_type!(ApiKeyId);
id_type!(InvitationId);
