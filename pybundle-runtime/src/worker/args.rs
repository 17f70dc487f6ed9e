//! Call arguments said as such. The value given to `call`/`args` is read by its Rust shape,
//! never by its JSON: a tuple is the positional arguments, `()` none, [`Kwargs`] the keyword
//! arguments, and any other value is **one** positional argument (so a `Vec` is one list and a
//! map one dict). [`Request::arg`](super::Request::arg) and
//! [`kwarg`](super::Request::kwarg) add one of each.

use serde::ser::{self, Impossible, Serialize, Serializer};

use crate::buffer;

/// Marks a struct or map as a call's keyword arguments:
/// `worker.call("model.fit", &Kwargs(&options))` calls `model.fit(**options)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kwargs<T>(pub T);

/// The newtype name [`Kwargs`] serializes with, which the shape probe recognises.
const KWARGS: &str = "$pybundle::Kwargs";

impl<T: Serialize> Serialize for Kwargs<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(KWARGS, &self.0)
    }
}

/// How a value given as the arguments is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A tuple: its elements are the positional arguments.
    Positional,
    /// `()`: no arguments.
    Nothing,
    /// [`Kwargs`]: keyword arguments.
    Keywords,
    /// Anything else: one positional argument.
    One,
}

/// The shape of `value`, found by serializing it into a probe that stops at the first call
/// (no element is serialized, so nothing is collected on the way).
pub(crate) fn shape<T: Serialize + ?Sized>(value: &T) -> Shape {
    match value.serialize(Probe) {
        Err(Found(shape)) => shape,
        Ok(()) => Shape::One,
    }
}

#[derive(Debug)]
struct Found(Shape);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Found(Shape::One)
    }
}

struct Probe;

macro_rules! one {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), Found> {
            Err(Found(Shape::One))
        })*
    };
}

impl Serializer for Probe {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Impossible<(), Found>;
    type SerializeTuple = Impossible<(), Found>;
    type SerializeTupleStruct = Impossible<(), Found>;
    type SerializeTupleVariant = Impossible<(), Found>;
    type SerializeMap = Impossible<(), Found>;
    type SerializeStruct = Impossible<(), Found>;
    type SerializeStructVariant = Impossible<(), Found>;

    one!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_unit(self) -> Result<(), Found> {
        Err(Found(Shape::Nothing))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Found> {
        Err(Found(Shape::One))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(if name == KWARGS {
            Shape::Keywords
        } else {
            Shape::One
        }))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Shape::One))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        Err(Found(Shape::One))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        Err(Found(Shape::Positional))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found(Shape::One))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found(Shape::One))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        Err(Found(Shape::One))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Found> {
        Err(Found(Shape::One))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found(Shape::One))
    }
}

/// A call's arguments as JSON: the positional ones (an array's elements) and the keyword ones
/// (an object's members), with the binary frames of every buffer inside, numbered in order.
#[derive(Default)]
pub(crate) struct Args {
    positional: Vec<u8>,
    keywords: Vec<u8>,
    pub frames: Vec<buffer::Frame>,
}

fn append(list: &mut Vec<u8>, items: &[u8]) {
    if items.is_empty() {
        return;
    }
    if !list.is_empty() {
        list.push(b',');
    }
    list.extend_from_slice(items);
}

fn not_an_object(json: &[u8]) -> serde_json::Error {
    let shown = String::from_utf8_lossy(&json[..json.len().min(40)]).into_owned();
    ser::Error::custom(format!(
        "keyword arguments must serialize as a JSON object (a struct or a map), not `{shown}`"
    ))
}

