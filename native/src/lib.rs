//! tradefleet_native: Binance's local-book algorithm over frame bytes, without a Python object per
//! level. `tradefleet.domain.native_book` wraps it behind the pure book's interface; the pure book
//! (`tradefleet.domain.orderbook`) stays the reference, and a property test holds the two equal.
//!
//! Outcomes are small integers (the wrapper maps them to `Outcome`); details are the pure book's
//! texts, built here with Python's `repr` of the offending string.

mod book;
mod parse;

use std::collections::VecDeque;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use book::{apply_side, check_level, Bad, Book, Level, LevelError, Text, SCALE};
use parse::{parse_depth_frame, Range};

const BUFFERED: u8 = 0;
const APPLIED: u8 = 1;
const IGNORED: u8 = 2;
const GAP: u8 = 3;
const INVALID: u8 = 4;
const CROSSED: u8 = 5;
const SYNCED: u8 = 6;
const SNAPSHOT_TOO_OLD: u8 = 7;
const REJECTED: u8 = 8;
/// `feed` only: applied, and the top of book's value moved (APPLIED from `feed`: it did not).
const TOP_MOVED: u8 = 9;

fn needs_snapshot(code: u8) -> bool {
    matches!(code, GAP | INVALID | CROSSED | SNAPSHOT_TOO_OLD)
}

/// One depth diff read from a frame: the frame's bytes and where each field lies in them.
#[pyclass(frozen, module = "tradefleet_native")]
pub struct ParsedDiff {
    frame: Py<PyBytes>,
    symbol: Range,
    #[pyo3(get)]
    event_time: i64,
    #[pyo3(get)]
    first_update_id: i64,
    #[pyo3(get)]
    final_update_id: i64,
    bids: Vec<(Range, Range)>,
    asks: Vec<(Range, Range)>,
}

/// A string the parser found, as bytes (UTF-8: the parser checked it).
#[inline]
fn bytes(frame: &[u8], r: Range) -> &[u8] {
    &frame[r.0 as usize..r.1 as usize]
}

fn slice(frame: &[u8], r: Range) -> &str {
    std::str::from_utf8(bytes(frame, r)).unwrap_or("")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned() // UTF-8 already: lossless
}

impl ParsedDiff {
    fn levels_list<'py>(
        &self,
        py: Python<'py>,
        levels: &[(Range, Range)],
    ) -> PyResult<Bound<'py, PyList>> {
        let b = self.frame.bind(py).as_bytes();
        let items: Vec<Bound<'py, PyTuple>> = levels
            .iter()
            .map(|&(p, q)| PyTuple::new(py, [slice(b, p), slice(b, q)]))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }
}

#[pymethods]
impl ParsedDiff {
    #[getter]
    fn symbol<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, slice(self.frame.bind(py).as_bytes(), self.symbol))
    }

    /// The levels as the pure parser gives them (for tests and the fallback; not the hot path).
    #[getter]
    fn bids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.levels_list(py, &self.bids)
    }

    #[getter]
    fn asks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.levels_list(py, &self.asks)
    }

    fn __len__(&self) -> usize {
        self.bids.len() + self.asks.len()
    }
}

/// Read a combined-stream depth frame; None when the general parser must judge it.
#[pyfunction]
fn parse_depth(frame: Bound<'_, PyBytes>) -> Option<ParsedDiff> {
    let p = parse_depth_frame(frame.as_bytes())?;
    Some(ParsedDiff {
        frame: frame.unbind(),
        symbol: p.symbol,
        event_time: p.event_time,
        first_update_id: p.first,
        final_update_id: p.last,
        bids: p.bids,
        asks: p.asks,
    })
}

