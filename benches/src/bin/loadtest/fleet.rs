//! The `rooms` and `churn` scenarios: servers started with `--no-default-room`, players
//! coming in through the matchmaker.
//!
//! - `rooms`: the bots matchmake `join_or_create/arena` with `max_clients = --room-size`
//!   (default 8) through node 1 and connect where their seat says. The arena rooms keep the
//!   server's own `--room-npcs` (16 each) unless `--room-npcs` is given. With `--nodes N`
//!   (N > 1) a throwaway redis-server on a free loopback port is the shared directory and
//!   the nodes are `--redis URL --node-id node-i`; with one node there is no Redis (the
//!   in-process directory). Each node's CPU time and peak RSS come from /proc.
//! - `churn`: no game bots. At `--rate` per second (at most rate × duration times, within
//!   duration + 10 s): `POST /matchmake/create/arena`, connect one WebSocket client with the
//!   seat, close it. The server runs with `--room-idle 0.5`, so each empty room is disposed
//!   of. RSS is sampled after a warm-up, every 5 s, at the end of the loop and 5 s later;
//!   `GET /rooms` then counts the rooms still alive.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use tickwire_benches::RedisProcess;
use tickwire_bot_client::matchmake::{Mode, request_seat};
use tickwire_bot_client::{
    Client, HelloArgs, LoadConfig, MatchmakeConfig, MatchmakerUrl, TransportKind, run,
};
use tickwire_shared::rlimit;

use super::{Args, ServerProc, cpu_ticks, rss_kb};

/// How long a starting server or redis-server gets.
const START_WAIT: Duration = Duration::from_secs(20);

/// One server process and what its log said.
struct Node {
    id: String,
    proc: ServerProc,
    addr: String,
}

impl Node {
    fn start(id: &str, bin: &Path, args: &[String]) -> anyhow::Result<Node> {
        let mut all: Vec<String> = ["--listen", "127.0.0.1:0", "--no-quic", "--no-default-room"]
            .map(str::to_owned)
            .to_vec();
        all.extend(args.iter().cloned());
        let proc = ServerProc::spawn(bin, &all)?;
        let mut logged = proc
            .logged(&["addr"], START_WAIT)
            .with_context(|| format!("server {id}"))?;
        Ok(Node {
            id: id.to_owned(),
            addr: logged.remove("addr").unwrap_or_default(),
            proc,
        })
    }
}

/// One node's figures in the rooms scenario.
#[derive(serde::Serialize)]
struct NodeFigures {
    node: String,
    addr: String,
    cpu_s: f64,
    rss_mb: f64,
    tick_p99_ms: f64,
    tick_overruns: u64,
}

#[derive(serde::Serialize)]
struct RoomsSummary {
    scenario: &'static str,
    transport: &'static str,
    nodes: u32,
    bots: usize,
    room_size: u32,
    /// `None`: the server's default (16).
    room_npcs: Option<u32>,
    tick_rate: u32,
    input_hz: f64,
    rooms: u64,
    matchmake_failures: u64,
    server_cpu_s: f64,
    wall_s: f64,
    bots_cpu_s: f64,
    /// The bots' nice value (`--bots-nice`).
    bots_nice: i32,
    server_cpu_us_per_client_snapshot: f64,
    server_rss_mb: f64,
    tick_p99_ms: f64,
    tick_overruns: u64,
    per_node: Vec<NodeFigures>,
}

#[derive(serde::Serialize)]
struct RoomsJson<'a> {
    loadtest: RoomsSummary,
    report: &'a tickwire_bot_client::Report,
}

fn raise_files(want: u64) -> anyhow::Result<()> {
    let lim = rlimit::raise_nofile(want)?;
    if lim.soft < want {
        bail!("need {want} open files, hard limit is {}", lim.hard);
    }
    Ok(())
}

