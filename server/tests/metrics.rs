//! `/metrics` against a real server: what the counters count, and a strict check of the text
//! (the rules of `promtool check metrics` and of the exposition formats, written out here
//! because promtool is seldom installed; when it is on the PATH it checks the text too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::CONTENT_TYPE;
use hyper_util::rt::TokioIo;
use tickwire_bot_client::{Client, Event};
use tickwire_shared::InputSeq;
use tokio::time::timeout;

mod support;
use support::{TestServer, WAIT};

/// GETs `/metrics`; returns the Content-Type and the body.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let content_type = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of an unlabelled sample.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Reads events until a snapshot shows that the server applied input `seq`.
async fn wait_applied(c: &mut Client, seq: InputSeq) {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout(WAIT, c.next_event()).await.unwrap().unwrap() {
            Event::Snapshot { message, .. } if message.last_input >= seq => return,
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
            _ => assert!(Instant::now() < deadline, "input {seq:?} never applied"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_counts_each_client_message_once() {
    // Within the session's burst of 32 messages, so none is rate-limited.
    const INPUTS: u64 = 12;
    let srv = TestServer::start(|_| {}).await;
    let (_, before) = scrape(srv.addr).await;
    let mut c = srv.ws_client("counted").await;
    let mut last = InputSeq(0);
    for _ in 0..INPUTS {
        last = c.send_input(0, 0, 0, 0).await.unwrap();
    }
    // Once a snapshot acknowledges the last input, the room has taken every Input off its
    // queue: a second count there would be in the figure by now.
    wait_applied(&mut c, last).await;
    let (_, after) = scrape(srv.addr).await;
    let delta = |name| sample(&after, name) - sample(&before, name);
    assert_eq!(delta("tickwire_inputs_rate_limited_total"), 0);
    assert_eq!(delta("tickwire_inputs_dropped_total"), 0);
    // "Client messages decoded": the Hello and each Input.
    assert_eq!(
        delta("tickwire_inbound_messages_total"),
        INPUTS + 1,
        "{after}"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_passes_a_strict_exposition_check() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.ws_client("scraped").await;
    let seq = c.send_input(1, 0, 0, 0).await.unwrap();
    wait_applied(&mut c, seq).await;
    let (content_type, text) = scrape(srv.addr).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let problems = exposition_problems(&text, Format::of(&content_type));
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    // The names the README and the other tests rely on.
    for name in [
        "tickwire_ticks_total",
        "tickwire_inbound_messages_total",
        "tickwire_connected_clients",
        "tickwire_tick_budget_seconds",
        "tickwire_tick_duration_seconds",
        "tickwire_disconnects_total",
        "tickwire_rooms",
        "tickwire_room_sessions",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert!(text.contains("tickwire_rooms{kind=\"arena\"} 1"), "{text}");
    promtool_check(&text);
    srv.shutdown().await;
}

/// Runs `promtool check metrics` on `text` when promtool is installed.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not on the PATH: only the check written here ran");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exposition format a body claims through its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `text/plain; version=0.0.4`: counter families are named with `_total`, no `# EOF`.
    Text004,
    /// `application/openmetrics-text`: counter families without `_total` (their samples
    /// have it), `# UNIT` allowed, and `# EOF` as the last line.
    OpenMetrics,
}

impl Format {
    fn of(content_type: &str) -> Format {
        let params: Vec<&str> = content_type.split(';').map(str::trim).collect();
        match params[0] {
            "text/plain" if params.contains(&"version=0.0.4") => Format::Text004,
            "application/openmetrics-text" => Format::OpenMetrics,
            other => panic!("not a metrics content type: {other}"),
        }
    }
}

/// A family's metadata and what has been seen of it.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    unit: bool,
    samples: bool,
}

/// One histogram series (its labels without `le`) as read so far.
#[derive(Debug, Default)]
struct Histogram {
    /// `(le, cumulative count)` in order of appearance.
    buckets: Vec<(f64, f64)>,
    sum: bool,
    count: Option<f64>,
}

/// Every way `text` breaks the exposition format `format` (empty when it is valid): the
/// rules promtool's parser and linter apply, plus the ones of `format` itself.
fn exposition_problems(text: &str, format: Format) -> Vec<String> {
    let mut bad = Vec::new();
    if !text.ends_with('\n') {
        bad.push("the text does not end with a newline".to_owned());
    }
    let lines: Vec<&str> = text.lines().collect();
    let eofs: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == "# EOF").collect();
    match format {
        Format::Text004 if !eofs.is_empty() => {
            bad.push("# EOF in text format 0.0.4 (it is OpenMetrics')".to_owned());
        }
        Format::OpenMetrics if eofs != [lines.len().saturating_sub(1)] => {
            bad.push("OpenMetrics needs exactly one # EOF, as the last line".to_owned());
        }
        _ => {}
    }
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut histograms: HashMap<(String, String), Histogram> = HashMap::new();
    // Metadata or a sample of `family`: it must not come back once another family started.
    let mut enter = |family: &str, current: &mut Option<String>, bad: &mut Vec<String>| {
        if current.as_deref() != Some(family) {
            if let Some(prev) = current.take() {
                finished.insert(prev);
            }
            if finished.contains(family) {
                bad.push(format!("{family} is split into more than one group"));
            }
            *current = Some(family.to_owned());
        }
    };
    for (n, line) in lines.iter().enumerate() {
        let at = n + 1;
        if line.is_empty() || line.contains('\r') {
            bad.push(format!("line {at}: empty line or carriage return"));
            continue;
        }
        if *line == "# EOF" {
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (what, name, rest) = (words.next(), words.next(), words.next());
            let known = matches!(what, Some("HELP" | "TYPE"))
                || (what == Some("UNIT") && format == Format::OpenMetrics);
            let Some(name) = name.filter(|n| known && valid_name(n, true)) else {
                bad.push(format!("line {at}: not a HELP, TYPE or UNIT line: {line}"));
                continue;
            };
            enter(name, &mut current, &mut bad);
            let f = families.entry(name.to_owned()).or_default();
            match what {
                Some("HELP") => {
                    if f.help || (format == Format::Text004 && f.samples) {
                        bad.push(format!("line {at}: second or late HELP for {name}"));
                    }
                    f.help = true;
                }
                Some("TYPE") => {
                    let kinds: &[&str] = match format {
                        Format::Text004 => &["counter", "gauge", "histogram", "summary", "untyped"],
                        Format::OpenMetrics => &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown",
                        ],
                    };
                    let kind = rest.unwrap_or("");
                    if !f.kind.is_empty() || f.samples {
                        bad.push(format!("line {at}: second or late TYPE for {name}"));
                    }
                    if !kinds.contains(&kind) {
                        bad.push(format!("line {at}: unknown type {kind:?}"));
                    }
                    let total = name.ends_with("_total");
                    match (kind, format) {
                        ("counter", Format::Text004) if !total => {
                            bad.push(format!("line {at}: counter {name} does not end in _total"));
                        }
                        ("counter", Format::OpenMetrics) if total => {
                            bad.push(format!(
                                "line {at}: OpenMetrics counter family {name} ends in _total"
                            ));
                        }
                        ("counter", _) => {}
                        _ if total => {
                            bad.push(format!("line {at}: {kind} {name} ends in _total"));
                        }
                        _ => {}
                    }
                    f.kind = kind.to_owned();
                }
                _ => {
                    let unit = rest.unwrap_or("");
                    if f.unit || f.samples || !name.ends_with(&format!("_{unit}")) {
                        bad.push(format!(
                            "line {at}: second or late UNIT, or not the name's suffix"
                        ));
                    }
                    f.unit = true;
                }
            }
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            bad.push(format!("line {at}: not a sample: {line}"));
            continue;
        };
        let Some((family, suffix)) = family_of(&name, &families, format) else {
            bad.push(format!("line {at}: {name} has no preceding # TYPE"));
            continue;
        };
        enter(&family, &mut current, &mut bad);
        let f = families.get_mut(&family).expect("family_of found it");
        f.samples = true;
        if !f.help {
            bad.push(format!(
                "line {at}: {family} has no HELP before its samples"
            ));
        }
        let mut names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            bad.push(format!("line {at}: a label repeated"));
        }
        let mut sorted = labels.clone();
        sorted.sort();
        if !series.insert(format!("{name}{sorted:?}")) {
            bad.push(format!("line {at}: duplicate series {name}{sorted:?}"));
        }
        if f.kind == "counter" && (value < 0.0 || value.is_nan()) {
            bad.push(format!("line {at}: counter {name} is {value}"));
        }
        let le = labels
            .iter()
            .find(|(k, _)| k == "le")
            .map(|(_, v)| v.clone());
        if f.kind != "histogram" && f.kind != "gaugehistogram" {
            if le.is_some() {
                bad.push(format!("line {at}: le label outside a histogram"));
            }
            continue;
        }
        let key: Vec<_> = sorted.iter().filter(|(k, _)| k != "le").collect();
        let h = histograms
            .entry((family.clone(), format!("{key:?}")))
            .or_default();
        match (suffix, le) {
            ("_bucket", Some(le)) => match parse_value(&le) {
                Some(le) => h.buckets.push((le, value)),
                None => bad.push(format!("line {at}: le={le:?} is not a number")),
            },
            ("_bucket", None) => bad.push(format!("line {at}: a bucket without le")),
            ("_sum", None) => h.sum = true,
            ("_count", None) => h.count = Some(value),
            _ => bad.push(format!("line {at}: {name} does not belong in a histogram")),
        }
    }
    for ((family, labels), h) in &histograms {
        let what = format!("histogram {family}{labels}");
        if h.buckets
            .windows(2)
            .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
        {
            bad.push(format!("{what}: bounds not rising or counts falling"));
        }
        match h.buckets.last() {
            Some(&(le, n)) if le == f64::INFINITY => {
                if h.count != Some(n) {
                    bad.push(format!("{what}: _count is not the +Inf bucket"));
                }
            }
            _ => bad.push(format!("{what}: no le=\"+Inf\" bucket last")),
        }
        if !h.sum || h.count.is_none() {
            bad.push(format!("{what}: _sum or _count missing"));
        }
    }
    for (name, f) in &families {
        if f.kind.is_empty() {
            bad.push(format!("{name}: HELP without TYPE"));
        }
    }
    bad
}

