//! The order book and its level validation, mirroring `tradefleet.domain.orderbook` exactly.
//!
//! Price keys are the price in units of 10^-18 as a u128 (exact, ordered like the decimals); each
//! level keeps the exchange's own price and quantity strings of its latest update, so a reader
//! builds the same `Decimal`s the pure book would. Validation is the pure book's, rule for rule;
//! the error texts are built by the Python wrapper from a kind and the offending string, so they
//! carry Python's own `repr`.

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

pub const SCALE: usize = 18;
/// Integer digits a price may have: 10^20 * 10^18 still fits in a u128 (the pure book refuses
/// the same prices, so both books agree on every input).
pub const MAX_WHOLE: usize = 20;
/// Longest price or quantity string read at all (the pure book's `MAX_NUMBER_CHARS`).
pub const MAX_NUMBER_CHARS: usize = 64;

const POW10: [u128; SCALE + 1] = {
    let mut t = [1u128; SCALE + 1];
    let mut i = 1;
    while i <= SCALE {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    PriceTooLong,
    PriceNotPlain,
    PriceDotOnly,
    PriceDecimals,
    PriceTooLarge,
    PriceNotPositive,
    Qty,
}

/// A level problem: what kind, and which string (price or quantity) caused it.
pub struct LevelError {
    pub kind: Bad,
    pub text: String,
}

/// The key of a price, in one pass over its bytes for the usual shape (digits, at most one dot, at
/// most 19 digits, at most 18 decimals); anything else takes `level_key_slow`, which settles the
/// error kind exactly as the pure book does.
#[inline]
pub fn level_key(b: &[u8]) -> Result<u128, Bad> {
    if b.len() <= 20 {
        let mut v: u64 = 0;
        let mut digits = 0usize;
        let mut dot = usize::MAX;
        let mut ok = true;
        for (i, &c) in b.iter().enumerate() {
            let d = c.wrapping_sub(b'0');
            if d < 10 {
                v = v * 10 + u64::from(d);
                digits += 1;
            } else if c == b'.' && dot == usize::MAX {
                dot = i;
            } else {
                ok = false;
                break;
            }
        }
        if ok && digits > 0 && digits <= 19 && v > 0 {
            let frac = if dot == usize::MAX {
                0
            } else {
                b.len() - dot - 1
            };
            if frac <= SCALE {
                return Ok(u128::from(v) * POW10[SCALE - frac]);
            }
        }
    }
    level_key_slow(b)
}

fn level_key_slow(b: &[u8]) -> Result<u128, Bad> {
    if b.is_empty() || !b.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
        return Err(Bad::PriceNotPlain);
    }
    let dot = b.iter().position(|&c| c == b'.');
    let (whole, frac) = match dot {
        Some(d) => {
            if b[d + 1..].contains(&b'.') {
                return Err(Bad::PriceNotPlain);
            }
            (&b[..d], &b[d + 1..])
        }
        None => (b, &b[b.len()..]),
    };
    let mut frac_len = frac.len();
    while frac_len > 0 && frac[frac_len - 1] == b'0' {
        frac_len -= 1;
    }
    let frac = &frac[..frac_len];
    if whole.is_empty() && frac.is_empty() && !b.contains(&b'0') {
        return Err(Bad::PriceDotOnly);
    }
    if frac.len() > SCALE {
        return Err(Bad::PriceDecimals);
    }
    let lead = whole.iter().take_while(|&&c| c == b'0').count();
    let whole = &whole[lead..];
    if whole.len() > MAX_WHOLE {
        return Err(Bad::PriceTooLarge);
    }
    // Up to 19 digits fit a u64 (the usual case: one multiply-add per digit in 64 bits), then one
    // scale by a power of ten; longer prices take the u128 loop.
    let scale = POW10[SCALE - frac.len()];
    let key: u128 = if whole.len() + frac.len() <= 19 {
        let mut v: u64 = 0;
        for &c in whole.iter().chain(frac.iter()) {
            v = v * 10 + u64::from(c - b'0');
        }
        u128::from(v) * scale
    } else {
        let mut v: u128 = 0;
        for &c in whole.iter().chain(frac.iter()) {
            v = v * 10 + u128::from(c - b'0');
        }
        v * scale
    };
    if key == 0 {
        return Err(Bad::PriceNotPositive);
    }
    Ok(key)
}