/// `--scenario rooms`.
pub(super) fn rooms(args: &Args, bin: &Path, tick_rate: u32) -> anyhow::Result<()> {
    if args.transport != TransportKind::Ws {
        bail!("--scenario rooms runs over WebSocket only");
    }
    let input_hz = args.input_hz.unwrap_or(f64::from(tick_rate));
    if !(input_hz.is_finite() && input_hz > 0.0 && args.ramp > 0.0) {
        bail!("--input-hz and --ramp must be positive");
    }
    raise_files(args.bots as u64 + 256)?;
    let redis = if args.nodes > 1 {
        Some(
            RedisProcess::start(START_WAIT)
                .context("cannot start redis-server (install it for --nodes > 1)")?,
        )
    } else {
        None
    };
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        let id = format!("node-{i}");
        let mut a: Vec<String> = vec![
            "--tick-rate".into(),
            tick_rate.to_string(),
            "--max-clients".into(),
            (args.bots + 100).to_string(),
            "--room-size".into(),
            args.room_size.to_string(),
        ];
        if let Some(n) = args.room_npcs {
            a.extend(["--room-npcs".into(), n.to_string()]);
        }
        if let Some(r) = &redis {
            a.extend(["--redis".into(), r.url(), "--node-id".into(), id.clone()]);
        }
        a.extend(args.auth_server_args());
        a.extend(args.server_args.iter().cloned());
        nodes.push(Node::start(&id, bin, &a)?);
    }
    let first = &nodes[0];
    let cfg = LoadConfig {
        url: format!("ws://{}/ws", first.addr),
        transport: TransportKind::Ws,
        bots: args.bots,
        duration: Duration::from_secs_f64(args.duration),
        ramp_per_s: args.ramp,
        input_hz,
        bind_ips: args.bind_ip.clone(),
        verify_fraction: args.verify,
        nice: args.bots_nice,
        matchmake: Some(MatchmakeConfig {
            url: format!("http://{}", first.addr),
            kind: "arena".to_owned(),
            room_size: Some(args.room_size),
        }),
        auth: args.auth_key()?,
        ..LoadConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpu0: Vec<u64> = nodes
        .iter()
        .map(|n| cpu_ticks(n.proc.pid))
        .collect::<anyhow::Result<_>>()?;
    let bots_cpu0 = cpu_ticks(std::process::id())?;
    let t0 = Instant::now();
    let mut peak = vec![0u64; nodes.len()];
    let sample = |peak: &mut Vec<u64>| {
        for (p, n) in peak.iter_mut().zip(&nodes) {
            *p = (*p).max(rss_kb(n.proc.pid).unwrap_or(0));
        }
    };
    let report = rt.block_on(run(cfg, |r| {
        sample(&mut peak);
        eprintln!("{}", r.progress_line());
    }));
    let wall = t0.elapsed();
    sample(&mut peak);
    let cpu1: Vec<u64> = nodes
        .iter()
        .map(|n| cpu_ticks(n.proc.pid))
        .collect::<anyhow::Result<_>>()?;
    let bots_cpu_s = (cpu_ticks(std::process::id())? - bots_cpu0) as f64 / 100.0;
    let per_node: Vec<NodeFigures> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeFigures {
            node: n.id.clone(),
            addr: n.addr.clone(),
            // USER_HZ is 100 on Linux.
            cpu_s: (cpu1[i] - cpu0[i]) as f64 / 100.0,
            rss_mb: peak[i] as f64 / 1024.0,
            tick_p99_ms: n.proc.tick_p99_ms(),
            tick_overruns: n.proc.overruns(),
        })
        .collect();
    for n in nodes {
        drop(n.proc);
    }
    drop(redis);

    let server_cpu_s: f64 = per_node.iter().map(|n| n.cpu_s).sum();
    let rss_mb: f64 = per_node.iter().map(|n| n.rss_mb).sum();
    let tick_p99_ms = per_node.iter().map(|n| n.tick_p99_ms).fold(0.0, f64::max);
    let overruns: u64 = per_node.iter().map(|n| n.tick_overruns).sum();
    let snapshots = (report.full_snapshots + report.delta_snapshots) as f64;
    let cpu_us_per_snap = server_cpu_s * 1e6 / snapshots.max(1.0);
    for n in &per_node {
        println!(
            "loadtest node={} addr={} server_cpu_s={:.1} server_rss_mb={:.1} tick_p99_ms={:.2} tick_overruns={}",
            n.node, n.addr, n.cpu_s, n.rss_mb, n.tick_p99_ms, n.tick_overruns
        );
    }
    let room_npcs = args
        .room_npcs
        .map_or_else(|| "16(server default)".to_owned(), |n| n.to_string());
    println!(
        "loadtest scenario=rooms transport=ws nodes={} bots={} verifying={} room_size={} room_npcs={} \
         rooms={} connected={} matchmake_failures={} connect_failures={} tick_rate={} input_hz={} \
         delivery={:.4} desyncs={} server_cpu_us_per_client_snapshot={:.2} server_rss_mb={:.1} \
         bytes_per_client_s={:.0} input_latency_p99_ms={:.2} tick_p99_ms={:.2} server_cpu_s={:.1} bots_cpu_s={:.1} bots_nice={}",
        args.nodes,
        args.bots,
        report.verifying_bots,
        args.room_size,
        room_npcs,
        report.rooms,
        report.connected,
        report.matchmake_failures,
        report.connect_failures,
        tick_rate,
        input_hz,
        report.delivery_ratio,
        report.desyncs,
        cpu_us_per_snap,
        rss_mb,
        report.bytes_in_per_bot_s,
        report.input_latency_ms_p99,
        tick_p99_ms,
        server_cpu_s,
        bots_cpu_s,
        args.bots_nice
    );
    let json = RoomsJson {
        loadtest: RoomsSummary {
            scenario: "rooms",
            transport: "ws",
            nodes: args.nodes,
            bots: args.bots,
            room_size: args.room_size,
            room_npcs: args.room_npcs,
            tick_rate,
            input_hz,
            rooms: report.rooms,
            matchmake_failures: report.matchmake_failures,
            server_cpu_s,
            wall_s: wall.as_secs_f64(),
            bots_cpu_s,
            bots_nice: args.bots_nice,
            server_cpu_us_per_client_snapshot: cpu_us_per_snap,
            server_rss_mb: rss_mb,
            tick_p99_ms,
            tick_overruns: overruns,
            per_node,
        },
        report: &report,
    };
    super::finish(&json, args.json.as_deref(), &report)
}