struct Owned {
    event_time: i64,
    first: i64,
    last: i64,
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

fn py_repr(py: Python<'_>, s: &str) -> String {
    PyString::new(py, s)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{s:?}"))
}

fn describe(py: Python<'_>, e: &LevelError) -> String {
    let r = py_repr(py, &e.text);
    match e.kind {
        Bad::PriceTooLong => {
            let head: String = e.text.chars().take(40).collect();
            format!(
                "price {}... is longer than {} characters",
                py_repr(py, &head),
                book::MAX_NUMBER_CHARS
            )
        }
        Bad::PriceNotPlain => format!("price {r} is not a plain decimal number"),
        Bad::PriceDotOnly => format!("price {r} is not a decimal number"),
        Bad::PriceDecimals => format!("price {r} has more than {SCALE} decimals"),
        Bad::PriceTooLarge => format!("price {r} has more than {} integer digits", book::MAX_WHOLE),
        Bad::PriceNotPositive => format!("price {r} must be positive"),
        Bad::Qty => format!("quantity {r} is not a plain non-negative decimal number"),
    }
}

type Res = (u8, Option<String>);
/// The best bid and ask (key, level) the cached top tuple was built from.
type TopSource = (u128, Level, u128, Level);
/// The value of a top of book: the prices' keys and the quantities as written.
type TopValue = (u128, Text, u128, Text);

/// Whether two plain decimal strings are the same number ("1.50" and "01.5" are), as `Decimal`
/// equality says: leading zeros of the whole part and trailing zeros of the fraction aside.
fn same_number(a: &[u8], b: &[u8]) -> bool {
    fn parts(s: &[u8]) -> (&[u8], &[u8]) {
        let (whole, frac) = match s.iter().position(|&c| c == b'.') {
            Some(d) => (&s[..d], &s[d + 1..]),
            None => (s, &s[s.len()..]),
        };
        let lead = whole.iter().take_while(|&&c| c == b'0').count();
        let trail = frac.iter().rev().take_while(|&&c| c == b'0').count();
        (&whole[lead..], &frac[..frac.len() - trail])
    }
    a == b || parts(a) == parts(b)
}

/// `BookSync` over the native book: the same states, rules, outcomes and details.
#[pyclass(module = "tradefleet_native")]
pub struct DepthSync {
    #[pyo3(get)]
    market_id: String,
    book: Book,
    buffer: VecDeque<Owned>,
    buffer_max: usize,
    in_sync: bool,
    last_id: i64,
    #[pyo3(get)]
    event_time: i64,
    top: Option<Py<PyTuple>>,
    top_src: Option<TopSource>,
    /// The top's value as last reported by `feed` or `top_moved` (None: not in sync, or a side
    /// empty), so a caller learns whether the top moved without building a `Decimal`.
    reported: Option<TopValue>,
    /// The detail of the last outcome `feed` returned (None for APPLIED and TOP_MOVED).
    #[pyo3(get)]
    detail: Option<String>,
}

impl DepthSync {
    /// Whether the best levels are still the strings the cached top tuple was built from.
    fn top_still_holds(&mut self) -> bool {
        let Some((bk, b, ak, a)) = &self.top_src else {
            return false;
        };
        let bid_same = matches!(self.book.bids.best(), Some((k, l)) if k == *bk && l == b);
        bid_same && matches!(self.book.asks.best(), Some((k, l)) if k == *ak && l == a)
    }

    /// Compare the top's value with the one reported last, and report it.
    fn top_moved_now(&mut self) -> bool {
        let now = if self.in_sync {
            match (self.book.bids.best(), self.book.asks.best()) {
                (Some((bk, b)), Some((ak, a))) => Some((bk, b.qty.clone(), ak, a.qty.clone())),
                _ => None,
            }
        } else {
            None
        };
        let moved = match (&now, &self.reported) {
            (Some(n), Some(r)) => {
                n.0 != r.0
                    || n.2 != r.2
                    || !same_number(n.1.as_bytes(), r.1.as_bytes())
                    || !same_number(n.3.as_bytes(), r.3.as_bytes())
            }
            (None, None) => false,
            _ => true,
        };
        self.reported = now;
        moved
    }

    fn reset_all(&mut self) {
        self.book.clear();
        self.buffer.clear();
        self.in_sync = false;
        self.last_id = 0;
        self.top = None;
    }

