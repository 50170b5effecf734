//! The primitives of tocsin's binary storage encodings: LEB128 varints and length-prefixed byte
//! strings, written into a `Vec<u8>` and read back by a cursor that names what it was reading
//! when the input ends early or holds something impossible.
use crate::{Result, StoreError};

/// Appends `n` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// A reader over one encoded value; errors are [`StoreError::Corrupt`] naming `what`.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, which holds `what` (used in error messages).
    pub fn new(buf: &'a [u8], what: &'a str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// A corruption error at the current position.
    pub fn corrupt(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{}: byte {}: {why}", self.what, self.pos))
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Fails unless everything was read (trailing bytes mean a different format).
    pub fn finish(&self) -> Result<()> {
        match self.is_empty() {
            true => Ok(()),
            false => Err(self.corrupt(format!("{} trailing bytes", self.buf.len() - self.pos))),
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.corrupt(format!("{n} bytes expected, the value ends first")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt("varint longer than 64 bits"))
    }

    /// A varint that must fit a `usize` count no larger than the bytes left (each counted item
    /// takes at least one byte), so a corrupt count cannot make the caller allocate wildly.
    pub fn count(&mut self) -> Result<usize> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        match usize::try_from(n) {
            Ok(n) if n as u64 <= left => Ok(n),
            _ => Err(self.corrupt(format!("count {n} exceeds the {left} bytes left"))),
        }
    }

    /// A varint that must fit a `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        let n = self.varint()?;
        u32::try_from(n).map_err(|_| self.corrupt(format!("{n} does not fit 32 bits")))
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| self.corrupt(format!("invalid UTF-8: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_strings_round_trip() {
        let mut out = Vec::new();
        for n in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            put_varint(&mut out, n);
        }
        put_str(&mut out, "héllo");
        put_bytes(&mut out, &[]);
        let mut r = Reader::new(&out, "test value");
        for n in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            assert_eq!(r.varint().unwrap(), n);
        }
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.bytes().unwrap(), &[] as &[u8]);
        r.finish().unwrap();
    }

    #[test]
    fn truncated_and_oversized_input_is_corrupt_not_a_panic() {
        let mut out = Vec::new();
        put_str(&mut out, "abcdef");
        let short = &out[..4];
        let err = Reader::new(short, "a string").str().unwrap_err();
        assert!(err.to_string().contains("a string"), "{err}");
        // A count far beyond the input is refused before anything is allocated.
        let mut huge = Vec::new();
        put_varint(&mut huge, 1 << 40);
        assert!(Reader::new(&huge, "x").count().is_err());
        assert!(Reader::new(&[0xff; 11], "x").varint().is_err());
        let mut r = Reader::new(&[1, 2], "x");
        r.u8().unwrap();
        assert!(r.finish().is_err());
    }
}
