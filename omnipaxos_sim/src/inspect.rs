//! What a test may know about a message without looking at its fields: its kind, the entries
//! it carries, its ballot.
//!
//! The library's wire messages are its own business (their fields are private); it answers
//! these three questions through a small hidden API, and they are asked only here, so that
//! filters in tests ("drop every `AcceptSync`", "hold the `Offer`s") have one place to adapt.
//!
//! Kind names are the innermost serde variant name of the message (`Prepare`, `AcceptSync`,
//! `Offer`, `Proposals`, ...); heartbeats are `HeartbeatRequest` and `HeartbeatReply`.
//! [`variant_path`] reads the chain of serde variant names from the serialized form, so that
//! tests can check these names against the serde schema.

use omnipaxos::{ballot_leader_election::Ballot, messages::Message, storage::Entry};
use serde::{ser, Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fmt,
    sync::{Mutex, OnceLock},
};

/// The kind of `m` (see the module docs).
pub fn kind<T: Entry>(m: &Message<T>) -> &'static str {
    // The library names its kinds the same way (see `Message::kind`); asking it is cheaper
    // than a serialization, and the schema tests check that both agree.
    m.kind()
}

/// The kind named by a chain of serde variant names: the top-level variant of `Message`, the
/// variant below it, and the variant that directly forms its payload, if any (what [`kind`]
/// reads from a message). Tests that enumerate the kinds from the serde schema name them with
/// this.
pub fn kind_of_variants(path: &[&'static str]) -> &'static str {
    intern(path)
}

/// The chain of serde variant names that [`kind`] reads from `m` (see [`kind_of_variants`]).
pub fn variant_path<T: Entry + Serialize + for<'a> Deserialize<'a>>(
    m: &Message<T>,
) -> Vec<&'static str> {
    let mut probe = Probe::default();
    let _ = m.serialize(&mut probe);
    probe.path
}

/// Interned kind names, so that `kind` returns `&'static str` without allocating per call.
fn intern(path: &[&'static str]) -> &'static str {
    static NAMES: OnceLock<Mutex<BTreeMap<Vec<&'static str>, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(path) {
        return n;
    }
    let name: String = match path {
        [] => "Unknown".to_string(),
        ["BLE", .., last] => format!("Heartbeat{last}"),
        [.., last] => (*last).to_string(),
    };
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(path.to_vec(), leaked);
    leaked
}

/// A serializer that records the chain of enum variants leading to a message's payload: the
/// top-level variant, the first variant below it, and a variant that directly forms the payload
/// of that one. Everything else is skipped.
#[derive(Default)]
struct Probe {
    path: Vec<&'static str>,
    /// The value being serialized is directly the payload of the last variant recorded.
    direct: bool,
}

/// Ends the probe early: the kind is known.
#[derive(Debug)]
struct Known;

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kind known")
    }
}
impl std::error::Error for Known {}
impl ser::Error for Known {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Known
    }
}

impl Probe {
    /// Records a variant; returns whether the kind is now complete.
    fn variant(&mut self, v: &'static str) -> bool {
        let take = match self.path.len() {
            0 | 1 => true,
            2 => self.direct,
            _ => false,
        };
        if take {
            self.path.push(v);
        }
        self.direct = false;
        !take || self.path.len() >= 3
    }

    fn leaf(&mut self) -> Result<(), Known> {
        // A plain value: whatever follows is not directly a variant's payload. Once the message
        // kind's own variant is known (two names), a non-enum payload completes it.
        let was_direct = self.direct;
        self.direct = false;
        if self.path.len() >= 2 && was_direct {
            return Err(Known);
        }
        Ok(())
    }
}

macro_rules! leaves {
    ($($f:ident: $t:ty),* $(,)?) => {
        $(fn $f(self, _: $t) -> Result<(), Known> { self.leaf() })*
    };
}

impl<'a> ser::Serializer for &'a mut Probe {
    type Ok = ();
    type Error = Known;
    type SerializeSeq = &'a mut Probe;
    type SerializeTuple = &'a mut Probe;
    type SerializeTupleStruct = &'a mut Probe;
    type SerializeTupleVariant = &'a mut Probe;
    type SerializeMap = &'a mut Probe;
    type SerializeStruct = &'a mut Probe;
    type SerializeStructVariant = &'a mut Probe;

    leaves!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result<(), Known> {
        self.leaf()
    }
    fn serialize_some<V: ?Sized + Serialize>(self, v: &V) -> Result<(), Known> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Known> {
        self.leaf()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Known> {
        self.leaf()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Known> {
        if self.variant(v) || self.path.len() >= 2 {
            return Err(Known);
        }
        Ok(())
    }
    fn serialize_newtype_struct<V: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &V,
    ) -> Result<(), Known> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<V: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &V,
    ) -> Result<(), Known> {
        if self.variant(variant) {
            return Err(Known);
        }
        self.direct = self.path.len() >= 2;
        v.serialize(&mut *self)?;
        if self.path.len() >= 2 {
            return Err(Known);
        }
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Known> {
        self.leaf()?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Known> {
        self.leaf()?;
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Known> {
        self.leaf()?;
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self, Known> {
        if self.variant(v) || self.path.len() >= 2 {
            return Err(Known);
        }
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Known> {
        self.leaf()?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Known> {
        self.leaf()?;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self, Known> {
        if self.variant(v) || self.path.len() >= 2 {
            return Err(Known);
        }
        Ok(self)
    }
}

macro_rules! compound {
    ($tr:ident, $m:ident) => {
        impl ser::$tr for &mut Probe {
            type Ok = ();
            type Error = Known;
            fn $m<V: ?Sized + Serialize>(&mut self, v: &V) -> Result<(), Known> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Known> {
                Ok(())
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for &mut Probe {
    type Ok = ();
    type Error = Known;
    fn serialize_key<V: ?Sized + Serialize>(&mut self, k: &V) -> Result<(), Known> {
        k.serialize(&mut **self)
    }
    fn serialize_value<V: ?Sized + Serialize>(&mut self, v: &V) -> Result<(), Known> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Known> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Probe {
    type Ok = ();
    type Error = Known;
    fn serialize_field<V: ?Sized + Serialize>(
        &mut self,
        _: &'static str,
        v: &V,
    ) -> Result<(), Known> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Known> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Probe {
    type Ok = ();
    type Error = Known;
    fn serialize_field<V: ?Sized + Serialize>(
        &mut self,
        _: &'static str,
        v: &V,
    ) -> Result<(), Known> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Known> {
        Ok(())
    }
}

/// How many entries of type `T` message `m` carries (in any part of it: a batch, a log sync, a
/// forward, a migrated segment), counted in its serialized form by `T`'s serde name (its type
/// name, as `#[derive(Serialize)]` gives it). For measurements and tests that need the size of
/// what travels, without the messages' fields.
pub fn entries<T: Entry>(m: &Message<T>) -> usize {
    m.entry_count()
}

/// The first ballot message `m` carries (for a Sequence Paxos message other than a migration
/// message, the ballot of the round it belongs to), read from its serialized form: the first
/// value that serializes as the public [`Ballot`] type.
pub fn ballot<T: Entry>(m: &Message<T>) -> Option<Ballot> {
    m.ballot()
}
