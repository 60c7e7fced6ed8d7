//! A strict, allocation-light reader for one Binance combined-stream depth frame.
//!
//! It accepts only the plain shape the exchange sends (`{"stream":…,"data":{"e":…,"E":…,"s":…,
//! "U":…,"u":…,"b":[[p,q],…],"a":[[p,q],…]}}`, any key order, JSON whitespace) and returns byte
//! ranges into the frame, never a copy of a level. Anything else — string escapes, floats where
//! integers belong, nested unknown fields, duplicate keys, a level that is not two strings — is
//! `None`: the caller then decodes the frame with the general (msgspec) parser, which either reads
//! it or names the error. So this reader never has to agree with msgspec on an error message, only
//! never accept what msgspec would refuse or read differently.

pub type Range = (u32, u32);

pub struct Parsed {
    pub symbol: Range,
    pub event_time: i64,
    pub first: i64,
    pub last: i64,
    pub bids: Vec<(Range, Range)>,
    pub asks: Vec<(Range, Range)>,
}

/// How many leading bytes are printable ASCII other than `"` and `\\` (a string's plain body),
/// eight bytes at a time while they last.
#[inline]
fn plain_prefix(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // A byte is special when below 0x20, equal to '"' or '\\', or 0x80 and above: the classic
        // "has a byte less than n" / "has a zero byte" tests, whose false positives only ever
        // follow a true one in the same word (the scalar loop then finds the exact position).
        let below = x.wrapping_sub(ONES * 0x20);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let special =
            (below | quote.wrapping_sub(ONES) & !quote | slash.wrapping_sub(ONES) & !slash | x)
                & HIGH;
        if special != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if !(0x20..0x80).contains(&c) || c == b'"' || c == b'\\' {
            break;
        }
        i += 1;
    }
    i
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        // The exchange sends no whitespace: try the byte first, skip whitespace only if it is not.
        if self.b.get(self.i) != Some(&c) {
            self.ws();
            if self.b.get(self.i) != Some(&c) {
                return None;
            }
        }
        self.i += 1;
        Some(())
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// A string without escapes or control characters, valid UTF-8.
    #[inline]
    fn string(&mut self) -> Option<Range> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        let n = plain_prefix(rest);
        let end = if rest.get(n) == Some(&b'"') {
            n // the usual case: ASCII without escapes up to the closing quote
        } else {
            let mut high = false;
            let n = rest.iter().position(|&c| {
                high |= c >= 0x80;
                c == b'"' || c == b'\\' || c < 0x20
            })?;
            if rest[n] != b'"' || (high && std::str::from_utf8(&rest[..n]).is_err()) {
                return None;
            }
            n
        };
        self.i = start + end + 1;
        Some((start as u32, (start + end) as u32))
    }

    /// A JSON integer (no fraction, no exponent, no leading zero) that fits in i64 comfortably.
    fn int(&mut self) -> Option<i64> {
        self.ws();
        let b = self.b;
        let mut i = self.i;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let start = i;
        let mut v: i64 = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v * 10 + i64::from(c - b'0');
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 18 || (n > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = i;
        Some(if neg { -v } else { v })
    }

    /// Skip an unknown field's value: only strings without escapes, integers and literals.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.int().map(|_| ()), // floats: the general parser
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// After an object member: true at ",", false at the closing "}", None for anything else.
    #[inline]
    fn more_members(&mut self) -> Option<bool> {
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    fn levels(&mut self, out: &mut Vec<(Range, Range)>) -> Option<()> {
        out.clear();
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.eat(b'[')?;
            let price = self.string()?;
            self.eat(b',')?;
            let qty = self.string()?;
            self.eat(b']')?;
            out.push((price, qty));
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn depth(&mut self, out: &mut Parsed) -> Option<()> {
        self.eat(b'{')?;
        let mut seen = 0u8; // E s U u b a e, one bit each
        if self.peek()? == b'}' {
            return None;
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            let bit = match &self.b[key.0 as usize..key.1 as usize] {
                b"E" => {
                    out.event_time = self.int()?;
                    1
                }
                b"s" => {
                    out.symbol = self.string()?;
                    2
                }
                b"U" => {
                    out.first = self.int()?;
                    4
                }
                b"u" => {
                    out.last = self.int()?;
                    8
                }
                b"b" => {
                    self.levels(&mut out.bids)?;
                    16
                }
                b"a" => {
                    self.levels(&mut out.asks)?;
                    32
                }
                b"e" => {
                    self.string()?;
                    64
                }
                _ => {
                    self.skip_scalar()?;
                    0
                }
            };
            if bit != 0 {
                if seen & bit != 0 {
                    return None; // duplicate key: let the general parser decide
                }
                seen |= bit;
            }
            if !self.more_members()? {
                break;
            }
        }
        if seen & 63 == 63 {
            Some(())
        } else {
            None
        }
    }

    fn frame(&mut self, out: &mut Parsed) -> Option<()> {
        self.eat(b'{')?;
        let mut seen = 0u8;
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            match &self.b[key.0 as usize..key.1 as usize] {
                b"stream" if seen & 1 == 0 => {
                    self.string()?;
                    seen |= 1;
                }
                b"data" if seen & 2 == 0 => {
                    self.depth(out)?;
                    seen |= 2;
                }
                _ => return None,
            }
            if !self.more_members()? {
                break;
            }
        }
        self.ws();
        if seen == 3 && self.i == self.b.len() {
            Some(())
        } else {
            None
        }
    }
}

/// Read a combined-stream depth frame, or None when only the general parser may judge it.
pub fn parse_depth_frame(frame: &[u8]) -> Option<Parsed> {
    // Bytes outside strings must be JSON's ASCII punctuation anyway; strings with non-ASCII bytes
    // are checked for UTF-8 as they are read.
    if frame.len() > u32::MAX as usize {
        return None;
    }
    let mut out = Parsed {
        symbol: (0, 0),
        event_time: 0,
        first: 0,
        last: 0,
        bids: Vec::with_capacity(32),
        asks: Vec::with_capacity(32),
    };
    let mut r = Reader { b: frame, i: 0 };
    r.frame(&mut out)?;
    Some(out)
}
