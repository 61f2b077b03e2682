//! Cost of watching an MCP SSE answer for JSON-RPC errors, against plain forwarding.
//!
//! The stream is ~1 MiB of `event: message` events whose data are JSON-RPC results of 200 to
//! 2000 bytes, one in twenty an error, cut into 16 KiB chunks as a body would arrive. Three
//! variants: ASCII text as a Rust or Node server writes it; text with non-ASCII `\uXXXX`
//! escapes in every event as Python's `json.dumps` writes it by default; and a worst case with
//! a `\u0065` in every event, which defeats the pre-filter of `jsonrpc::error_codes` and forces
//! the full (skip-everything) serde parse of every event.
//!
//! Run: `cargo bench -p warden-proxy --bench observe -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_proxy::observe::jsonrpc::{self, JsonRpcSseWatcher};
use warden_proxy::observe::sse::SseObserver;

const STREAM_BYTES: usize = 1 << 20;
const CHUNK_BYTES: usize = 16 * 1024;
const MAX_EVENT_BYTES: usize = 4 << 20;

/// Deterministic pseudo-random numbers (xorshift64), so every run measures the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low) as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    Ascii,
    PythonEscaped,
    ForcedParse,
}

/// Builds the stream and returns it with the number of error events in it.
fn stream(kind: Text) -> (Vec<u8>, usize) {
    let escaped = kind == Text::PythonEscaped;
    const WORDS: [&str; 12] = [
        "lorem", "ipsum", "dolor", "sit", "amet", "file", "line", "commit", "issue", "branch",
        "the", "result",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(STREAM_BYTES + 4096);
    let mut errors = 0;
    let mut id = 0;
    while out.len() < STREAM_BYTES {
        id += 1;
        let target = rng.range(200, 2000);
        let mut text = String::new();
        while text.len() < target {
            text.push_str(WORDS[rng.range(0, WORDS.len())]);
            text.push_str(if escaped && rng.range(0, 8) == 0 {
                " caf\\u00e9 "
            } else if rng.range(0, 10) == 0 {
                "\\n"
            } else {
                " "
            });
        }
        if escaped && !text.contains("\\u") {
            text.push_str("\\u2014");
        }
        if kind == Text::ForcedParse {
            text.push_str(" \\u0065");
        }
        let json = if id % 20 == 0 {
            errors += 1;
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"tool failed","data":{{"detail":"{text}"}}}}}}"#
            )
        } else {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":false}}}}"#
            )
        };
        out.extend_from_slice(format!("event: message\nid: {id}\ndata: {json}\n\n").as_bytes());
    }
    (out, errors)
}

fn bench(c: &mut Criterion) {
    for (name, kind) in [
        ("ascii", Text::Ascii),
        ("python_escaped", Text::PythonEscaped),
        ("forced_parse", Text::ForcedParse),
    ] {
        let (stream, errors) = stream(kind);
        let chunks: Vec<&[u8]> = stream.chunks(CHUNK_BYTES).collect();

        // Sanity: the watcher sees exactly the errors that were written.
        let mut watcher = JsonRpcSseWatcher::new(MAX_EVENT_BYTES);
        let mut found = 0;
        for chunk in &chunks {
            watcher.feed(chunk, &mut |_| found += 1);
        }
        assert_eq!(found, errors, "{name}: error count");

        let mut group = c.benchmark_group(format!("observe/{name}"));
        group.throughput(Throughput::Bytes(stream.len() as u64));

        // Baseline: what forwarding itself does to every byte at least once, a copy of each
        // chunk into a reused buffer (as into a socket or TLS record buffer).
        group.bench_function("copy_baseline", |b| {
            let mut buf = Vec::with_capacity(CHUNK_BYTES);
            b.iter(|| {
                for chunk in &chunks {
                    buf.clear();
                    buf.extend_from_slice(black_box(chunk));
                    black_box(&buf);
                }
            });
        });

        // Event framing alone.
        group.bench_function("sse_only", |b| {
            let mut observer = SseObserver::new(MAX_EVENT_BYTES);
            b.iter(|| {
                let mut events = 0usize;
                for chunk in &chunks {
                    observer.feed(black_box(chunk), &mut |data| {
                        events += black_box(data).len();
                    });
                }
                black_box(events)
            });
        });

        // What the proxy runs: framing plus the JSON-RPC error scan of every event.
        group.bench_function("sse_jsonrpc", |b| {
            let mut observer = SseObserver::new(MAX_EVENT_BYTES);
            b.iter(|| {
                let mut codes = 0i64;
                for chunk in &chunks {
                    observer.feed(black_box(chunk), &mut |data| {
                        jsonrpc::error_codes(data, &mut |code| codes += code);
                    });
                }
                black_box(codes)
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
