//! A TCP proxy that breaks the network between real processes on purpose:
//! delays and fragments bytes, cuts connections (also in the middle of a
//! message), half-closes them, refuses new ones, and stalls or silently
//! kills existing ones. Put it between a `pos-agent` and the hub (the
//! agent's `--hub` is the proxy's address) and change the faults while
//! they run.
//!
//! Delay, fragmentation and stall are read per chunk of bytes, so they
//! apply to open connections at once; refusal and the cut budget apply to
//! new connections; cuts, half-closes and vanishing are orders to every
//! open connection. `clear` turns every setting off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which peer a half-close is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that connected to the proxy (the agent).
    Client,
    /// The side the proxy connects to (the hub).
    Server,
}

/// The current faults; every field is read for each chunk forwarded.
#[derive(Default)]
struct Faults {
    /// Accept new connections and close them at once.
    refuse: AtomicBool,
    /// Extra delay per chunk, in ms.
    delay_ms: AtomicU64,
    /// Forward in pieces of 1..=this many bytes (0: whole chunks).
    fragment: AtomicU64,
    /// Cut each new connection after a random 1..=this many bytes in one
    /// direction (0: never): lands in the handshake or mid-message.
    cut_within: AtomicU64,
    /// Stop forwarding (both ways) without closing: the stall of a link
    /// that drops every packet. Bytes wait; none are lost.
    stall: AtomicBool,
    accepted: AtomicU64,
    open: AtomicUsize,
}

/// What a connection is told to do by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Run,
    /// Close both sockets now.
    Cut,
    /// Send FIN to one side only; keep the other direction open.
    HalfClose(Side),
    /// Never forward another byte, never close: a silently dead link
    /// (as after a NAT or a firewall forgets the flow).
    Vanish,
}

pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    orders: watch::Sender<(u64, Order)>,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.orders.send((u64::MAX, Order::Cut));
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (host:port).
    pub async fn start(upstream: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let faults = Arc::new(Faults::default());
        let (orders, _) = watch::channel((0, Order::Run));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            faults.clone(),
            orders.clone(),
        ));
        FaultProxy {
            addr,
            faults,
            orders,
            accept,
        }
    }

    /// host:port to give the agent as its hub.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// A perfect link again for new connections; lifts a stall.
    pub fn clear(&self) {
        let f = &self.faults;
        f.refuse.store(false, Ordering::SeqCst);
        f.delay_ms.store(0, Ordering::SeqCst);
        f.fragment.store(0, Ordering::SeqCst);
        f.cut_within.store(0, Ordering::SeqCst);
        f.stall.store(false, Ordering::SeqCst);
    }

    pub fn set_refuse(&self, on: bool) {
        self.faults.refuse.store(on, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.faults
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_fragment(&self, max_piece: u64) {
        self.faults.fragment.store(max_piece, Ordering::SeqCst);
    }

    /// Cut every new connection after a random number of bytes up to
    /// `bytes` (0: off).
    pub fn set_cut_within(&self, bytes: u64) {
        self.faults.cut_within.store(bytes, Ordering::SeqCst);
    }

    pub fn set_stall(&self, on: bool) {
        self.faults.stall.store(on, Ordering::SeqCst);
    }

    /// Close every open connection now (both sockets).
    pub fn cut_all(&self) {
        self.order(Order::Cut);
    }

    /// Send FIN to `toward` on every open connection; the other direction
    /// stays open until that peer closes it.
    pub fn half_close_all(&self, toward: Side) {
        self.order(Order::HalfClose(toward));
    }

    /// Every open connection goes silent forever without closing. New
    /// connections work (unless other faults say otherwise).
    pub fn vanish_all(&self) {
        self.order(Order::Vanish);
    }

    fn order(&self, o: Order) {
        self.orders.send_modify(|(n, order)| {
            *n += 1;
            *order = o;
        });
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// Connections the proxy holds open (including stalled, vanished and
    /// half-closed ones until both peers are gone).
    pub fn open_connections(&self) -> usize {
        self.faults.open.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    faults: Arc<Faults>,
    orders: watch::Sender<(u64, Order)>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        if faults.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let faults = faults.clone();
        let mut orders = orders.subscribe();
        orders.mark_unchanged();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return; // The hub is down: the client sees the close.
            };
            faults.open.fetch_add(1, Ordering::SeqCst);
            connection(client, server, &faults, orders).await;
            faults.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Forward between `client` and `server` until both directions end or an
/// order ends the connection.
async fn connection(
    client: TcpStream,
    server: TcpStream,
    faults: &Arc<Faults>,
    mut orders: watch::Receiver<(u64, Order)>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let budget = |f: &Faults| match f.cut_within.load(Ordering::SeqCst) {
        0 => u64::MAX,
        n => rand::thread_rng().gen_range(1..=n),
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Each direction gets its own signal: half-close or vanish.
    let (to_client, client_mode) = watch::channel(Mode::Run);
    let (to_server, server_mode) = watch::channel(Mode::Run);
    let mut up = tokio::spawn(pump(cr, sw, faults.clone(), budget(faults), server_mode));
    let mut down = tokio::spawn(pump(sr, cw, faults.clone(), budget(faults), client_mode));
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                // A cut (not an orderly end) takes the whole connection down.
                if matches!(r, Ok(Ended::Cut)) { break; }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                if matches!(r, Ok(Ended::Cut)) { break; }
            }
            changed = orders.changed() => {
                if changed.is_err() { break; }
                let order = orders.borrow_and_update().1;
                match order {
                    Order::Run => {}
                    Order::Cut => break,
                    Order::HalfClose(Side::Client) => { let _ = to_client.send(Mode::Fin); }
                    Order::HalfClose(Side::Server) => { let _ = to_server.send(Mode::Fin); }
                    Order::Vanish => {
                        // The pumps keep their sockets open and go quiet.
                        let _ = to_client.send(Mode::Vanish);
                        let _ = to_server.send(Mode::Vanish);
                    }
                }
            }
        }
    }
    up.abort();
    down.abort();
}

/// What one direction of a connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    /// FIN sent to the writer's peer: read on and drop what comes.
    Fin,
    /// Neither read nor write nor close, until the connection is cut.
    Vanish,
}

