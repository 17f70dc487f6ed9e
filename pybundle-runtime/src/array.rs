//! numpy arrays across the channel: [`NdArray`] is the Rust side of a C-ordered, little-endian
//! array (numpy's dtype string, the shape, the data in one binary frame, never JSON). Python
//! turns a received one into a numpy array over the received bytes, and any numpy array a
//! function returns (of booleans, integers or floats) into one; with the `ndarray` feature it
//! converts to and from `ndarray` arrays.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::buffer::{self, AsBytes, Buffer, Frame, Storage};
use crate::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// A number type an [`NdArray`] can hold, with its numpy dtype.
///
/// # Safety
/// Implemented only here, for plain number types without padding whose every bit pattern of
/// `size_of::<Self>()` bytes is valid (except `bool`, whose bytes are checked).
pub unsafe trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    /// numpy's `dtype.str` for it, little-endian: `"<f4"` for `f32`.
    const DTYPE: &'static str;

    /// Whether `bytes` (a whole number of elements) are valid values.
    fn valid(bytes: &[u8]) -> bool {
        let _ = bytes;
        true
    }
}

macro_rules! element {
    ($($ty:ty => $dtype:literal),* $(,)?) => {
        $(impl sealed::Sealed for $ty {}
        // SAFETY: a plain number type: no padding, every bit pattern valid.
        unsafe impl Element for $ty {
            const DTYPE: &'static str = $dtype;
        })*
    };
}

element!(
    i8 => "|i1",
    u8 => "|u1",
    i16 => "<i2",
    u16 => "<u2",
    i32 => "<i4",
    u32 => "<u4",
    i64 => "<i8",
    u64 => "<u8",
    f32 => "<f4",
    f64 => "<f8",
);

impl sealed::Sealed for bool {}
// SAFETY: one byte without padding; `valid` admits only the bytes 0 and 1.
unsafe impl Element for bool {
    const DTYPE: &'static str = "|b1";

    fn valid(bytes: &[u8]) -> bool {
        bytes.iter().all(|b| *b <= 1)
    }
}

/// The bytes of a vector of elements, kept as the vector (no copy).
struct Typed<T: Element>(Vec<T>);

impl<T: Element> AsBytes for Typed<T> {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `T: Element` is plain data without padding; the slice covers exactly the
        // vector's initialised elements and lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(self.0.as_ptr().cast(), std::mem::size_of_val(&self.0[..]))
        }
    }
}

/// A numpy-style array: dtype, shape and C-ordered little-endian data (see the module
/// docs). Cloning shares the data.
///
/// ```no_run
/// # fn main() -> pybundle_runtime::Result<()> {
/// # let worker = pybundle_runtime::Bundle::embedded()?.ready()?.worker(["model"]).start()?;
/// use pybundle_runtime::NdArray;
///
/// let x = NdArray::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], vec![2, 2])?;
/// // def scale(a, k): return a * k        (a numpy array arrives, one goes back)
/// let y: NdArray = worker.call("model.scale", &(x, 10))?;
/// assert_eq!(y.shape(), [2, 2]);
/// assert_eq!(y.as_slice::<f32>()?, [10.0, 20.0, 30.0, 40.0]);
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct NdArray {
    dtype: String,
    shape: Vec<usize>,
    data: Buffer,
}

impl std::fmt::Debug for NdArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NdArray({} {:?}, {} bytes)",
            self.dtype,
            self.shape,
            self.data.len()
        )
    }
}

fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d))
}

/// The item size of a numpy dtype string (`"<f4"` → 4).
fn itemsize(dtype: &str) -> Option<usize> {
    dtype.get(2..)?.parse().ok().filter(|n| *n > 0)
}