/// One RSS sample of the churn scenario.
#[derive(serde::Serialize, Clone, Copy)]
struct RssSample {
    t_s: f64,
    rss_mb: f64,
}

#[derive(serde::Serialize)]
struct ChurnJson {
    scenario: &'static str,
    rate: f64,
    duration_s: f64,
    attempts: u64,
    rooms_created: u64,
    clients_connected: u64,
    failures: u64,
    rooms_alive_at_end: usize,
    rss_first_mb: f64,
    rss_last_mb: f64,
    rss_max_mb: f64,
    server_cpu_s: f64,
    samples: Vec<RssSample>,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    connected: AtomicU64,
    failures: AtomicU64,
}

/// Create one room, connect one client with its seat, close it.
async fn churn_once(mm: &MatchmakerUrl, n: u64, c: &Counters) {
    let wait = Duration::from_secs(5);
    let seat = match request_seat(mm, Mode::Create, "arena", None, None, wait).await {
        Ok(s) => s,
        Err(e) => {
            if c.failures.fetch_add(1, Relaxed) < 5 {
                eprintln!("churn: matchmake failed: {e}");
            }
            return;
        }
    };
    c.created.fetch_add(1, Relaxed);
    let hello = HelloArgs::new(&format!("churn{n}")).with_seat(Some(seat.seat_token));
    match Client::connect_with(&seat.ws_url, &hello, None, wait).await {
        Ok(client) => {
            c.connected.fetch_add(1, Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
        }
        Err(e) => {
            if c.failures.fetch_add(1, Relaxed) < 5 {
                eprintln!("churn: connect failed: {e}");
            }
        }
    }
}

/// `GET /rooms` on `addr`: how many rooms the directory lists.
async fn count_rooms(addr: &str) -> anyhow::Result<usize> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .uri("/rooms")
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    if !res.status().is_success() {
        bail!("GET /rooms: {}", res.status());
    }
    let body = res.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let list = v
        .as_array()
        .or_else(|| v.get("rooms").and_then(|r| r.as_array()))
        .context("GET /rooms is not a list")?;
    Ok(list.len())
}