    fn push(&mut self, diff: Owned) {
        if self.buffer_max == 0 {
            return;
        }
        if self.buffer.len() >= self.buffer_max {
            self.buffer.pop_front();
        }
        self.buffer.push_back(diff);
    }

    fn lose_sync(&mut self, keep: Option<Owned>) {
        self.reset_all();
        if let Some(d) = keep {
            self.push(d);
        }
    }

    /// The rules of `BookSync.on_diff` once the symbol matched.
    ///
    /// While waiting for a snapshot a malformed diff is refused, never buffered (#11): checked here,
    /// not when replayed, so a bad diff is counted even if the snapshot makes it old. In sync the
    /// levels are validated as they are applied (a bad one discards the book). Either way the
    /// diff's strings are read once, here.
    fn step<L: Levels>(
        &mut self,
        py: Python<'_>,
        first: i64,
        last: i64,
        event_time: i64,
        levels: L,
    ) -> Res {
        if !self.in_sync {
            if let Some(problem) = levels.check() {
                let detail = format!("diff u={last}: {}", problem.describe(py));
                return (REJECTED, Some(detail));
            }
            self.push(levels.owned(event_time, first, last));
            return (BUFFERED, None);
        }
        if last <= self.last_id {
            return (IGNORED, None);
        }
        if first > self.last_id + 1 {
            let detail = format!("expected U <= {}, got U={}", self.last_id + 1, first);
            let kept = levels.owned(event_time, first, last);
            self.lose_sync(Some(kept));
            return (GAP, Some(detail));
        }
        let applied = levels.apply(&mut self.book);
        if self.top.is_some() && !self.top_still_holds() {
            self.top = None;
        }
        if let Err(e) = applied {
            let detail = format!("diff u={last}: {}", describe(py, &e));
            self.lose_sync(None);
            return (INVALID, Some(detail));
        }
        self.last_id = last;
        if self.book.crossed() {
            self.lose_sync(None);
            return (CROSSED, Some(format!("book crossed after u={last}")));
        }
        self.event_time = event_time;
        (APPLIED, None)
    }

    fn on_owned(&mut self, py: Python<'_>, d: Owned) -> Res {
        let (first, last, et) = (d.first, d.last, d.event_time);
        self.step(py, first, last, et, d)
    }
}

/// What the pure `check_levels` finds wrong with a diff.
enum Problem {
    /// Not two strings, or a price longer than MAX_NUMBER_CHARS: the first 40 characters of each
    /// as Python's `str()` gives them.
    NotTwoStrings(String, String),
    Number(LevelError),
}

impl Problem {
    fn describe(&self, py: Python<'_>) -> String {
        match self {
            Problem::NotTwoStrings(p, q) => format!(
                "level ({}, {}) is not two strings",
                py_repr(py, p),
                py_repr(py, q)
            ),
            Problem::Number(e) => describe(py, e),
        }
    }
}

fn head40(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `check_levels` over string levels, in order: the first problem, or None.
fn check_all<'s>(levels: impl Iterator<Item = (&'s [u8], &'s [u8])>) -> Option<Problem> {
    for (price, qty) in levels {
        match check_level(price, qty) {
            Ok(()) => {}
            Err(None) => {
                let head = |b: &[u8]| head40(&String::from_utf8_lossy(b));
                return Some(Problem::NotTwoStrings(head(price), head(qty)));
            }
            Err(Some(e)) => return Some(Problem::Number(e)),
        }
    }
    None
}

/// A diff's levels, however they are held: checked, applied or copied for the buffer by `step`.
trait Levels {
    fn check(&self) -> Option<Problem>;
    fn apply(&self, book: &mut Book) -> Result<(), LevelError>;
    fn owned(self, event_time: i64, first: i64, last: i64) -> Owned;
}

fn pair(l: &(String, String)) -> (&[u8], &[u8]) {
    (l.0.as_bytes(), l.1.as_bytes())
}

fn py_pair(l: &PyLevel) -> (&[u8], &[u8]) {
    match l {
        PyLevel::Strs(p, q) | PyLevel::Odd(p, q) => (p.as_bytes(), q.as_bytes()),
    }
}

/// A diff buffered earlier (or one from Python levels that are all strings).
impl Levels for Owned {
    fn check(&self) -> Option<Problem> {
        check_all(self.bids.iter().map(pair).chain(self.asks.iter().map(pair)))
    }