impl NdArray {
    /// An array of `shape` over `data` (C order), without a copy.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: Vec<usize>) -> Result<NdArray> {
        if elements(&shape) != Some(data.len()) {
            return Err(Error::Array {
                detail: format!("{} elements do not fill the shape {shape:?}", data.len()),
            });
        }
        Ok(NdArray {
            dtype: T::DTYPE.to_owned(),
            shape,
            data: Buffer::from_storage(Storage::Typed(Box::new(Typed(data)))),
        })
    }

    /// An array of `shape` over a copy of `data`.
    pub fn from_slice<T: Element>(data: &[T], shape: Vec<usize>) -> Result<NdArray> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// numpy's dtype string, e.g. `"<f4"` (always little-endian or byte-sized).
    pub fn dtype(&self) -> &str {
        &self.dtype
    }

    /// The shape (empty for a 0-d array, which holds one element).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        elements(&self.shape).unwrap_or(0)
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw data, C-ordered, little-endian.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn check<T: Element>(&self) -> Result<()> {
        if self.dtype != T::DTYPE {
            return Err(Error::Array {
                detail: format!(
                    "an array of dtype {} read as {} ({})",
                    self.dtype,
                    std::any::type_name::<T>(),
                    T::DTYPE
                ),
            });
        }
        if !T::valid(&self.data) {
            return Err(Error::Array {
                detail: format!("an array of dtype {} holds invalid values", self.dtype),
            });
        }
        Ok(())
    }

    /// The elements in place, without a copy. Fails when `T` is not the array's dtype, and
    /// (never seen with the system allocator, which aligns to 16) when the data is not
    /// aligned for `T`; [`to_vec`](NdArray::to_vec) always works.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.check::<T>()?;
        if cfg!(target_endian = "big") {
            return Err(Error::Array {
                detail: "little-endian data cannot be viewed in place on a big-endian machine"
                    .into(),
            });
        }
        let bytes = &self.data[..];
        if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
            return Err(Error::Array {
                detail: "the data is not aligned for its type; use to_vec".into(),
            });
        }
        // SAFETY: dtype and validity checked above; the pointer is aligned for T and the
        // length is a whole number of elements (checked when the array was made).
        Ok(unsafe {
            std::slice::from_raw_parts(
                bytes.as_ptr().cast(),
                bytes.len() / std::mem::size_of::<T>(),
            )
        })
    }

    /// The elements, copied (from little-endian on any machine).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check::<T>()?;
        let size = std::mem::size_of::<T>();
        Ok(self
            .data
            .chunks_exact(size)
            .map(|chunk| {
                let mut le = [0u8; 16];
                le[..size].copy_from_slice(chunk);
                if cfg!(target_endian = "big") {
                    le[..size].reverse();
                }
                // SAFETY: `le` holds `size` valid bytes of a T (checked above); read unaligned.
                unsafe { std::ptr::read_unaligned(le.as_ptr().cast::<T>()) }
            })
            .collect())
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "$ndarray")]
    index: usize,
    dtype: String,
    shape: Vec<usize>,
}

impl Serialize for NdArray {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match buffer::collect(|| Frame::Shared(self.data.clone())) {
            Some(index) => Wire {
                index,
                dtype: self.dtype.clone(),
                shape: self.shape.clone(),
            }
            .serialize(serializer),
            None => Err(serde::ser::Error::custom(
                "an NdArray only serializes into a worker or script message",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for NdArray {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)
            .map_err(|e| D::Error::custom(format!("an NdArray takes a numpy array: {e}")))?;
        let data = buffer::take::<D::Error>(wire.index)?;
        let size = itemsize(&wire.dtype)
            .ok_or_else(|| D::Error::custom(format!("unknown dtype {:?}", wire.dtype)))?;
        let expected = elements(&wire.shape).and_then(|n| n.checked_mul(size));
        if expected != Some(data.len()) {
            return Err(D::Error::custom(format!(
                "an array of dtype {} and shape {:?} came with {} bytes",
                wire.dtype,
                wire.shape,
                data.len()
            )));
        }
        Ok(NdArray {
            dtype: wire.dtype,
            shape: wire.shape,
            data: Buffer::received(data),
        })
    }
}

#[cfg(feature = "ndarray")]
mod with_ndarray {
    use ndarray::{ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn};

    use super::{Element, NdArray};
    use crate::{Error, Result};

    impl NdArray {
        /// An `ndarray` array with the same dtype and shape, copied.
        pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
            ArrayD::from_shape_vec(IxDyn(self.shape()), self.to_vec()?).map_err(|e| Error::Array {
                detail: e.to_string(),
            })
        }

        /// An `ndarray` view of the data in place (see [`as_slice`](NdArray::as_slice)).
        pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
            ArrayViewD::from_shape(IxDyn(self.shape()), self.as_slice()?).map_err(|e| {
                Error::Array {
                    detail: e.to_string(),
                }
            })
        }

