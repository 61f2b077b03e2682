//! Incremental `text/event-stream` observer.
//!
//! Implements the WHATWG HTML "interpreting an event stream" rules (§9.2.6) for the one thing
//! warden needs: the data of every dispatched event. The proxy forwards each body chunk as it
//! arrives; [`SseObserver::feed`] only looks at the chunk and calls back with each event that
//! completes in it, so the observer adds no latency and no copy of the stream.
//!
//! Design notes:
//!
//! * **No line buffer.** A line that straddles two chunks is parsed as a state machine instead
//!   of being reassembled: the only field whose name matters is `data` (4 bytes, kept in a tiny
//!   array), and a `data` value is appended straight to the event's data buffer. Comments and
//!   the `event`, `id` and `retry` fields are accepted and ignored, so their values are never
//!   stored. Memory is therefore bounded by the event bound alone, whatever the line lengths.
//! * **Zero copy in the common case.** An event whose only `data` line lies entirely inside one
//!   chunk (what MCP servers send: `event: message\ndata: {...}\n\n`) is handed to the callback
//!   as a slice of that chunk. The data buffer is only used when an event spans chunks or has
//!   several `data` lines.
//! * **Bounded.** An event whose data would exceed `max_event_bytes` is dropped (not
//!   dispatched) and the rest of it skipped; the buffer never grows past the bound.
//! * **Bytes, not text.** The spec decodes the stream as UTF-8 first; warden compares field
//!   names as bytes and passes data through undecoded. Invalid UTF-8 can only affect data that
//!   the JSON parser would reject anyway, and skipping the decode keeps the scan at `memchr`
//!   speed.

use memchr::{memchr, memchr2};

/// The UTF-8 byte order mark, which the spec's decode step strips from the stream start.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The one field name whose value is kept.
const DATA: &[u8; 4] = b"data";

/// Capacity kept across events: enough for typical MCP messages without reallocating, while a
/// long-lived stream that once carried a huge event does not pin that memory forever.
const RETAIN_CAPACITY: usize = 64 * 1024;

/// First allocation of the data buffer; avoids a string of tiny reallocations.
const MIN_CAPACITY: usize = 256;

/// Where the parser is inside the current line (which may have begun in an earlier chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Nothing of the line seen yet.
    Start,
    /// Inside the field name; the bytes so far are in `SseObserver::name`.
    Name,
    /// A line starting with `:`; ignored to its end.
    Comment,
    /// Inside the value of a `data` field. `fresh`: no value byte seen yet, so a single
    /// leading space may still have to be stripped.
    Data { fresh: bool },
    /// Inside the value of any other field (`event`, `id`, `retry`, unknown): ignored.
    Ignored,
}

/// Progress through a possible byte order mark at the very start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bom {
    /// This many leading bytes of the stream matched the BOM so far (0..=2).
    Matching(usize),
    /// The stream start has been decided on.
    Done,
}

/// Watches a Server-Sent Events stream chunk by chunk and reports each event's data.
///
/// Feed it every chunk of one response body, in order, then call [`finish`](Self::finish).
/// Combine with [`super::jsonrpc::error_codes`] to count JSON-RPC errors:
///
/// ```
/// use warden_proxy::observe::{jsonrpc, sse::SseObserver};
///
/// let mut observer = SseObserver::new(1 << 20);
/// let mut codes = Vec::new();
/// for chunk in [&b"event: message\r\ndata: {\"error\":"[..], b"{\"code\":-32601}}\r\n\r\n"] {
///     observer.feed(chunk, &mut |data| jsonrpc::error_codes(data, &mut |code| codes.push(code)));
/// }
/// assert_eq!(codes, [-32601]);
/// ```
/// ([`super::jsonrpc::JsonRpcSseWatcher`] does exactly that.)
#[derive(Debug)]
pub struct SseObserver {
    /// Largest event data (after joining lines) that is still dispatched.
    max_event_bytes: usize,
    /// The current event's data as the spec's "data buffer": every `data` value followed by
    /// LF. Never longer than `max_event_bytes + 1`.
    data: Vec<u8>,
    /// The current event exceeded the bound: ignore it up to its blank line.
    dropped: bool,
    line: Line,
    /// The first bytes of the current field name; only "data" matters, so 4 suffice.
    name: [u8; DATA.len()],
    /// Length of the field name so far; `DATA.len() + 1` means "longer, so not `data`".
    name_len: usize,
    /// The previous chunk ended in CR: an LF starting the next chunk ends no further line.
    pending_cr: bool,
    bom: Bom,
    /// Events dropped for exceeding the bound since construction.
    oversized: u64,
}