/// The family a sample name belongs to, and the suffix it carries.
fn family_of(
    name: &str,
    families: &HashMap<String, Family>,
    format: Format,
) -> Option<(String, &'static str)> {
    let kind = |n: &str| families.get(n).map(|f| f.kind.as_str());
    let bare = match format {
        Format::Text004 => ["counter", "gauge", "untyped", "summary"].as_slice(),
        Format::OpenMetrics => ["gauge", "unknown", "summary", "stateset"].as_slice(),
    };
    if kind(name).is_some_and(|k| bare.contains(&k)) {
        return Some((name.to_owned(), ""));
    }
    for suffix in [
        "_bucket", "_sum", "_count", "_total", "_created", "_info", "_gcount", "_gsum",
    ] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        let fits = match (kind(base), suffix) {
            (Some("histogram"), "_bucket" | "_sum" | "_count") => true,
            (Some("summary"), "_sum" | "_count") => true,
            (Some("counter"), "_total" | "_created") => format == Format::OpenMetrics,
            (Some("info"), "_info") => true,
            (Some("gaugehistogram"), "_bucket" | "_gcount" | "_gsum") => true,
            _ => false,
        };
        if fits {
            return Some((base.to_owned(), suffix));
        }
    }
    None
}

/// A metric name (`colons`) or a label name.
fn valid_name(s: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') => s.parse().ok(),
        _ => None,
    }
}

