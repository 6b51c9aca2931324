//! The small slice of CBOR (RFC 8949) the wire codec needs: a bounded,
//! non-allocating reader over a received frame and a writer for the shapes we send.
//!
//! Header parsing (lengths, half floats, simple values) is delegated to
//! `ciborium-ll`; payloads are borrowed straight out of the input slice, so a
//! declared length never causes an allocation and unknown values are skipped
//! without being built. `ciborium::Value` would have been simpler, but it
//! materialises every item, which lets a 16 MiB frame of one-byte items cost
//! hundreds of MiB on the hub.

use std::borrow::Cow;

use ciborium_ll::{simple, Decoder, Header};

/// Why the bytes are not the CBOR we can walk. Mapped onto `WireError` by the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CborError {
    /// The input ends inside a value that started at `offset`.
    Truncated { offset: usize },
    /// Not well-formed CBOR at `offset`.
    Malformed { offset: usize, reason: &'static str },
    /// Containers (and tags) nest deeper than the limit.
    TooDeep { offset: usize, max: usize },
    /// An array or map declares or holds more entries than the limit.
    TooManyItems { offset: usize, len: u64, max: usize },
}

/// Human name of what a header starts, for "expected X, found Y" errors.
pub(crate) fn describe(header: &Header) -> &'static str {
    match header {
        Header::Positive(_) => "an unsigned integer",
        Header::Negative(_) => "a negative integer",
        Header::Float(_) => "a float",
        Header::Simple(simple::FALSE) | Header::Simple(simple::TRUE) => "a boolean",
        Header::Simple(simple::NULL) => "null",
        Header::Simple(simple::UNDEFINED) => "undefined",
        Header::Simple(_) => "a simple value",
        Header::Tag(_) => "a tagged value",
        Header::Break => "a break marker",
        Header::Bytes(_) => "a byte string",
        Header::Text(_) => "a text string",
        Header::Array(_) => "an array",
        Header::Map(_) => "a map",
    }
}

