//! The Kafka wire format, as far as the dev broker reads and writes it:
//! big-endian integers, `i16`-length strings and `i32`-count arrays (the
//! non-flexible versions, the only ones it answers itself).

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};

/// Reads one size-prefixed frame (a request or a response) from `from`;
/// `None` when the peer closed the connection between frames.
pub fn read_frame(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut size = [0u8; 4];
    match from.read_exact(&mut size) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("frame size {size}")))?;
    let mut frame = vec![0; size];
    from.read_exact(&mut frame)?;
    Ok(Some(frame))
}

/// Writes `frame` with its size prefix, in one write.
pub fn write_frame(to: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    let size = i32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 2 GiB"))?;
    let mut framed = Vec::with_capacity(frame.len() + 4);
    framed.extend_from_slice(&size.to_be_bytes());
    framed.extend_from_slice(frame);
    to.write_all(&framed)
}

/// The header of a request (version 1: no tagged fields), and where its
/// body starts.
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestHeader {
    /// Reads the header of `frame`, leaving `reader` at its body.
    pub fn read(reader: &mut Reader<'_>) -> Result<Self> {
        let header = RequestHeader {
            api_key: reader.i16()?,
            api_version: reader.i16()?,
            correlation_id: reader.i32()?,
        };
        reader.nullable_string().context("client id")?;
        Ok(header)
    }
}

/// Reads fields off a byte slice, failing on a short one.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((taken, rest)) = self.bytes.split_first_chunk::<N>() else {
            bail!("message ends inside a field");
        };
        self.bytes = rest;
        Ok(*taken)
    }

    pub fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.take()?))
    }

    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.i8()? != 0)
    }

    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// A string, or `None` for a null one (length -1).
    pub fn nullable_string(&mut self) -> Result<Option<String>> {
        let Ok(length) = usize::try_from(self.i16()?) else {
            return Ok(None);
        };
        if self.bytes.len() < length {
            bail!("message ends inside a string");
        }
        let (text, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(Some(String::from_utf8(text.to_vec()).context("a string")?))
    }

    pub fn string(&mut self) -> Result<String> {
        self.nullable_string()?.context("a null string")
    }

    /// An array's element count, or `None` for a null array (count -1).
    pub fn array_len(&mut self) -> Result<Option<usize>> {
        Ok(usize::try_from(self.i32()?).ok())
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Appends fields to a byte vector.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn i8(&mut self, value: i8) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.i8(i8::from(value))
    }

    pub fn i16(&mut self, value: i16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn i32(&mut self, value: i32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn nullable_string(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            // Kafka's names and config values are far below 32 KiB.
            Some(text) => {
                self.i16(text.len() as i16);
                self.bytes.extend_from_slice(text.as_bytes());
                self
            }
            None => self.i16(-1),
        }
    }

    pub fn string(&mut self, value: &str) -> &mut Self {
        self.nullable_string(Some(value))
    }

    pub fn array_len(&mut self, count: usize) -> &mut Self {
        self.i32(count as i32)
    }
}