        /// An array from an `ndarray` array in any layout (its elements in C order).
        pub fn from_ndarray<T: Element, S: Data<Elem = T>, D: Dimension>(
            array: &ArrayBase<S, D>,
        ) -> NdArray {
            let shape = array.shape().to_vec();
            let data = match array.as_slice() {
                Some(slice) => slice.to_vec(),
                None => array.iter().copied().collect(),
            };
            NdArray::from_vec(data, shape).unwrap_or_else(|_| unreachable!("from its shape"))
        }
    }

    impl<T: Element, D: Dimension> From<ndarray::Array<T, D>> for NdArray {
        /// Without a copy when the array is in standard (C) layout.
        fn from(array: ndarray::Array<T, D>) -> NdArray {
            if !array.is_standard_layout() {
                return NdArray::from_ndarray(&array);
            }
            let shape = array.shape().to_vec();
            let (data, offset) = array.into_raw_vec_and_offset();
            match offset {
                Some(0) | None => NdArray::from_vec(data, shape)
                    .unwrap_or_else(|_| unreachable!("a standard-layout array fills its vector")),
                Some(_) => unreachable!("a standard-layout owned array starts its vector"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_cross_as_one_frame_each() {
        let a = NdArray::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 8.0, 9.5], vec![2, 3]).unwrap();
        let flags = NdArray::from_slice(&[true, false], vec![2]).unwrap();
        let scalar = NdArray::from_vec(vec![7i64], vec![]).unwrap();
        let (json, frames) = buffer::to_json_with_buffers(&(&a, &flags, &scalar)).unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            r#"[{"$ndarray":0,"dtype":"<f4","shape":[2,3]},{"$ndarray":1,"dtype":"|b1","shape":[2]},{"$ndarray":2,"dtype":"<i8","shape":[]}]"#
        );
        let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.bytes().to_vec()).collect();
        assert_eq!(frames[0].len(), 24);
        let (back, flags_back, scalar_back): (NdArray, NdArray, NdArray) =
            buffer::de::decode(&json, frames).unwrap();
        assert_eq!(back, a);
        assert_eq!(
            back.as_slice::<f32>().unwrap(),
            [1.5, -2.0, 3.25, 0.0, 8.0, 9.5]
        );
        assert_eq!(flags_back.to_vec::<bool>().unwrap(), [true, false]);
        assert_eq!(
            (scalar_back.shape(), scalar_back.to_vec::<i64>().unwrap()),
            (&[][..], vec![7])
        );
        assert!(back
            .as_slice::<f64>()
            .unwrap_err()
            .to_string()
            .contains("<f4"));
        assert!(NdArray::from_vec(vec![1u8, 2, 3], vec![2, 2]).is_err());
    }

    /// README: `NdArray::from_vec(...)  // no copy`. The array's data, and the frame it is
    /// sent as, are the vector's own allocation; `from_slice` (a copy) is the control.
    #[test]
    fn from_vec_keeps_the_vectors_memory_up_to_the_frame_sent() {
        let data = vec![1.0f32, 2.0, 3.0, 4.0];
        let at = data.as_ptr();
        let copied = NdArray::from_slice(&data, vec![2, 2]).unwrap();
        let a = NdArray::from_vec(data, vec![2, 2]).unwrap();
        assert_eq!(a.bytes().as_ptr(), at.cast::<u8>());
        assert_eq!(a.as_slice::<f32>().unwrap().as_ptr(), at);
        let (_, frames) = buffer::to_json_with_buffers(&(&a,)).unwrap();
        assert_eq!(frames[0].bytes().as_ptr(), at.cast::<u8>());
        assert_ne!(copied.bytes().as_ptr(), at.cast::<u8>());
    }

    #[test]
    fn a_frame_that_does_not_fill_the_shape_is_refused() {
        let json = br#"{"$ndarray":0,"dtype":"<f8","shape":[3]}"#;
        let err = buffer::de::decode::<NdArray>(json, vec![vec![0; 16]]).unwrap_err();
        assert!(err.to_string().contains("came with 16 bytes"), "{err}");
        let bad_bool = br#"{"$ndarray":0,"dtype":"|b1","shape":[2]}"#;
        let flags: NdArray = buffer::de::decode(bad_bool, vec![vec![1, 7]]).unwrap();
        assert!(flags.as_slice::<bool>().is_err() && flags.to_vec::<bool>().is_err());
    }
}