/// Cursor over one complete frame.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    max_depth: usize,
    max_items: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8], pos: usize, max_depth: usize, max_items: usize) -> Self {
        Self {
            input,
            pos,
            max_depth,
            max_items,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Reads the next header and returns it with the offset it started at.
    pub(crate) fn header(&mut self) -> Result<(usize, Header), CborError> {
        let start = self.pos;
        let rest = self
            .input
            .get(start..)
            .ok_or(CborError::Truncated { offset: start })?;
        // A fresh decoder per header: ciborium-ll then never needs its one-slot
        // push-back buffer, whose misuse is the only way it can panic.
        let mut decoder = Decoder::from(rest);
        match decoder.pull() {
            Ok(header) => {
                self.pos = start + decoder.offset();
                Ok((start, header))
            }
            Err(ciborium_ll::Error::Io(_)) => Err(CborError::Truncated { offset: start }),
            Err(ciborium_ll::Error::Syntax(_)) => Err(CborError::Malformed {
                offset: start,
                reason: "reserved or invalid initial byte",
            }),
        }
    }

    /// Borrows the next `len` payload bytes of the item that started at `item`.
    fn take(&mut self, len: usize, item: usize) -> Result<&'a [u8], CborError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.input.len())
            .ok_or(CborError::Truncated { offset: item })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn check_len(&self, offset: usize, len: usize) -> Result<(), CborError> {
        if len > self.max_items {
            return Err(CborError::TooManyItems {
                offset,
                len: len as u64,
                max: self.max_items,
            });
        }
        Ok(())
    }

    fn check_depth(&self, offset: usize, depth: usize) -> Result<(), CborError> {
        if depth > self.max_depth {
            return Err(CborError::TooDeep {
                offset,
                max: self.max_depth,
            });
        }
        Ok(())
    }

    /// Skips one complete value whose header was already read, checking it is
    /// well formed. `depth` is the nesting level of that value (top level = 1).
    pub(crate) fn skip_after(
        &mut self,
        offset: usize,
        header: Header,
        depth: usize,
    ) -> Result<(), CborError> {
        self.check_depth(offset, depth)?;
        match header {
            Header::Positive(_) | Header::Negative(_) | Header::Float(_) | Header::Simple(_) => {
                Ok(())
            }
            Header::Break => Err(CborError::Malformed {
                offset,
                reason: "break marker outside an indefinite-length item",
            }),
            Header::Bytes(len) | Header::Text(len) => {
                let text = matches!(header, Header::Text(_));
                match len {
                    Some(len) => self.take(len, offset).map(|_| ()),
                    None => {
                        self.chunks(offset, text, |_| Ok(()))?;
                        Ok(())
                    }
                }
            }
            Header::Array(len) => self.skip_items(offset, len, 1, depth),
            Header::Map(len) => self.skip_items(offset, len, 2, depth),
            Header::Tag(_) => {
                let (inner_offset, inner) = self.header()?;
                self.skip_after(inner_offset, inner, depth + 1)
            }
        }
    }

    /// Reads and skips one complete value at `depth`.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), CborError> {
        let (offset, header) = self.header()?;
        self.skip_after(offset, header, depth)
    }

    fn skip_items(
        &mut self,
        offset: usize,
        len: Option<usize>,
        per_entry: usize,
        depth: usize,
    ) -> Result<(), CborError> {
        match len {
            Some(len) => {
                self.check_len(offset, len)?;
                for _ in 0..len * per_entry {
                    self.skip(depth + 1)?;
                }
            }
            None => {
                let mut entries = 0usize;
                while !self.next_is_break()? {
                    entries += 1;
                    self.check_len(offset, entries)?;
                    for _ in 0..per_entry {
                        self.skip(depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// For indefinite-length containers: consumes a break marker if one is next.
    pub(crate) fn next_is_break(&mut self) -> Result<bool, CborError> {
        match self.input.get(self.pos) {
            None => Err(CborError::Truncated { offset: self.pos }),
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// Walks the definite-length chunks of an indefinite-length byte or text
    /// string (RFC 8949 §3.2.3: each chunk must be a definite string of the same type).
    fn chunks(
        &mut self,
        offset: usize,
        text: bool,
        mut each: impl FnMut(&'a [u8]) -> Result<(), CborError>,
    ) -> Result<(), CborError> {
        loop {
            let (chunk_offset, header) = self.header()?;
            let len = match (header, text) {
                (Header::Break, _) => return Ok(()),
                (Header::Bytes(Some(len)), false) | (Header::Text(Some(len)), true) => len,
                _ => {
                    return Err(CborError::Malformed {
                        offset: chunk_offset,
                        reason: "a chunk of an indefinite-length string is not a definite string of the same type",
                    })
                }
            };
            let chunk = self.take(len, offset)?;
            each(chunk)?;
        }
    }

    /// The payload of a byte or text string whose header was just read.
    /// Borrowed when definite; copied (only the bytes actually present) when chunked.
    pub(crate) fn string_payload(
        &mut self,
        offset: usize,
        len: Option<usize>,
        text: bool,
    ) -> Result<Cow<'a, [u8]>, CborError> {
        match len {
            Some(len) => self.take(len, offset).map(Cow::Borrowed),
            None => {
                let mut joined = Vec::new();
                self.chunks(offset, text, |chunk| {
                    joined.extend_from_slice(chunk);
                    Ok(())
                })?;
                Ok(Cow::Owned(joined))
            }
        }
    }

    /// The limit for entries in one array or map.
    pub(crate) fn max_items(&self) -> usize {
        self.max_items
    }
}

/// Appends CBOR items to a buffer, always in the shortest (preferred) form.
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self { out: Vec::new() }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }

    fn head(&mut self, major: u8, value: u64) {
        let major = major << 5;
        if value < 24 {
            self.out.push(major | value as u8);
        } else if let Ok(v) = u8::try_from(value) {
            self.out.push(major | 24);
            self.out.push(v);
        } else if let Ok(v) = u16::try_from(value) {
            self.out.push(major | 25);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(value) {
            self.out.push(major | 26);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(major | 27);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    pub(crate) fn uint(&mut self, value: u64) {
        self.head(0, value);
    }

    /// An integer as cbor-x writes a JS number: as an integer up to u32::MAX,
    /// as a float64 up to 2^53. cbor-x decodes 64-bit integers to `BigInt`,
    /// which breaks JS code doing arithmetic with `Date.now()`-style numbers.
    /// Beyond 2^53 no JS number is exact, so those stay integers (BigInt in JS).
    pub(crate) fn js_number(&mut self, value: u64) {
        const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
        if value <= u64::from(u32::MAX) || value > MAX_SAFE_INTEGER {
            self.uint(value);
        } else {
            self.out.push(0xfb);
            // Exact: value < 2^53 fits the 53-bit mantissa.
            self.out.extend_from_slice(&(value as f64).to_be_bytes());
        }
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.head(2, value.len() as u64);
        self.out.extend_from_slice(value);
    }

    pub(crate) fn text(&mut self, value: &str) {
        self.head(3, value.len() as u64);
        self.out.extend_from_slice(value.as_bytes());
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.head(4, len as u64);
    }

    pub(crate) fn map(&mut self, len: usize) {
        self.head(5, len as u64);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.out.push(if value { 0xf5 } else { 0xf4 });
    }
}