    fn apply(&self, book: &mut Book) -> Result<(), LevelError> {
        apply_side(&mut book.bids, self.bids.iter().map(pair))?;
        apply_side(&mut book.asks, self.asks.iter().map(pair))
    }

    fn owned(self, _: i64, _: i64, _: i64) -> Owned {
        self
    }
}

/// The levels of a `ParsedDiff`: ranges into its frame's bytes.
struct FrameLevels<'a> {
    frame: &'a [u8],
    bids: &'a [(Range, Range)],
    asks: &'a [(Range, Range)],
}

impl FrameLevels<'_> {
    fn strs<'s>(
        &'s self,
        side: &'s [(Range, Range)],
    ) -> impl Iterator<Item = (&'s [u8], &'s [u8])> {
        side.iter()
            .map(|&(p, q)| (bytes(self.frame, p), bytes(self.frame, q)))
    }
}

impl Levels for FrameLevels<'_> {
    fn check(&self) -> Option<Problem> {
        check_all(self.strs(self.bids).chain(self.strs(self.asks)))
    }

    fn apply(&self, book: &mut Book) -> Result<(), LevelError> {
        apply_side(&mut book.bids, self.strs(self.bids))?;
        apply_side(&mut book.asks, self.strs(self.asks))
    }

    fn owned(self, event_time: i64, first: i64, last: i64) -> Owned {
        let copy = |side| self.strs(side).map(|(p, q)| (text(p), text(q))).collect();
        Owned {
            event_time,
            first,
            last,
            bids: copy(self.bids),
            asks: copy(self.asks),
        }
    }
}

/// One level handed over from Python: two strings, or something else (the first 40 characters of
/// each part's `str()`, for the message).
enum PyLevel {
    Strs(String, String),
    Odd(String, String),
}

/// Levels from Python (the general parser's `DepthDiff`, or a test's), in order.
struct PyLevels {
    bids: Vec<PyLevel>,
    asks: Vec<PyLevel>,
}

impl PyLevels {
    fn from_py(bids: &Bound<'_, PyAny>, asks: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyLevels {
            bids: py_levels(bids)?,
            asks: py_levels(asks)?,
        })
    }

    fn odd(&self) -> Option<&PyLevel> {
        self.bids
            .iter()
            .chain(&self.asks)
            .find(|l| matches!(l, PyLevel::Odd(..)))
    }

    /// The levels as strings; only once `check` passed or `odd` found nothing.
    fn strings(side: Vec<PyLevel>) -> Vec<(String, String)> {
        side.into_iter()
            .map(|l| match l {
                PyLevel::Strs(p, q) | PyLevel::Odd(p, q) => (p, q),
            })
            .collect()
    }
}

impl Levels for PyLevels {
    fn check(&self) -> Option<Problem> {
        for level in self.bids.iter().chain(&self.asks) {
            let problem = match level {
                PyLevel::Strs(p, q) => check_all(std::iter::once((p.as_bytes(), q.as_bytes()))),
                PyLevel::Odd(p, q) => Some(Problem::NotTwoStrings(p.clone(), q.clone())),
            };
            if problem.is_some() {
                return problem;
            }
        }
        None
    }

    fn apply(&self, book: &mut Book) -> Result<(), LevelError> {
        apply_side(&mut book.bids, self.bids.iter().map(py_pair))?;
        apply_side(&mut book.asks, self.asks.iter().map(py_pair))
    }

    fn owned(self, event_time: i64, first: i64, last: i64) -> Owned {
        Owned {
            event_time,
            first,
            last,
            bids: PyLevels::strings(self.bids),
            asks: PyLevels::strings(self.asks),
        }
    }
}

