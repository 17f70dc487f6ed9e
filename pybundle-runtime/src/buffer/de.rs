//! Decoding a message's value: JSON through a thin wrapper over `serde_json`'s deserializer
//! that lets any type asking for a sequence or for bytes (`Vec<u8>`, `serde_bytes::ByteBuf`,
//! `Box<[u8]>`...) take a binary frame where the JSON holds `{"$buffer": i}`. Everything else
//! passes through unchanged, at every depth.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};

use std::marker::PhantomData;

use super::{take, with_incoming};
use crate::protocol::Payload;

/// Decodes a message's value into `T`, its buffers taken from the binary frames.
pub(crate) fn from_payload<T: DeserializeOwned>(mut payload: Payload) -> serde_json::Result<T> {
    let frames = std::mem::take(&mut payload.frames);
    decode(payload.json(), frames)
}

/// Decodes `json` whose buffers refer to `frames`.
pub(crate) fn decode<T: DeserializeOwned>(
    json: &[u8],
    frames: Vec<Vec<u8>>,
) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = if frames.is_empty() {
        T::deserialize(&mut de)?
    } else {
        with_incoming(frames, || T::deserialize(Wrap(&mut de)))?
    };
    de.end()?;
    Ok(value)
}

/// The wrapped deserializer.
struct Wrap<D>(D);
/// A wrapped visitor: whatever it is given to read further is wrapped too.
struct Visit<V>(V);
/// A visitor for a sequence that also takes a binary frame.
struct SeqOrFrame<V>(V);
/// A visitor for bytes that also takes a binary frame.
struct BytesOrFrame<V>(V);
struct Seq<A>(A);
struct Map<A>(A);
struct Enum<A>(A);
struct Seed<S>(S);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Visit(visitor))
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Wrap<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_option,
        deserialize_unit,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(SeqOrFrame(visitor))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(BytesOrFrame(visitor))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(BytesOrFrame(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Visit(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Visit(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Visit(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Visit(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Visit(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Visit(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit_plain {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        })*
    };
}

/// The `Visitor` methods that carry no nested value, forwarded.
macro_rules! visit_leaves {
    () => {
        visit_plain!(
            visit_bool(bool),
            visit_i8(i8),
            visit_i16(i16),
            visit_i32(i32),
            visit_i64(i64),
            visit_i128(i128),
            visit_u8(u8),
            visit_u16(u16),
            visit_u32(u32),
            visit_u64(u64),
            visit_u128(u128),
            visit_f32(f32),
            visit_f64(f64),
            visit_char(char),
            visit_str(&str),
            visit_borrowed_str(&'de str),
            visit_string(String),
            visit_bytes(&[u8]),
            visit_borrowed_bytes(&'de [u8]),
            visit_byte_buf(Vec<u8>),
        );

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.0.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.0.visit_unit()
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            self.0.visit_some(Wrap(d))
        }

        fn visit_newtype_struct<D2: Deserializer<'de>>(
            self,
            d: D2,
        ) -> Result<Self::Value, D2::Error> {
            self.0.visit_newtype_struct(Wrap(d))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            self.0.visit_seq(Seq(seq))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
            self.0.visit_enum(Enum(data))
        }

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.expecting(f)
        }
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    visit_leaves!();

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Map(map))
    }
}

/// Reads `{"$buffer": i}` from a map whose first key is already known to be `$buffer`; the
/// frame.
fn frame_of<'de, A: MapAccess<'de>>(mut map: A) -> Result<Vec<u8>, A::Error> {
    let index: usize = map.next_value()?;
    if map.next_key::<de::IgnoredAny>()?.is_some() {
        return Err(de::Error::custom("a `$buffer` reference has other keys"));
    }
    take(index)
}

/// The first key of a map, if it is `$buffer`; otherwise the map is not bytes.
fn buffer_key<'de, A: MapAccess<'de>, V: Visitor<'de>>(
    map: &mut A,
    visitor: &V,
) -> Result<(), A::Error> {
    match map.next_key::<String>()? {
        Some(key) if key == "$buffer" => Ok(()),
        _ => Err(de::Error::invalid_type(de::Unexpected::Map, visitor)),
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SeqOrFrame<V> {
    type Value = V::Value;

    visit_leaves!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        buffer_key(&mut map, &self.0)?;
        let frame = frame_of(map)?;
        self.0
            .visit_seq(ByteSeq::<A::Error>(frame.into_iter(), PhantomData))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for BytesOrFrame<V> {
    type Value = V::Value;

    visit_leaves!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        buffer_key(&mut map, &self.0)?;
        self.0.visit_byte_buf(frame_of(map)?)
    }
}

/// A frame's bytes as a sequence of `u8`, for types that read bytes one by one (`Vec<u8>`).
struct ByteSeq<E>(std::vec::IntoIter<u8>, PhantomData<E>);

impl<'de, E: de::Error> SeqAccess<'de> for ByteSeq<E> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        self.0
            .next()
            .map(|b| seed.deserialize(IntoDeserializer::<E>::into_deserializer(b)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Enum<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0.variant_seed(seed).map(|(v, rest)| (v, Enum(rest)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Enum<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Visit(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Visit(visitor))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Wrap(deserializer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    enum Shape {
        Blob(Vec<u8>),
        Pair { left: Vec<u8>, right: String },
    }

    #[test]
    fn byte_types_take_frames_at_any_depth() {
        let frames = || vec![b"first".to_vec(), vec![0, 255], b"third".to_vec()];
        let v: Vec<u8> = decode(br#"{"$buffer":1}"#, frames()).unwrap();
        assert_eq!(v, [0, 255]);
        type Nested = (Vec<u8>, Option<Vec<u8>>, BTreeMap<String, Vec<u8>>);
        let v: Nested = decode(
            br#"[{"$buffer":0},{"$buffer":2},{"k":{"$buffer":1}}]"#,
            frames(),
        )
        .unwrap();
        assert_eq!(
            (v.0, v.1.unwrap(), &v.2["k"]),
            (b"first".to_vec(), b"third".to_vec(), &vec![0, 255])
        );
        let v: Vec<Shape> = decode(
            br#"[{"Blob":{"$buffer":0}},{"Pair":{"left":{"$buffer":1},"right":"r"}}]"#,
            frames(),
        )
        .unwrap();
        assert_eq!(v[0], Shape::Blob(b"first".to_vec()));
        assert_eq!(
            v[1],
            Shape::Pair {
                left: vec![0, 255],
                right: "r".into()
            }
        );
        // Plain JSON still decodes the same way, and a real map is not bytes.
        let v: Vec<u8> = decode(b"[1,2,3]", frames()).unwrap();
        assert_eq!(v, [1, 2, 3]);
        let err = decode::<Vec<u8>>(br#"{"a":1}"#, frames()).unwrap_err();
        assert!(err.to_string().contains("invalid type: map"), "{err}");
        let value: serde_json::Value = decode(br#"{"$buffer":0}"#, frames()).unwrap();
        assert_eq!(value, serde_json::json!({"$buffer": 0}));
        assert!(
            decode::<(Vec<u8>, Vec<u8>)>(br#"[{"$buffer":0},{"$buffer":0}]"#, frames()).is_err()
        );
    }
}