/// A sample's labels, values unescaped, in their order.
type Labels = Vec<(String, String)>;

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    if !valid_name(name, true) {
        return None;
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = &rest[..eq];
            if !valid_name(key, false) {
                return None;
            }
            let mut chars = rest[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        _ => return None,
                    },
                    (i, '"') => break i,
                    (_, '\n') => return None,
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            rest = &rest[eq + 1..][close + 2..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut words = rest.strip_prefix(' ')?.split(' ');
    let value = parse_value(words.next()?)?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>().ok()?;
    }
    if words.next().is_some() {
        return None;
    }
    Some((name.to_owned(), labels, value))
}

/// The checker itself, on texts known to be right or wrong: it must catch what it claims to.
#[test]
fn the_exposition_check_catches_broken_texts() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n\
                # HELP g G.\n# TYPE g gauge\ng{k=\"x\\\"y\"} 2\ng{k=\"z\"} -1.5\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.7\nh_count 2\n";
    assert_eq!(
        exposition_problems(good, Format::Text004),
        Vec::<String>::new()
    );
    let om = "# HELP a A.\n# TYPE a counter\na_total 1\n# HELP s_seconds S.\n# TYPE s_seconds gauge\n# UNIT s_seconds seconds\ns_seconds 1\n# EOF\n";
    assert_eq!(
        exposition_problems(om, Format::OpenMetrics),
        Vec::<String>::new()
    );
    let broken = [
        (
            "counter without _total",
            "# HELP a A.\n# TYPE a counter\na 1\n",
        ),
        (
            "gauge with _total",
            "# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n",
        ),
        ("no TYPE", "# HELP a A.\na 1\n"),
        ("no HELP", "# TYPE a gauge\na 1\n"),
        (
            "TYPE after its sample",
            "# HELP a A.\na 1\n# TYPE a gauge\n",
        ),
        (
            "duplicate series",
            "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\na{k=\"1\"} 2\n",
        ),
        ("EOF in 0.0.4", "# HELP a A.\n# TYPE a gauge\na 1\n# EOF\n"),
        (
            "split family",
            "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{k=\"2\"} 1\n",
        ),
        (
            "negative counter",
            "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
        ),
        ("bad value", "# HELP a A.\n# TYPE a gauge\na one\n"),
        (
            "unterminated label",
            "# HELP a A.\n# TYPE a gauge\na{k=\"1} 1\n",
        ),
        (
            "no +Inf bucket",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ),
        (
            "falling buckets",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        ),
        ("no trailing newline", "# HELP a A.\n# TYPE a gauge\na 1"),
    ];
    for (what, text) in broken {
        assert!(
            !exposition_problems(text, Format::Text004).is_empty(),
            "{what}"
        );
    }
    let om_broken = [
        ("no EOF", "# HELP a A.\n# TYPE a counter\na_total 1\n"),
        (
            "_total family",
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# EOF\n",
        ),
        (
            "bare counter sample",
            "# HELP a A.\n# TYPE a counter\na 1\n# EOF\n",
        ),
        (
            "unit not in the name",
            "# HELP a A.\n# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n",
        ),
    ];
    for (what, text) in om_broken {
        assert!(
            !exposition_problems(text, Format::OpenMetrics).is_empty(),
            "{what}"
        );
    }
}
