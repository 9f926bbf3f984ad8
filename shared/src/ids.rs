//! Newtypes for the numbers the protocol carries, so a tick can never be passed as an entity id.
//!
//! Wrap-around: none of these wrap. They are 32-bit counters that only grow: ticks and input
//! sequences start at one (zero means "none yet" in an acknowledgement or a snapshot's
//! `last_input`), ids at zero. At the highest tick rate the server accepts (240 Hz)
//! a tick counter lasts over 200 days; a server refuses to step a room past `u32::MAX` and a
//! client whose input sequence would pass `u32::MAX` must reconnect. Entity ids are never
//! reused within a room. Because nothing wraps, plain integer ordering is the protocol's
//! ordering everywhere.

use wincode::{SchemaRead, SchemaWrite};

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, SchemaWrite, SchemaRead,
        )]
        pub struct $name(pub u32);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// A simulation tick number. The first tick a room steps is 1; 0 means "none".
    Tick
);
id_newtype!(
    /// A connected client, unique for the lifetime of a server process.
    ClientId
);
id_newtype!(
    /// A replicated entity, unique for the lifetime of a room (never reused).
    EntityId
);
id_newtype!(
    /// A client's input frame sequence number. The first frame a client sends is 1; 0 means
    /// "no input processed yet" in a snapshot's `last_input`.
    InputSeq
);

impl Tick {
    /// The tick after this one, or `None` at the end of the tick space.
    pub fn next(self) -> Option<Tick> {
        self.0.checked_add(1).map(Tick)
    }

    /// How many ticks `self` is after `earlier`, or `None` if `earlier` is later.
    pub fn since(self, earlier: Tick) -> Option<u32> {
        self.0.checked_sub(earlier.0)
    }
}

impl InputSeq {
    /// The sequence number after this one, or `None` when the client must reconnect.
    pub fn next(self) -> Option<InputSeq> {
        self.0.checked_add(1).map(InputSeq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_arithmetic_never_wraps() {
        assert_eq!(Tick(u32::MAX).next(), None);
        assert_eq!(Tick(5).since(Tick(3)), Some(2));
        assert_eq!(Tick(3).since(Tick(5)), None);
        assert_eq!(InputSeq(u32::MAX).next(), None);
        assert_eq!(InputSeq(1).next(), Some(InputSeq(2)));
    }
}