impl Args {
    /// Adds `value` by its [`Shape`].
    pub(crate) fn add<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        match shape(value) {
            Shape::Nothing => Ok(()),
            Shape::One => self.arg(value),
            Shape::Positional => {
                let json = buffer::encode_into(value, &mut self.frames)?;
                append(&mut self.positional, &json[1..json.len() - 1]);
                Ok(())
            }
            Shape::Keywords => self.kwargs(value),
        }
    }

    /// Adds one positional argument.
    pub(crate) fn arg<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        let json = buffer::encode_into(value, &mut self.frames)?;
        append(&mut self.positional, &json);
        Ok(())
    }

    /// Adds the members of a struct or map as keyword arguments.
    pub(crate) fn kwargs<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        let json = buffer::encode_into(value, &mut self.frames)?;
        if json.first() != Some(&b'{') {
            return Err(not_an_object(&json));
        }
        append(&mut self.keywords, &json[1..json.len() - 1]);
        Ok(())
    }

    /// Adds one keyword argument.
    pub(crate) fn kwarg<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> serde_json::Result<()> {
        let mut item = serde_json::to_vec(name)?;
        item.push(b':');
        item.extend(buffer::encode_into(value, &mut self.frames)?);
        append(&mut self.keywords, &item);
        Ok(())
    }

    /// Copies borrowed buffers, so the arguments outlive what they borrowed.
    pub(crate) fn own_frames(&mut self) {
        self.frames = std::mem::take(&mut self.frames)
            .into_iter()
            .map(buffer::Frame::own)
            .collect();
    }

    /// Whether some buffer is borrowed.
    pub(crate) fn borrows(&self) -> bool {
        self.frames.iter().any(buffer::Frame::is_borrowed)
    }

    /// The positional arguments as a JSON array.
    pub(crate) fn positional(&self) -> Vec<u8> {
        [&b"["[..], &self.positional, b"]"].concat()
    }

    /// The keyword arguments as a JSON object, if there are any.
    pub(crate) fn keywords(&self) -> Option<Vec<u8>> {
        (!self.keywords.is_empty()).then(|| [&b"{"[..], &self.keywords, b"}"].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buffer;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Options {
        scale: i32,
    }

    #[test]
    fn shapes_come_from_the_rust_type() {
        assert_eq!(shape(&(1, "a")), Shape::Positional);
        assert_eq!(shape(&(1,)), Shape::Positional);
        assert_eq!(shape(&()), Shape::Nothing);
        assert_eq!(shape(&vec![1.0, 2.5]), Shape::One);
        assert_eq!(shape(&[1, 2]), Shape::Positional);
        assert_eq!(shape(&serde_json::json!([1, 2])), Shape::One);
        assert_eq!(shape(&serde_json::json!({"a": 1})), Shape::One);
        assert_eq!(shape(&BTreeMap::from([("a", 1)])), Shape::One);
        assert_eq!(shape(&Options { scale: 2 }), Shape::One);
        assert_eq!(shape(&Kwargs(Options { scale: 2 })), Shape::Keywords);
        assert_eq!(shape(&&Kwargs(&Options { scale: 2 })), Shape::Keywords);
        assert_eq!(shape("text"), Shape::One);
        assert_eq!(shape(&Buffer::new(vec![1])), Shape::One);
    }

    #[test]
    fn arguments_and_their_buffers_combine() {
        let mut args = Args::default();
        args.add(&(1, Buffer::new(b"a".to_vec()))).unwrap();
        args.arg(&vec![2, 3]).unwrap();
        args.add(&Kwargs(Options { scale: 2 })).unwrap();
        args.kwarg("blob", &Buffer::new(b"b".to_vec())).unwrap();
        assert_eq!(args.positional(), br#"[1,{"$buffer":0},[2,3]]"#);
        assert_eq!(
            args.keywords().unwrap(),
            br#"{"scale":2,"blob":{"$buffer":1}}"#
        );
        assert_eq!(args.frames.len(), 2);
        let err = Args::default().add(&Kwargs(vec![1])).unwrap_err();
        assert!(
            err.to_string().contains("must serialize as a JSON object"),
            "{err}"
        );
        let empty = Args::default();
        assert_eq!(
            (empty.positional(), empty.keywords()),
            (b"[]".to_vec(), None)
        );
    }
}