/// What a quantity string means: zero (delete), a value to set, or garbage.
pub enum Qty {
    Zero,
    Set,
    Bad,
}

/// The pure book's quantity rule in one pass: zero when only `0`s and dots starting with `0`
/// (`qty.strip("0.")` empty); a value when ASCII digits with at most one dot
/// (`qty.replace(".", "", 1).isdecimal()` and `isascii`: Unicode digits are refused, #11) and, past
/// MAX_WHOLE characters, within the long-number rule; garbage otherwise ("", ".", ".0", "1e3").
#[inline]
pub fn classify_qty(b: &[u8]) -> Qty {
    let mut dots = 0u32;
    let mut nonzero = false;
    for &c in b {
        if c == b'.' {
            dots += 1;
        } else if c.is_ascii_digit() {
            nonzero |= c != b'0';
        } else {
            return Qty::Bad;
        }
    }
    if !nonzero {
        // qty.strip("0.") is empty: zero when it starts with "0", garbage ("", ".", ".0") if not
        return if b.first() == Some(&b'0') {
            Qty::Zero
        } else {
            Qty::Bad
        };
    }
    if dots <= 1 && !(b.len() > MAX_WHOLE && too_long(b)) {
        Qty::Set
    } else {
        Qty::Bad
    }
}

/// The pure book's `_bad_number` for a long quantity: at most MAX_WHOLE integer digits (leading
/// zeros aside), SCALE decimals (trailing zeros aside), MAX_NUMBER_CHARS characters.
pub fn too_long(b: &[u8]) -> bool {
    let (whole, frac) = match b.iter().position(|&c| c == b'.') {
        Some(d) => (&b[..d], &b[d + 1..]),
        None => (b, &b[b.len()..]),
    };
    let whole_digits = whole.len() - whole.iter().take_while(|&&c| c == b'0').count();
    let frac_digits = frac.len() - frac.iter().rev().take_while(|&&c| c == b'0').count();
    b.len() > MAX_NUMBER_CHARS || whole_digits > MAX_WHOLE || frac_digits > SCALE
}

/// A fast hash for price keys (multiply-fold; keys are not attacker-chosen hash-flooding material:
/// at most a few thousand levels, and a bad spread only costs time).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(32);
        self.0 = (folded ^ (folded >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Fast = BuildHasherDefault<KeyHasher>;

/// A short string kept inline (the exchange's prices and quantities are 10 to 16 bytes), a longer
/// one on the heap: setting or deleting a level allocates nothing in the usual case. Built only from
/// a `&str`'s bytes, so it is always UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub enum Text {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

const INLINE: usize = 30;

impl Text {
    #[inline]
    pub fn new(s: &[u8]) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s);
            Text::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            Text::Heap(s.into())
        }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Inline { len, buf } => &buf[..*len as usize],
            Text::Heap(b) => b,
        }
    }

    /// The string (for reads: top of book, levels, messages; not the hot path).
    pub fn to_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// A level as the exchange last sent it: its price and quantity strings.
#[derive(Clone, PartialEq, Eq)]
pub struct Level {
    pub price: Text,
    pub qty: Text,
}

/// One side: key -> the exchange's (price, qty) strings, and a heap of keys for the best level.
///
/// Like the pure book: most updates rewrite a level that exists (one hash probe); a new level is
/// pushed on the heap once, a deleted one stays there until it reaches the top (lazy deletion),
/// and the heap is rebuilt when stale entries dominate. Bids push the key, asks `u128::MAX - key`,
/// so the heap's top is the best level of either side.
pub struct Side {
    pub levels: HashMap<u128, Level, Fast>,
    heap: BinaryHeap<u128>,
    heaped: HashSet<u128, Fast>,
    bids: bool,
}

impl Side {
    pub fn new(bids: bool) -> Self {
        Side {
            levels: HashMap::default(),
            heap: BinaryHeap::new(),
            heaped: HashSet::default(),
            bids,
        }
    }

    #[inline]
    fn code(&self, key: u128) -> u128 {
        if self.bids {
            key
        } else {
            u128::MAX - key
        }
    }