fn py_levels(list: &Bound<'_, PyAny>) -> PyResult<Vec<PyLevel>> {
    let mut out = Vec::new();
    for item in list.try_iter()? {
        let (p, q): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        match (p.extract::<String>(), q.extract::<String>()) {
            (Ok(p), Ok(q)) => out.push(PyLevel::Strs(p, q)),
            _ => out.push(PyLevel::Odd(
                head40(&p.str()?.to_string()),
                head40(&q.str()?.to_string()),
            )),
        }
    }
    Ok(out)
}

fn levels_from(list: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in list.try_iter()? {
        let (p, q): (String, String) = item?.extract()?;
        out.push((p, q));
    }
    Ok(out)
}

#[pymethods]
impl DepthSync {
    #[new]
    #[pyo3(signature = (market_id, buffer_max = 10_000))]
    fn new(market_id: String, buffer_max: usize) -> Self {
        DepthSync {
            market_id,
            book: Book::default(),
            buffer: VecDeque::new(),
            buffer_max,
            in_sync: false,
            last_id: 0,
            event_time: 0,
            top: None,
            top_src: None,
            reported: None,
            detail: None,
        }
    }

    #[getter]
    fn in_sync(&self) -> bool {
        self.in_sync
    }

    #[getter]
    fn last_update_id(&self) -> i64 {
        if self.in_sync {
            self.last_id
        } else {
            0
        }
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn reset(&mut self) {
        self.reset_all();
    }

    /// `on_parsed` for a hot path: the outcome's code only (its detail in `detail`), and for an
    /// applied diff TOP_MOVED when the top's value moved since the last `feed` or `top_moved`,
    /// else APPLIED. No Python object is made unless the diff is not applied.
    fn feed(&mut self, py: Python<'_>, diff: &ParsedDiff) -> u8 {
        let (code, detail) = self.on_parsed(py, diff);
        self.detail = detail;
        if code == APPLIED && self.top_moved_now() {
            return TOP_MOVED;
        }
        code
    }

    /// Whether the top's value (None while not in sync) moved since the last `feed` or
    /// `top_moved`: what `BookKeeper` reports as a top change.
    fn top_moved(&mut self) -> bool {
        self.top_moved_now()
    }

    /// A diff read by `parse_depth`: levels go from the frame's bytes straight into the book.
    fn on_parsed(&mut self, py: Python<'_>, diff: &ParsedDiff) -> Res {
        let frame = diff.frame.bind(py).as_bytes();
        if bytes(frame, diff.symbol) != self.market_id.as_bytes() {
            let symbol = slice(frame, diff.symbol);
            return (
                IGNORED,
                Some(format!("diff for {symbol}, book is {}", self.market_id)),
            );
        }
        let levels = FrameLevels {
            frame,
            bids: &diff.bids,
            asks: &diff.asks,
        };
        self.step(
            py,
            diff.first_update_id,
            diff.final_update_id,
            diff.event_time,
            levels,
        )
    }

    /// A diff with Python levels (the general parser's `DepthDiff`, or a test's).
    #[pyo3(signature = (symbol, event_time, first_update_id, final_update_id, bids, asks))]
    #[allow(clippy::too_many_arguments)] // the fields of a DepthDiff, as Python passes them
    fn on_diff(
        &mut self,
        py: Python<'_>,
        symbol: &str,
        event_time: i64,
        first_update_id: i64,
        final_update_id: i64,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
    ) -> PyResult<Res> {
        if symbol != self.market_id {
            return Ok((
                IGNORED,
                Some(format!("diff for {symbol}, book is {}", self.market_id)),
            ));
        }
        let levels = PyLevels::from_py(bids, asks)?;
        if self.in_sync {
            if let Some(PyLevel::Odd(p, q)) = levels.odd() {
                // The pure book raises a TypeError here too (a DepthDiff holds strings only).
                let p = py_repr(py, p);
                let q = py_repr(py, q);
                return Err(PyTypeError::new_err(format!(
                    "level ({p}, {q}) is not two strings"
                )));
            }
        }
        Ok(self.step(py, first_update_id, final_update_id, event_time, levels))
    }

    /// Apply a REST snapshot and then every buffered diff that follows it (`BookSync.on_snapshot`).
    fn on_snapshot(
        &mut self,
        py: Python<'_>,
        symbol: &str,
        last_update_id: i64,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
    ) -> PyResult<Res> {
        if symbol != self.market_id {
            return Ok((
                INVALID,
                Some(format!("snapshot for {symbol}, book is {}", self.market_id)),
            ));
        }
        let bids = levels_from(bids)?;
        let asks = levels_from(asks)?;
        let last = last_update_id;
        while self.buffer.front().is_some_and(|d| d.last <= last) {
            self.buffer.pop_front();
        }
        if let Some(front) = self.buffer.front() {
            if front.first > last + 1 {
                return Ok((
                    SNAPSHOT_TOO_OLD,
                    Some(format!(
                        "snapshot lastUpdateId={last} but buffered stream starts at U={}",
                        front.first
                    )),
                ));
            }
        }
        self.book.clear();
        self.top = None;
        let loaded = apply_side(&mut self.book.bids, bids.iter().map(pair))
            .and_then(|()| apply_side(&mut self.book.asks, asks.iter().map(pair)));
        if let Err(e) = loaded {
            self.book.clear();
            return Ok((INVALID, Some(format!("snapshot: {}", describe(py, &e)))));
        }
        self.in_sync = true;
        self.last_id = last;
        if self.book.crossed() {
            self.lose_sync(None);
            return Ok((CROSSED, Some("snapshot is crossed".to_owned())));
        }
        let mut pending: VecDeque<Owned> = std::mem::take(&mut self.buffer);
        while let Some(d) = pending.pop_front() {
            let result = self.on_owned(py, d);
            if needs_snapshot(result.0) {
                // Keep the diffs after the failing one: the next snapshot may line up with them.
                for rest in pending.drain(..) {
                    self.push(rest);
                }
                return Ok(result);
            }
        }
        Ok((
            SYNCED,
            Some(format!(
                "lastUpdateId={last}, applied up to {}",
                self.last_id
            )),
        ))
    }

    fn crossed(&mut self) -> bool {
        self.book.crossed()
    }

    /// (bid, bid_qty, ask, ask_qty) strings, or None while either side is empty. The same tuple
    /// object comes back until a diff is applied, so a caller may cache what it built from it.
    fn top_strings(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        if let Some(t) = &self.top {
            return Ok(Some(t.clone_ref(py)));
        }
        let (Some((bk, bid)), Some((ak, ask))) = (self.book.bids.best(), self.book.asks.best())
        else {
            return Ok(None);
        };
        let t = PyTuple::new(
            py,
            [
                bid.price.to_str(),
                bid.qty.to_str(),
                ask.price.to_str(),
                ask.qty.to_str(),
            ],
        )?
        .unbind();
        self.top_src = Some((bk, bid.clone(), ak, ask.clone()));
        self.top = Some(t.clone_ref(py));
        Ok(Some(t))
    }

    /// Up to `depth` levels of one side, best first, as the exchange's (price, qty) strings.
    fn levels(&self, bids: bool, depth: usize) -> Vec<(String, String)> {
        let side = if bids {
            &self.book.bids
        } else {
            &self.book.asks
        };
        side.sorted(depth)
            .into_iter()
            .map(|l| (l.price.to_str().to_owned(), l.qty.to_str().to_owned()))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.book.len()
    }
}

/// The exact integer key of a price string (units of 10^-18), or ValueError: for tests.
#[pyfunction]
fn level_key(price: &str) -> PyResult<u128> {
    book::level_key(price.as_bytes()).map_err(|k| PyValueError::new_err(format!("{k:?}")))
}

#[pymodule]
fn tradefleet_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DepthSync>()?;
    m.add_class::<ParsedDiff>()?;
    m.add_function(wrap_pyfunction!(parse_depth, m)?)?;
    m.add_function(wrap_pyfunction!(level_key, m)?)?;
    // The interface `tradefleet.domain.native_book` calls; bump it with any change it relies on.
    m.add("API", 2)?;
    Ok(())
}
