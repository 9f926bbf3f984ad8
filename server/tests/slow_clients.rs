//! Clients that stop reading: what they can cost the server, and what they get to read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tickwire_bot_client::HelloArgs;
use tickwire_bot_client::client::client_ws_config;
use tickwire_shared::codec::{decode_server, encode_client};
use tickwire_shared::{ClientMessage, ServerMessage, Tick};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

mod support;
use support::{TestServer, WAIT};

type Ws = WebSocketStream<TcpStream>;

/// A welcomed WebSocket over a socket with default (autotuned) buffers, like any client's;
/// returns it with the tick of the first snapshot and when it arrived.
async fn welcomed(addr: SocketAddr, name: &str) -> (Ws, Tick, Instant) {
    let mut ws = hello(addr, name, None).await;
    loop {
        let Message::Binary(b) = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() else {
            continue;
        };
        if let ServerMessage::Snapshot(s) = decode_server(&b).unwrap() {
            return (ws, s.tick, Instant::now());
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<(), tungstenite::Error> {
    let mut b = Vec::new();
    encode_client(msg, &mut b).unwrap();
    ws.send(Message::Binary(b.into())).await
}

/// An Input acknowledging, without having read it, the snapshot the server should have sent
/// by now (a few ticks back, so it is one the server did make).
fn blind_ack(tick0: Tick, since: Instant, tick_rate: f64) -> ClientMessage {
    let ticks = (since.elapsed().as_secs_f64() * tick_rate) as u32;
    ClientMessage::Input {
        ack_tick: Tick((tick0.0 + ticks).saturating_sub(3).max(tick0.0)),
        frames: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_but_acks_blindly_is_dropped_after_the_write_timeout() {
    let srv = TestServer::start(|c| {
        // Every NPC in view: a few tens of KB/s of snapshots.
        c.npcs = 500;
        c.sim.view_radius = 5000.0;
        c.write_timeout = Duration::from_secs(1);
        // The ack timeout is not what ends this client.
        c.sim.ack_timeout_ticks = 30 * 120;
        c.send_buffer = Some(16 * 1024);
    })
    .await;
    let (mut ws, tick0, t0) = welcomed(srv.addr, "never reads").await;
    // From now on: acknowledge at the tick rate, never read. Once the server has closed the
    // socket, writes fail (the first one is answered with a reset).
    let started = Instant::now();
    let gone = timeout(Duration::from_secs(60), async {
        loop {
            if send(&mut ws, &blind_ack(tick0, t0, 30.0)).await.is_err() {
                return started.elapsed();
            }
            sleep(Duration::from_millis(33)).await;
        }
    })
    .await
    .expect("the server drops a client that never reads");
    eprintln!("dropped after {gone:?}");
    // The socket buffers fill in a few seconds, then one write waits the write timeout;
    // with the kernel's autotuned 4 MiB send buffer this took minutes.
    assert!(gone < Duration::from_secs(20), "{gone:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_client_reads_its_backlog_then_the_real_close_code() {
    let srv = TestServer::start(|c| {
        c.npcs = 500;
        c.sim.view_radius = 5000.0;
        // Closed for not acknowledging after 1 s, long before its blocked write would time
        // out (and drop it without a code), and long before the close gives up lingering.
        c.sim.ack_timeout_ticks = 30;
        c.write_timeout = Duration::from_secs(3);
        c.send_buffer = Some(16 * 1024);
    })
    .await;
    // A small receive buffer, so the backlog fills both kernels' buffers and the server's
    // writes wait.
    let mut ws = stalled(srv.addr, "lagging").await;
    // Stop reading (and acknowledging) for longer than the write timeout.
    sleep(Duration::from_secs(4)).await;
    let mut snapshots = 0;
    let mut disconnect = None;
    let close = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => match decode_server(&b).unwrap() {
                    ServerMessage::Snapshot(_) => {
                        assert!(disconnect.is_none(), "a snapshot after Disconnect");
                        snapshots += 1;
                    }
                    ServerMessage::Disconnect { code, .. } => disconnect = Some(code),
                    _ => {}
                },
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("the backlog ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the backlog and the close in time");
    assert!(snapshots > 0);
    assert_eq!(disconnect, Some(4000));
    assert_eq!(close, Some(4000));
    srv.shutdown().await;
}

/// The simulation writes snapshots to a plain-TCP socket itself (`tickwire_server::wire`),
/// and the connection task writes `Welcome`, `Pong` and WebSocket pongs: on a socket that
/// fills up (so writes are taken in part and their tails queued), while the client pings all
/// the time, every frame must still arrive whole and in order, and every snapshot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_pongs_stay_whole_frames_in_order_on_a_socket_that_fills_up() {
    use tickwire_shared::receiver::SnapshotReceiver;
    use tickwire_shared::{Quantizer, WorldBounds};

    let srv = filling_server().await;
    let mut ws = stalled(srv.addr, "slow and chatty").await;
    let mut receiver: Option<SnapshotReceiver> = None;
    let (mut snapshots, mut last_tick, mut pings) = (0u32, 0u32, 0u32);
    let mut last_pong = None;
    let started = Instant::now();
    // 2 s reading one message every 25 ms (less than comes: the backlog fills both sockets'
    // buffers), then 2 s reading as fast as it comes.
    while started.elapsed() < Duration::from_secs(4) {
        let slow = started.elapsed() < Duration::from_secs(2);
        ws.send(Message::Ping(pings.to_be_bytes().to_vec().into()))
            .await
            .unwrap();
        pings += 1;
        if let Some(ack) = receiver.as_ref().and_then(SnapshotReceiver::ack_tick) {
            let input = ClientMessage::Input {
                ack_tick: ack,
                frames: Vec::new(),
            };
            send(&mut ws, &input).await.unwrap();
        }
        for _ in 0..if slow { 1 } else { 20 } {
            match timeout(WAIT, ws.next()).await.unwrap() {
                Some(Ok(Message::Binary(b))) => match decode_server(&b).unwrap() {
                    ServerMessage::Welcome(w) => {
                        let q = Quantizer::new(WorldBounds {
                            min: w.world_min.into(),
                            max: w.world_max.into(),
                        })
                        .unwrap();
                        receiver = Some(SnapshotReceiver::with_default_history(q));
                    }
                    ServerMessage::Snapshot(s) => {
                        assert!(
                            s.tick.0 > last_tick,
                            "snapshot {} after {last_tick}",
                            s.tick.0
                        );
                        last_tick = s.tick.0;
                        let r = receiver.as_mut().expect("Welcome before any snapshot");
                        r.receive(&s).expect("every snapshot verifies");
                        snapshots += 1;
                    }
                    _ => {}
                },
                // tungstenite keeps one pong waiting (the newest ping's): pongs may be
                // skipped, never reordered.
                Some(Ok(Message::Pong(p))) => {
                    let n = u32::from_be_bytes(p[..].try_into().unwrap());
                    assert!(last_pong < Some(n), "pong {n} after {last_pong:?}");
                    last_pong = Some(n);
                }
                Some(Ok(_)) => {}
                other => panic!("the stream broke: {other:?}"),
            }
        }
        sleep(Duration::from_millis(if slow { 25 } else { 5 })).await;
    }
    let m = &srv.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (direct, superseded) = (load(&m.snapshots_direct), load(&m.snapshots_superseded));
    eprintln!(
        "{snapshots} snapshots, last pong {last_pong:?} of {pings} pings, {direct} direct, {superseded} superseded"
    );
    assert!(snapshots > 20, "{snapshots}");
    assert!(last_pong.is_some());
    assert!(direct > 0, "the simulation wrote snapshots itself");
    // The socket did fill: snapshots the socket took in part, snapshots that waited in the
    // slot and were replaced by newer ones.
    let partial = load(&m.snapshots_direct_partial);
    eprintln!("{partial} taken in part");
    assert!(partial > 0, "no direct write was taken in part");
    assert!(superseded > 0, "the socket never filled");
    srv.shutdown().await;
}

/// A server whose snapshots fill a small socket fast (every one of 500 NPCs in view, an
/// 8 KiB send buffer), and that closes no one for not reading or acknowledging.
async fn filling_server() -> TestServer {
    TestServer::start(|c| {
        c.npcs = 500;
        c.sim.view_radius = 5000.0;
        c.write_timeout = Duration::from_secs(30);
        c.sim.ack_timeout_ticks = 30 * 60;
        c.send_buffer = Some(8 * 1024);
    })
    .await
}

/// A client with a small receive buffer, past its `Hello` (it reads only when told to).
async fn stalled(addr: SocketAddr, name: &str) -> Ws {
    hello(addr, name, Some(4096)).await
}

/// A WebSocket that has sent its `Hello`, over a socket with `recv_buffer` bytes of receive
/// buffer (default: the kernel's, autotuned).
async fn hello(addr: SocketAddr, name: &str, recv_buffer: Option<u32>) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_ws_config()))
            .await
            .unwrap();
    send(&mut ws, &HelloArgs::new(name).message())
        .await
        .unwrap();
    ws
}

/// Clients whose sockets are full, and whose connection tasks wait to write, cost the other
/// clients nothing: a reading client keeps its 30 snapshots a second (a task that spun on
/// its wake-ups while it waited would take a worker thread from everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sockets_leave_a_reading_client_its_snapshots() {
    let srv = filling_server().await;
    let mut stalled_clients = Vec::new();
    for i in 0..3 {
        stalled_clients.push(stalled(srv.addr, &format!("stalled {i}")).await);
    }
    let (mut ws, _, _) = welcomed(srv.addr, "reading").await;
    // Let the stalled sockets fill up, then count what the reading client gets.
    sleep(Duration::from_secs(1)).await;
    while let Ok(Some(_)) = timeout(Duration::from_millis(5), ws.next()).await {}
    let started = Instant::now();
    let mut snapshots = 0;
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(Ok(Message::Binary(b)))) = timeout(WAIT, ws.next()).await
            && let ServerMessage::Snapshot(s) = decode_server(&b).unwrap()
        {
            snapshots += 1;
            let ack = ClientMessage::Input {
                ack_tick: s.tick,
                frames: Vec::new(),
            };
            send(&mut ws, &ack).await.unwrap();
        }
    }
    let partial = srv
        .metrics
        .snapshots_direct_partial
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{snapshots} snapshots in 3 s; {partial} direct writes taken in part");
    assert!(partial > 0, "the stalled sockets never filled");
    // 90 expected; a task spinning on its wake-ups froze both workers (0).
    assert!(snapshots >= 60, "{snapshots} of 90 snapshots");
    drop(stalled_clients);
    srv.shutdown().await;
}

/// A client that closes while its socket is full still gets the echo of its close frame,
/// behind the whole frames already on their way. (Here the task usually reads the close only
/// once the client has read its backlog; the unit test in `ws.rs` has the echo queued behind
/// a full socket for certain.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_with_a_full_socket_gets_its_close_echoed() {
    let srv = filling_server().await;
    let mut ws = stalled(srv.addr, "closing").await;
    sleep(Duration::from_secs(1)).await;
    ws.close(None).await.unwrap();
    let echo = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    decode_server(&b).unwrap();
                }
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
                None => return false,
                Some(Err(e)) => panic!("no close echo: {e:?}"),
            }
        }
    })
    .await
    .expect("the echo in time");
    assert!(echo, "the stream ended without the echo");
    let partial = srv
        .metrics
        .snapshots_direct_partial
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(partial > 0, "the socket never filled");
    srv.shutdown().await;
}