    pub fn set(&mut self, key: u128, price: &[u8], qty: &[u8]) {
        match self.levels.entry(key) {
            Entry::Occupied(mut e) => {
                let level = e.get_mut();
                if level.price.as_bytes() != price {
                    level.price = Text::new(price);
                }
                level.qty = Text::new(qty);
            }
            Entry::Vacant(e) => {
                e.insert(Level {
                    price: Text::new(price),
                    qty: Text::new(qty),
                });
                if self.heaped.insert(key) {
                    let code = self.code(key);
                    self.heap.push(code);
                }
            }
        }
    }

    pub fn delete(&mut self, key: u128) {
        self.levels.remove(&key);
    }

    pub fn clear(&mut self) {
        self.levels.clear();
        self.heap.clear();
        self.heaped.clear();
    }

    /// Drop stale heap entries when they outnumber the live levels (after a batch of changes).
    pub fn compact_if_needed(&mut self) {
        if self.heap.len() > 2 * self.levels.len() + 1024 {
            let codes: Vec<u128> = self.levels.keys().map(|&k| self.code(k)).collect();
            self.heap = BinaryHeap::from(codes);
            self.heaped = self.levels.keys().copied().collect();
        }
    }

    pub fn best(&mut self) -> Option<(u128, &Level)> {
        while let Some(&code) = self.heap.peek() {
            let key = self.code(code); // the code is its own inverse
            if self.levels.contains_key(&key) {
                return self.levels.get(&key).map(|l| (key, l));
            }
            self.heap.pop();
            self.heaped.remove(&key);
        }
        None
    }

    /// Up to `depth` levels, best first (sorts the keys: for reads, not the hot path).
    pub fn sorted(&self, depth: usize) -> Vec<&Level> {
        let mut keys: Vec<u128> = self.levels.keys().copied().collect();
        if self.bids {
            keys.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            keys.sort_unstable();
        }
        keys.iter()
            .take(depth)
            .filter_map(|k| self.levels.get(k))
            .collect()
    }
}

pub struct Book {
    pub bids: Side,
    pub asks: Side,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            bids: Side::new(true),
            asks: Side::new(false),
        }
    }
}

impl Book {
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    pub fn crossed(&mut self) -> bool {
        let bid = self.bids.best().map(|(k, _)| k);
        let ask = self.asks.best().map(|(k, _)| k);
        matches!((bid, ask), (Some(b), Some(a)) if b >= a)
    }

    pub fn len(&self) -> usize {
        self.bids.levels.len() + self.asks.levels.len()
    }
}

/// A price longer than MAX_NUMBER_CHARS characters (code points, as Python counts them).
#[inline]
fn price_too_long(price: &[u8]) -> bool {
    price.len() > MAX_NUMBER_CHARS
        && price.iter().filter(|&&c| (c & 0xC0) != 0x80).count() > MAX_NUMBER_CHARS
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned() // always UTF-8 here: lossless
}

/// Apply one side's levels in order; the first bad one stops it (the caller discards the book).
pub fn apply_side<'s, I>(side: &mut Side, levels: I) -> Result<(), LevelError>
where
    I: IntoIterator<Item = (&'s [u8], &'s [u8])>,
{
    for (price, qty) in levels {
        if price_too_long(price) {
            return Err(LevelError {
                kind: Bad::PriceTooLong,
                text: text_of(price),
            });
        }
        let key = level_key(price).map_err(|kind| LevelError {
            kind,
            text: text_of(price),
        })?;
        match classify_qty(qty) {
            Qty::Set => side.set(key, price, qty),
            Qty::Zero => side.delete(key),
            Qty::Bad => {
                return Err(LevelError {
                    kind: Bad::Qty,
                    text: text_of(qty),
                })
            }
        }
    }
    side.compact_if_needed();
    Ok(())
}

/// The pure book's `check_levels` rule for one level, changing nothing: the rules `apply_side`
/// applies, with the long-quantity rule at every length. `Err(None)`: the price is longer than
/// MAX_NUMBER_CHARS (the pure book calls that level "not two strings").
pub fn check_level(price: &[u8], qty: &[u8]) -> Result<(), Option<LevelError>> {
    if price_too_long(price) {
        return Err(None);
    }
    level_key(price).map_err(|kind| {
        Some(LevelError {
            kind,
            text: text_of(price),
        })
    })?;
    let ok = match classify_qty(qty) {
        Qty::Zero => true,
        Qty::Set => !too_long(qty),
        Qty::Bad => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Some(LevelError {
            kind: Bad::Qty,
            text: text_of(qty),
        }))
    }
}