enum Ended {
    /// The reader saw EOF and the FIN was passed on.
    Eof,
    /// An I/O error or the byte budget ran out.
    Cut,
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: Arc<Faults>,
    mut budget: u64,
    mut mode: watch::Receiver<Mode>,
) -> Ended {
    let mut buf = vec![0u8; 16 * 1024];
    let mut finished = false;
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    if !finished { let _ = to.shutdown().await; }
                    return Ended::Eof;
                }
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ended::Cut;
                }
                let m = *mode.borrow_and_update();
                match m {
                    Mode::Run => {}
                    Mode::Fin if !finished => {
                        let _ = to.shutdown().await;
                        finished = true;
                    }
                    Mode::Fin => {}
                    Mode::Vanish => {
                        // Hold both halves, silent, until the connection ends.
                        while mode.changed().await.is_ok() {}
                        return Ended::Cut;
                    }
                }
                continue;
            }
        };
        while faults.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if finished {
            continue; // Half-closed toward `to`: read and drop.
        }
        let delay = faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut data = &buf[..n];
        let cut_here = (data.len() as u64) >= budget;
        if cut_here {
            data = &data[..budget as usize];
        }
        budget = budget.saturating_sub(data.len() as u64);
        let piece = faults.fragment.load(Ordering::SeqCst);
        while !data.is_empty() {
            let take = if piece == 0 {
                data.len()
            } else {
                rand::thread_rng()
                    .gen_range(1..=piece as usize)
                    .min(data.len())
            };
            if to.write_all(&data[..take]).await.is_err() {
                return Ended::Cut;
            }
            data = &data[take..];
            if piece > 0 {
                tokio::task::yield_now().await;
            }
        }
        if cut_here {
            return Ended::Cut;
        }
    }
}