impl SseObserver {
    /// An observer that dispatches events of at most `max_event_bytes` of data.
    ///
    /// The bound is what one stream can cost in memory (plus a few bytes of state), whatever
    /// the upstream sends; nothing is allocated until an event actually needs buffering.
    #[must_use]
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            data: Vec::new(),
            dropped: false,
            line: Line::Start,
            name: [0; DATA.len()],
            name_len: 0,
            pending_cr: false,
            bom: Bom::Matching(0),
            oversized: 0,
        }
    }

    /// Observes the next chunk of the stream, calling `on_data` once for every event that
    /// completes in it, with the event's data (its `data` lines joined by LF).
    ///
    /// Chunks may split the stream anywhere, including inside a CRLF or the BOM. The chunk is
    /// only read; `on_data` may receive a slice of it or of the observer's own buffer, valid
    /// for the duration of the call.
    pub fn feed(&mut self, chunk: &[u8], on_data: &mut impl FnMut(&[u8])) {
        let mut chunk = chunk;
        if let Bom::Matching(mut matched) = self.bom {
            let mut i = 0;
            while matched < BOM.len() && i < chunk.len() && chunk[i] == BOM[matched] {
                matched += 1;
                i += 1;
            }
            if matched == BOM.len() {
                self.bom = Bom::Done;
                chunk = &chunk[i..];
            } else if i == chunk.len() {
                // Every byte so far is a BOM prefix: undecided until more arrives.
                self.bom = Bom::Matching(matched);
                return;
            } else {
                // Not a BOM after all: the bytes held back are ordinary stream content.
                self.bom = Bom::Done;
                self.scan(&BOM[..matched], on_data);
                chunk = &chunk[i..];
            }
        }
        self.scan(chunk, on_data);
    }

    /// Ends the stream, returning whether an incomplete event was discarded.
    ///
    /// Per the spec, "once the end of the file is reached, any pending data must be
    /// discarded": an event whose terminating blank line never arrived is **not** dispatched
    /// (a client would not see it either), so nothing is reported here. The observer is reset
    /// and can watch a new stream.
    pub fn finish(&mut self) -> bool {
        let incomplete = !self.data.is_empty() || matches!(self.line, Line::Data { .. });
        self.data.clear();
        self.data.shrink_to(RETAIN_CAPACITY);
        self.dropped = false;
        self.line = Line::Start;
        self.name_len = 0;
        self.pending_cr = false;
        self.bom = Bom::Matching(0);
        incomplete
    }

    /// How many events were dropped because their data exceeded `max_event_bytes`.
    #[must_use]
    pub fn oversized_events(&self) -> u64 {
        self.oversized
    }

    /// Splits a chunk (BOM already handled) into lines and processes them.
    fn scan(&mut self, chunk: &[u8], on_data: &mut impl FnMut(&[u8])) {
        let mut pos = 0;
        if self.pending_cr
            && let Some(&first) = chunk.first()
        {
            self.pending_cr = false;
            if first == b'\n' {
                pos = 1;
            }
        }
        // The current event's single data line, still in `chunk` (see the module notes).
        // Invariant: `Some` only while `data` is empty and the event is not dropped.
        let mut borrowed: Option<(usize, usize)> = None;
        while pos < chunk.len() {
            let Some(offset) = memchr2(b'\n', b'\r', &chunk[pos..]) else {
                self.materialize(chunk, &mut borrowed);
                self.fragment(&chunk[pos..]);
                return;
            };
            let end = pos + offset;
            if self.line == Line::Start {
                self.whole_line(chunk, pos, end, &mut borrowed, on_data);
            } else {
                // The tail of a line begun in an earlier chunk.
                self.materialize(chunk, &mut borrowed);
                self.fragment(&chunk[pos..end]);
                self.end_line(on_data);
            }
            pos = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        self.materialize(chunk, &mut borrowed);
    }

    /// Processes `chunk[start..end]`, a complete line that began in this chunk.
    fn whole_line(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        borrowed: &mut Option<(usize, usize)>,
        on_data: &mut impl FnMut(&[u8]),
    ) {
        let line = &chunk[start..end];
        match line.first() {
            None => self.dispatch(chunk, borrowed, on_data),
            Some(b':') => {}
            Some(_) => {
                let (name, mut value_start) = match memchr(b':', line) {
                    Some(colon) => (&line[..colon], start + colon + 1),
                    None => (line, end),
                };
                if name == DATA {
                    if value_start < end && chunk[value_start] == b' ' {
                        value_start += 1;
                    }
                    self.data_line(chunk, value_start, end, borrowed);
                }
            }
        }
    }

    /// Appends the complete data line `chunk[start..end]` to the event, borrowing it if it is
    /// the event's first.
    fn data_line(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        borrowed: &mut Option<(usize, usize)>,
    ) {
        if self.dropped {
            return;
        }
        if borrowed.is_none() && self.data.is_empty() {
            if end - start > self.max_event_bytes {
                self.drop_event();
            } else {
                *borrowed = Some((start, end));
            }
            return;
        }
        self.materialize(chunk, borrowed);
        self.push_value(&chunk[start..end]);
        self.push_lf();
    }

    /// Moves a borrowed data line into the buffer, before the chunk it points into goes away
    /// or before another line is appended after it.
    fn materialize(&mut self, chunk: &[u8], borrowed: &mut Option<(usize, usize)>) {
        if let Some((start, end)) = borrowed.take() {
            self.push_value(&chunk[start..end]);
            self.push_lf();
        }
    }

    /// Processes part of a line with no line end in it, continuing from `self.line`.
    fn fragment(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        loop {
            match self.line {
                Line::Start => match rest.first() {
                    None => return,
                    Some(b':') => {
                        self.line = Line::Comment;
                        return;
                    }
                    Some(_) => {
                        self.line = Line::Name;
                        self.name_len = 0;
                    }
                },
                Line::Name => {
                    let colon = memchr(b':', rest);
                    self.push_name(&rest[..colon.unwrap_or(rest.len())]);
                    let Some(colon) = colon else { return };
                    self.line = if self.name_is_data() {
                        Line::Data { fresh: true }
                    } else {
                        Line::Ignored
                    };
                    rest = &rest[colon + 1..];
                }
                Line::Data { fresh } => {
                    if rest.is_empty() {
                        return;
                    }
                    if fresh {
                        self.line = Line::Data { fresh: false };
                        if rest[0] == b' ' {
                            rest = &rest[1..];
                        }
                    }
                    self.push_value(rest);
                    return;
                }
                Line::Comment | Line::Ignored => return,
            }
        }
    }

    /// Ends a line processed by [`fragment`](Self::fragment).
    fn end_line(&mut self, on_data: &mut impl FnMut(&[u8])) {
        match self.line {
            Line::Start => self.dispatch(&[], &mut None, on_data),
            // A field with no colon has an empty value: `data` alone adds an empty line.
            Line::Name if self.name_is_data() => self.push_lf(),
            Line::Data { .. } => self.push_lf(),
            Line::Name | Line::Comment | Line::Ignored => {}
        }
        self.line = Line::Start;
    }

    /// A blank line: dispatches the event if it has data and was not dropped, and resets.
    fn dispatch(
        &mut self,
        chunk: &[u8],
        borrowed: &mut Option<(usize, usize)>,
        on_data: &mut impl FnMut(&[u8]),
    ) {
        if self.dropped {
            self.dropped = false;
            return;
        }
        if let Some((start, end)) = borrowed.take() {
            on_data(&chunk[start..end]);
            return;
        }
        // The buffer ends in the LF pushed after the last line; the spec removes it.
        if let Some((_, data)) = self.data.split_last() {
            on_data(data);
            self.data.clear();
            if self.data.capacity() > RETAIN_CAPACITY {
                self.data.shrink_to(RETAIN_CAPACITY);
            }
        }
    }

    fn push_name(&mut self, bytes: &[u8]) {
        let len = self.name_len + bytes.len();
        if len <= DATA.len() {
            self.name[self.name_len..len].copy_from_slice(bytes);
            self.name_len = len;
        } else {
            self.name_len = DATA.len() + 1;
        }
    }

    fn name_is_data(&self) -> bool {
        self.name_len == DATA.len() && self.name == *DATA
    }

    /// Appends data bytes, dropping the event instead once it would exceed the bound.
    fn push_value(&mut self, bytes: &[u8]) {
        if self.dropped || bytes.is_empty() {
            return;
        }
        if self.data.len() + bytes.len() > self.max_event_bytes {
            self.drop_event();
            return;
        }
        self.reserve(bytes.len());
        self.data.extend_from_slice(bytes);
    }

    /// Ends a data line. The buffer may hold one byte more than the bound: the final LF,
    /// which is stripped before dispatch.
    fn push_lf(&mut self) {
        if self.dropped {
            return;
        }
        if self.data.len() > self.max_event_bytes {
            self.drop_event();
            return;
        }
        self.reserve(1);
        self.data.push(b'\n');
    }

    /// Grows the buffer geometrically, but never past `max_event_bytes + 1`, so an event just
    /// under the bound cannot cost twice the bound.
    fn reserve(&mut self, additional: usize) {
        let needed = self.data.len() + additional;
        if needed <= self.data.capacity() {
            return;
        }
        let target = needed
            .max(self.data.capacity().saturating_mul(2))
            .max(MIN_CAPACITY)
            .min(self.max_event_bytes.saturating_add(1))
            .max(needed);
        self.data.reserve_exact(target - self.data.len());
    }

    fn drop_event(&mut self) {
        self.dropped = true;
        self.oversized += 1;
        self.data.clear();
        // An oversized event is an anomaly: give back what it made us allocate.
        self.data.shrink_to(RETAIN_CAPACITY);
    }

    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in order and returns every dispatched event's data.
    fn run(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut observer = SseObserver::new(max);
        let mut events = Vec::new();
        for chunk in chunks {
            observer.feed(chunk, &mut |data| events.push(data.to_vec()));
        }
        events
    }

    fn whole(stream: &[u8]) -> Vec<Vec<u8>> {
        run(1 << 20, &[stream])
    }

    fn strings(events: &[Vec<u8>]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    /// A literal, non-incremental transcription of the spec, to check the observer against.
    fn reference(stream: &[u8]) -> Vec<Vec<u8>> {
        let stream = stream.strip_prefix(&BOM[..]).unwrap_or(stream);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < stream.len() {
            match stream[i] {
                b'\n' => {
                    lines.push(&stream[start..i]);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    lines.push(&stream[start..i]);
                    i += 1;
                    if stream.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    start = i;
                }
                _ => i += 1,
            }
        }
        // Bytes after the last line end form no line: discarded at EOF.
        let mut events = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        for line in lines {
            if line.is_empty() {
                if !data.is_empty() {
                    data.pop();
                    events.push(std::mem::take(&mut data));
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            if name == b"data" {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
        }
        events
    }

    const MIXED: &[u8] = b"\xEF\xBB\xBF: keep-alive comment\r\n\
        event: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n\
        data:first\ndata:  second\n\ndata\n\n\
        retry: 10\rdata: cr\r\r\
        :comment\n\nid: only-id\n\n\
        data: x\r\ndata: y\r\n\r\n\
        event:no-data\n\n\
        dat\n\ndataa: z\n\ndata: trailing";

    #[test]
    fn reference_agrees_on_the_mixed_stream() {
        let expected: Vec<&[u8]> = vec![b"{\"a\":1}", b"first\n second", b"", b"cr", b"x\ny"];
        assert_eq!(reference(MIXED), expected);
        assert_eq!(whole(MIXED), expected);
    }

    #[test]
    fn every_two_way_split_matches_whole_stream() {
        let expected = whole(MIXED);
        for split in 0..=MIXED.len() {
            let (a, b) = MIXED.split_at(split);
            assert_eq!(run(1 << 20, &[a, b]), expected, "split at {split}");
        }
    }

    #[test]
    fn every_three_way_split_matches_whole_stream() {
        let stream: &[u8] =
            b"\xEF\xBB\xBFdata: a\r\n\r\n:c\rdata:b\rdata\r\r\nid: 7\ndata: {\"x\":2}\n\n";
        let expected = reference(stream);
        assert_eq!(whole(stream), expected);
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let got = run(1 << 20, &[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(got, expected, "splits at {i}, {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_matches_whole_stream() {
        let chunks: Vec<&[u8]> = MIXED.chunks(1).collect();
        assert_eq!(run(1 << 20, &chunks), whole(MIXED));
    }

    #[test]
    fn line_endings_lf_crlf_cr_are_equivalent() {
        let lf = b"data: a\ndata: b\n\ndata: c\n\n";
        let crlf = b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n";
        let cr = b"data: a\rdata: b\r\rdata: c\r\r";
        let expected = vec![b"a\nb".to_vec(), b"c".to_vec()];
        assert_eq!(whole(lf), expected);
        assert_eq!(whole(crlf), expected);
        assert_eq!(whole(cr), expected);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        // Were the LF after the chunk-final CR a second line end, it would be a blank line
        // dispatching "a" early, and "b" would become a separate event.
        let got = run(1024, &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(strings(&got), ["a\nb"]);
        // A CR at a chunk end followed by a non-LF is still a line end on its own.
        let got = run(1024, &[b"data: a\r", b"\r"]);
        assert_eq!(strings(&got), ["a"]);
        // An empty chunk between CR and LF does not forget the CR.
        let got = run(1024, &[b"data: a\r", b"", b"\ndata: b\r\n\r\n"]);
        assert_eq!(strings(&got), ["a\nb"]);
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        let got = whole(b"data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1}\n\n");
        assert_eq!(strings(&got), ["{\"jsonrpc\":\"2.0\",\n\"id\":1}"]);
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        let got = whole(b": ping\n\nevent: message\nid: 3\nretry: 100\nfoo: bar\ndata: x\n\n");
        assert_eq!(strings(&got), ["x"]);
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(strings(&whole(b"data:  two\n\n")), [" two"]);
        assert_eq!(strings(&whole(b"data:none\n\n")), ["none"]);
        // Split right after the colon: the space arrives in the next chunk.
        assert_eq!(strings(&run(64, &[b"data:", b" v\n\n"])), ["v"]);
        assert_eq!(strings(&run(64, &[b"da", b"ta:", b"", b"  v\n\n"])), [" v"]);
    }

    #[test]
    fn bom_is_stripped_once_and_only_at_stream_start() {
        assert_eq!(strings(&whole(b"\xEF\xBB\xBFdata: a\n\n")), ["a"]);
        // Split inside the BOM.
        let got = run(64, &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(strings(&got), ["a"]);
        // A second BOM is part of the first field name, so the line is not `data`.
        assert!(whole(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n").is_empty());
        // A partial BOM is content: here it makes the field name unknown.
        assert!(run(64, &[b"\xEF\xBB", b"data: a\n\n"]).is_empty());
        // ... and a partial BOM followed by a line end is a (non-blank) line.
        let got = run(64, &[b"\xEF", b"\ndata: a\n\n"]);
        assert_eq!(strings(&got), ["a"]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(whole(b"\n\n\r\n:x\n\nevent: e\n\nid: 1\n\n").is_empty());
    }

    #[test]
    fn incomplete_final_event_is_discarded_at_finish() {
        let mut observer = SseObserver::new(64);
        let mut events = Vec::new();
        observer.feed(b"data: done\n\ndata: half", &mut |d| {
            events.push(d.to_vec())
        });
        assert_eq!(strings(&events), ["done"]);
        assert!(observer.finish());
        // The observer is reset: a new stream starts cleanly, BOM included.
        observer.feed(b"\xEF\xBB\xBFdata: next\n\n", &mut |d| {
            events.push(d.to_vec())
        });
        assert_eq!(strings(&events), ["done", "next"]);
        assert!(!observer.finish());
    }

    #[test]
    fn oversized_event_is_dropped_and_the_next_one_seen() {
        let stream = b"data: 0123456789\ndata: 0123456789\n\ndata: ok\n\n";
        // 21 bytes of joined data against a bound of 20.
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            let mut observer = SseObserver::new(20);
            let mut events = Vec::new();
            for chunk in [a, b] {
                observer.feed(chunk, &mut |d| events.push(d.to_vec()));
            }
            assert_eq!(strings(&events), ["ok"], "split at {split}");
            assert_eq!(observer.oversized_events(), 1);
        }
        // Exactly at the bound is still dispatched.
        let got = run(21, &[stream]);
        assert_eq!(strings(&got), ["0123456789\n0123456789", "ok"]);
        // A single borrowed line over the bound.
        let got = run(4, &[b"data: 12345\n\ndata: 1234\n\n"]);
        assert_eq!(strings(&got), ["1234"]);
    }

    #[test]
    fn megabyte_line_keeps_memory_bounded() {
        const MAX: usize = 64 * 1024;
        const SLACK: usize = 64;
        let big = vec![b'x'; 1 << 20];
        for prefix in [&b"data: "[..], b": ", b"id: ", b""] {
            let mut observer = SseObserver::new(MAX);
            let mut events = Vec::new();
            observer.feed(prefix, &mut |d| events.push(d.to_vec()));
            for chunk in big.chunks(4096) {
                observer.feed(chunk, &mut |d| events.push(d.to_vec()));
                assert!(observer.buffer_capacity() <= MAX + SLACK);
            }
            // The same megabyte in one chunk is never copied.
            observer.feed(&big, &mut |d| events.push(d.to_vec()));
            assert!(observer.buffer_capacity() <= MAX + SLACK);
            observer.feed(b"\n\ndata: after\n\n", &mut |d| events.push(d.to_vec()));
            assert_eq!(strings(&events), ["after"]);
        }
    }

    #[test]
    fn events_spanning_chunks_are_buffered_and_reported_once() {
        let mut observer = SseObserver::new(1024);
        let mut events = Vec::new();
        observer.feed(b"data: {\"id\":", &mut |d| events.push(d.to_vec()));
        assert!(events.is_empty());
        observer.feed(b"1}\n", &mut |d| events.push(d.to_vec()));
        assert!(events.is_empty());
        observer.feed(b"\ndata: 2\n\n", &mut |d| events.push(d.to_vec()));
        assert_eq!(strings(&events), ["{\"id\":1}", "2"]);
    }

    #[test]
    fn pseudo_random_streams_match_reference_under_random_chunking() {
        // Deterministic xorshift: no dev-dependency needed.
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 14] = [
            b"data",
            b"data:",
            b"data: ",
            b":",
            b" ",
            b"x",
            b"{}",
            b"\r",
            b"\n",
            b"\r\n",
            b"id",
            b"event: m",
            b"\xEF\xBB\xBF",
            b"da",
        ];
        for _ in 0..2000 {
            let mut stream = Vec::new();
            for _ in 0..(next() % 40) {
                let piece = pieces[(next() % pieces.len() as u64) as usize];
                stream.extend_from_slice(piece);
            }
            let expected = reference(&stream);
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = (next() % 6) as usize;
                let n = n.min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(run(1 << 20, &chunks), expected, "stream {stream:?}");
        }
    }
}