/// `--scenario churn`.
pub(super) fn churn(args: &Args, bin: &Path) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0) {
        bail!("--rate must be in (0, 10000]");
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 86_400.0) {
        bail!("--duration must be a positive number of seconds");
    }
    raise_files(4096)?;
    let mut a: Vec<String> = vec!["--room-idle".into(), "0.5".into()];
    if let Some(n) = args.room_npcs {
        a.extend(["--room-npcs".into(), n.to_string()]);
    }
    a.extend(args.server_args.iter().cloned());
    let node = Node::start("node-1", bin, &a)?;
    let pid = node.proc.pid;
    let addr = node.addr.clone();
    let mm = MatchmakerUrl::parse(&format!("http://{addr}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rss_mb = || rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let attempts = (args.rate * args.duration).ceil() as u64;
    let counters = Arc::new(Counters::default());
    let cpu0 = cpu_ticks(pid)?;
    let (samples, alive, sent) = rt.block_on(async {
        // Warm-up: a few rounds, then a second for their rooms to go.
        let warm = Counters::default();
        for i in 0..5 {
            churn_once(&mm, u64::MAX - i, &warm).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t0 = Instant::now();
        let mut samples = vec![RssSample {
            t_s: 0.0,
            rss_mb: rss_mb(),
        }];
        let mut next_sample = Duration::from_secs(5);
        let deadline = Duration::from_secs_f64(args.duration) + Duration::from_secs(10);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        while sent < attempts && t0.elapsed() < deadline {
            tick.tick().await;
            // At most 512 in flight (each is bounded by its time-outs).
            while tasks.len() >= 512 {
                let _ = tasks.join_next().await;
            }
            let (mm, c) = (mm.clone(), counters.clone());
            tasks.spawn(async move { churn_once(&mm, sent, &c).await });
            sent += 1;
            while tasks.try_join_next().is_some() {}
            if t0.elapsed() >= next_sample {
                samples.push(RssSample {
                    t_s: t0.elapsed().as_secs_f64(),
                    rss_mb: rss_mb(),
                });
                eprintln!(
                    "churn t={:.0}s sent={sent} created={} rss_mb={:.1}",
                    t0.elapsed().as_secs_f64(),
                    counters.created.load(Relaxed),
                    rss_mb()
                );
                next_sample += Duration::from_secs(5);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        samples.push(RssSample {
            t_s: t0.elapsed().as_secs_f64(),
            rss_mb: rss_mb(),
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        samples.push(RssSample {
            t_s: t0.elapsed().as_secs_f64(),
            rss_mb: rss_mb(),
        });
        let alive = count_rooms(&addr).await;
        (samples, alive, sent)
    });
    let server_cpu_s = (cpu_ticks(pid)? - cpu0) as f64 / 100.0;
    drop(node.proc);
    let alive = alive?;
    let first = samples.first().map_or(0.0, |s| s.rss_mb);
    let last = samples.last().map_or(0.0, |s| s.rss_mb);
    let max = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let json = ChurnJson {
        scenario: "churn",
        rate: args.rate,
        duration_s: args.duration,
        attempts: sent,
        rooms_created: counters.created.load(Relaxed),
        clients_connected: counters.connected.load(Relaxed),
        failures: counters.failures.load(Relaxed),
        rooms_alive_at_end: alive,
        rss_first_mb: first,
        rss_last_mb: last,
        rss_max_mb: max,
        server_cpu_s,
        samples,
    };
    println!(
        "loadtest scenario=churn rate={} duration_s={} attempts={} rooms_created={} clients_connected={} \
         failures={} rooms_alive_at_end={} rss_first_mb={:.1} rss_last_mb={:.1} rss_max_mb={:.1} server_cpu_s={:.1}",
        json.rate,
        json.duration_s,
        json.attempts,
        json.rooms_created,
        json.clients_connected,
        json.failures,
        json.rooms_alive_at_end,
        first,
        last,
        max,
        server_cpu_s
    );
    let text = serde_json::to_string(&json)?;
    println!("{text}");
    if let Some(p) = &args.json {
        std::fs::write(p, text + "\n")?;
    }
    Ok(())
}
